"""Where an id's next-run channel (durable_singleton._next_run) is kept: one small blob
in the lock container, ``<task hub>/<instance id>.next`` (beside the id's lock blob), read
with its ETag and written only if it is unchanged since (or, when there is none, only if
there is still none). Every change is one such read and one such write, decided by a pure
function of the channel read, and tried again on a conflict.

Used by the starter (a request's input, a Stop, a terminate, a start) and by
SingletonNextRun, the activity through which a job takes its next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import random
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob.aio import ContainerClient

from . import _next_run as protocol
from ._lock import LOCK_SUFFIX, BlobMissing, LockUnavailable, lock_blob_name, storage_call
from ._next_run import Channel

T = TypeVar("T")

#: How many times a change is tried when other writers change the channel between its
#: read and its write (each try takes two storage calls).
MAX_ATTEMPTS = 24
#: The pause before another try grows from this, jittered, so writers spread out.
FIRST_RETRY_SECONDS = 0.002
MAX_RETRY_SECONDS = 0.05

#: The pauses before each read that tells whether a write whose answer was lost landed.
READ_BACK_PAUSES = (0.0, 0.2, 0.5)

#: How many write ids a channel keeps (Channel.writes).
MAX_WRITES = 32

#: What a change decides: the channel to write (None: nothing to write) and its result.
Decision = Tuple[Optional[Channel], T]


class ChannelBusy(LockUnavailable):
    """Other writers changed the channel between every read and write of a change."""


class ChannelWriteUnknown(Exception):
    """A write's answer was lost, and reading the channel back could not tell whether it
    landed; ``result``: what the change decided (what it did, if it landed)."""

    def __init__(self, description: str, result: Any = None):
        super().__init__(description)
        self.result = result


@dataclasses.dataclass(frozen=True)
class _Refused:
    """A change whose decision raised ``error``: it wrote nothing, and its caller gets
    the error, whatever became of the changes written with it."""

    error: Exception


def _settle(answer: "asyncio.Future[Any]", result: Any = None, error: Any = None) -> None:
    if isinstance(result, _Refused):
        error = result.error
    if not answer.done():
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result)


def channel_blob_name(task_hub: str, instance_id: str) -> str:
    """The channel blob's name: the lock blob's, with ``.next`` instead of its suffix."""
    return lock_blob_name(task_hub, instance_id)[: -len(LOCK_SUFFIX)] + ".next"


class NextRunStore:
    """The next-run channels of one lock container.

    Changes of one id's channel made in this process at the same time are written
    together: one caller reads the channel, applies every change waiting (each to the
    channel the one before left) and writes once, and each change gets its own result.
    So a burst for one id costs about one read and one write per storage round trip,
    not per request, and writers of one id contend only across processes.
    """

    def __init__(self, container: ContainerClient, storage_timeout: float) -> None:
        """Keep channels in ``container``; bound every storage call by
        ``storage_timeout`` seconds."""
        self._container = container
        self._timeout = storage_timeout
        #: Changes waiting to be written, by blob name; a name is here while its writer runs.
        self._waiting: Dict[str, List[Tuple[Callable[[Any], Any], "asyncio.Future[Any]"]]] = {}

    async def change(
        self, task_hub: str, instance_id: str, decide: Callable[[Optional[Channel]], Decision[T]]
    ) -> T:
        """Read the id's channel, apply ``decide``, write what it returns if the channel
        is still as read, and return its result; on a conflict, all of it again.

        Raises
        ------
        LockUnavailable
            Storage failed or did not answer in time; nothing was written.
        ChannelBusy
            :data:`MAX_ATTEMPTS` conflicts in a row; nothing was written.
        ChannelWriteUnknown
            A write's answer was lost and it is unknown whether it landed.
        """
        name = channel_blob_name(task_hub, instance_id)
        answer: "asyncio.Future[T]" = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(name)
        if waiting is not None:
            waiting.append((decide, answer))  # the writer running takes it in its next round
        else:
            self._waiting[name] = [(decide, answer)]
            # The writer is a task of its own: a caller that goes away does not stop it.
            asyncio.ensure_future(self._writer(name))
        return await asyncio.shield(answer)

    async def _writer(self, name: str) -> None:
        """Write the changes waiting for ``name``, a round at a time, until none wait."""
        blob = self._container.get_blob_client(name)
        try:
            while self._waiting[name]:
                changes, self._waiting[name] = self._waiting[name], []
                await self._round(blob, changes)
        finally:
            del self._waiting[name]

    async def _round(
        self, blob: Any, changes: List[Tuple[Callable[[Any], Any], "asyncio.Future[Any]"]]
    ) -> None:
        """Apply ``changes`` in order to the channel read, write the result once, and
        answer each change (with its own exception, on a failure)."""
        pause = FIRST_RETRY_SECONDS
        results: List[Any] = []
        try:
            for _ in range(MAX_ATTEMPTS):
                current, etag = await self._read(blob)
                channel, changed = current, False
                results = []
                for decide, _ in changes:
                    try:
                        written, result = decide(channel)
                    except Exception as error:  # this change alone fails (writes nothing)
                        results.append(_Refused(error))
                        continue
                    results.append(result)
                    if written is not None:
                        channel, changed = written, True
                if not changed or await self._write_new(blob, current, channel, etag):
                    for (_, answer), result in zip(changes, results, strict=True):
                        _settle(answer, result=result)
                    return
                await asyncio.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, MAX_RETRY_SECONDS)
            raise ChannelBusy("the next-run channel kept changing")
        except ChannelWriteUnknown as unknown:
            for (_, answer), result in zip(changes, results, strict=True):
                if isinstance(result, _Refused):
                    _settle(answer, result=result)
                else:
                    _settle(answer, error=ChannelWriteUnknown(str(unknown), result))
        except Exception as error:  # every change of the round failed alike
            for _, answer in changes:
                _settle(answer, error=error)

    async def _write_new(
        self,
        blob: Any,
        current: Optional[Channel],
        channel: Optional[Channel],
        etag: Optional[str],
    ) -> bool:
        """Write ``channel``, changed from ``current`` (read at ``etag``), with a new write
        id after the ones ``current`` keeps."""
        assert channel is not None
        token = uuid.uuid4().hex[:16]
        earlier = current.writes if current is not None else ()
        channel = dataclasses.replace(channel, writes=(*earlier, token)[-MAX_WRITES:])
        return await self._write(blob, channel, etag, token)

    async def read(self, task_hub: str, instance_id: str) -> Optional[Channel]:
        """The id's channel, or None when it has none (LockUnavailable on failure)."""
        blob = self._container.get_blob_client(channel_blob_name(task_hub, instance_id))
        return (await self._read(blob))[0]

    async def _read(self, blob: Any) -> Tuple[Optional[Channel], Optional[str]]:
        try:
            download = await storage_call(blob.download_blob(), self._timeout)
            data = await storage_call(download.readall(), self._timeout)
        except BlobMissing:
            return None, None
        try:
            return Channel.of_json(data), download.properties.etag
        except (ValueError, TypeError):
            # Not a channel this app wrote: replaced (conditionally) by the next change.
            return None, download.properties.etag

    async def _write(self, blob: Any, channel: Channel, etag: Optional[str], token: str) -> bool:
        """Write ``channel`` (whose latest write id is ``token``) if the blob is still at
        ``etag`` (absent, for None): True when written, False when it had changed."""
        conditions: Dict[str, Any] = (
            {"overwrite": False}
            if etag is None
            else {
                "overwrite": True,
                "etag": etag,
                "match_condition": MatchConditions.IfNotModified,
            }
        )
        try:
            await asyncio.wait_for(
                blob.upload_blob(channel.to_json(), **conditions), self._timeout
            )
            return True
        except (ResourceModifiedError, ResourceExistsError):
            # Refused: by another writer's change, or by this write itself, sent again
            # below this call after its first attempt landed and its answer was lost (the
            # SDK's retry, or aiohttp's own on a pooled connection the server closed).
            try:
                landed, _ = await self._read(blob)
            except LockUnavailable:
                raise ChannelWriteUnknown("writing the next-run channel") from None
            return landed is not None and token in landed.writes
        except ResourceNotFoundError:  # the container is missing: first use of the app
            await self._create_container()
            return False
        except (asyncio.TimeoutError, AzureError):
            pass
        # The answer was lost: the write may have landed. Read the channel back: still
        # as it was read, the write did not land; carrying the write's id, it did (later
        # writers keep the latest ids); otherwise it cannot be told. A cut connection
        # often mends within moments, so the read is tried a few times.
        for pause in READ_BACK_PAUSES:
            await asyncio.sleep(pause)
            try:
                landed, now = await self._read(blob)
            except LockUnavailable:
                continue
            if now == etag:
                return False
            if landed is not None and token in landed.writes:
                return True
            break
        raise ChannelWriteUnknown("writing the next-run channel")

    async def _create_container(self) -> None:
        async def create() -> None:
            with contextlib.suppress(ResourceExistsError):
                await self._container.create_container()

        await storage_call(create(), self._timeout)


async def handle(store: NextRunStore, request: Dict[str, Any]) -> Any:
    """Carry out one request of SingletonNextRun, the job's side of the channel.

    ``{"op": "take", "hub", "instanceId", "run"}``: run ``run`` has ended; returns the
    next run as ``{"request", "input"}``, or None (the instance ends).
    ``{"op": "begin", "hub", "instanceId"}``: a waiting run's timer fired; returns
    ``{"begin": {"request", "input"}}``, ``{"wait": dueAt}`` or ``{}`` (a Stop dropped
    it). Each may be retried by the runtime and answers as it did the first time.
    """
    hub, instance_id = request["hub"], request["instanceId"]
    if request["op"] == "take":
        run = request["run"]
        following = await store.change(hub, instance_id, lambda c: protocol.take(c, run))
        return (
            None if following is None else {"request": following.request, "input": following.input}
        )
    if request["op"] == "begin":
        now = datetime.datetime.now(datetime.timezone.utc)
        decision = await store.change(hub, instance_id, lambda c: protocol.begin(c, now))
        if isinstance(decision, protocol.Wait):
            return {"wait": decision.due_at}
        if isinstance(decision, protocol.Pending):
            return {"begin": {"request": decision.request, "input": decision.input}}
        return {}
    raise ValueError(f"unknown next-run operation {request['op']!r}")
