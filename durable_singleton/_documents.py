"""Small JSON documents in the lock container (the next-run channels, the key queues),
each changed only by a pure function of the document as read, written only if the blob is
unchanged since (or still absent), and tried again on a conflict."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from typing import Any, Callable, Dict, Generic, List, Optional, Protocol, Tuple, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob.aio import ContainerClient

from ._lock import BlobMissing, LockUnavailable, storage_call


class Document(Protocol):
    """What a stored document is: the ids of its latest writes (``writes``), a copy with
    others (:meth:`with_writes`), written as :meth:`to_json` and read back by the
    store's parser."""

    @property
    def writes(self) -> Tuple[str, ...]: ...

    def with_writes(self: D, writes: Tuple[str, ...]) -> D: ...

    def to_json(self) -> bytes: ...


D = TypeVar("D", bound=Document)


T = TypeVar("T")

#: How many times a change is tried when other writers change the document between its
#: read and its write (each try takes two storage calls).
MAX_ATTEMPTS = 24
#: The pause before another try grows from this, jittered, so writers spread out.
FIRST_RETRY_SECONDS = 0.002
MAX_RETRY_SECONDS = 0.05

#: The pauses before each read that tells whether a write whose answer was lost landed.
READ_BACK_PAUSES = (0.0, 0.2, 0.5)

#: How many times a write whose answer was lost, and which the read back shows has not
#: landed (yet), is sent: the same write again, under the same condition, so its answer
#: tells whether it landed (an earlier send arriving late is then refused).
WRITE_SENDS = 2

#: How many write ids a document keeps (its ``writes``).
MAX_WRITES = 32

#: What a change decides: the document to write (None: nothing to write) and its result.
Decision = Tuple[Optional[D], T]

#: A document as read (None: there is none) and the blob's ETag then (None: no blob).
Tagged = Tuple[Optional[D], Optional[str]]


class DocumentBusy(LockUnavailable):
    """Other writers changed the document between every read and write of a change."""


class _NotLandedYet(Exception):
    """A read back shows the document as the write found it (the write may land later)."""


class DocumentWriteUnknown(Exception):
    """A write's answer was lost, and reading the document back could not tell whether it
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


class BlobDocuments(Generic[D]):
    """The documents of one kind in one lock container. Changes of one document made in this
    process at the same time are written together: one read, every change applied in turn,
    one write, each change its own result; so writers contend only across processes."""

    def __init__(
        self,
        container: ContainerClient,
        storage_timeout: float,
        parse: Callable[[bytes], D],
        naming: Callable[[str, str], str],
        what: str,
        metadata: Callable[[D], Dict[str, str]] = lambda document: {},
    ) -> None:
        """Keep documents in ``container`` as blobs named ``naming(task_hub, name)``, read with
        ``parse`` (ValueError or TypeError for what is not one), written with the blob metadata
        ``metadata`` gives; bound each storage call by ``storage_timeout``; ``what`` names the kind
        in errors."""
        self._container = container
        self._timeout = storage_timeout
        self._parse = parse
        self._naming = naming
        self._metadata = metadata
        self._what = what
        #: Changes waiting to be written, by blob name; a name is here while its writer runs.
        self._waiting: Dict[str, List[Tuple[Callable[[Any], Any], "asyncio.Future[Any]"]]] = {}

    def blob_name(self, task_hub: str, name: str) -> str:
        """The blob of document ``name`` of ``task_hub``."""
        return self._naming(task_hub, name)

    async def change(
        self,
        task_hub: str,
        name: str,
        decide: Callable[[Optional[D]], Decision[D, T]],
        read: Optional["Tagged[D]"] = None,
    ) -> T:
        """Read document ``name``, apply ``decide``, write what it returns if the document is
        still as read, and return its result; on a conflict, all of it again. ``read``: the
        document as read a moment ago, used instead of the first read when no other change of it
        is being written here. Raises LockUnavailable (DocumentBusy after :data:`MAX_ATTEMPTS`
        conflicts): nothing written; DocumentWriteUnknown: a write's answer was lost."""
        result, _ = await self.change_tagged(task_hub, name, decide, read)
        return result

    async def change_tagged(
        self,
        task_hub: str,
        name: str,
        decide: Callable[[Optional[D]], Decision[D, T]],
        read: Optional["Tagged[D]"] = None,
    ) -> "Tuple[T, Tagged[D]]":
        """:meth:`change`, and also the document as the change left it with the blob's
        ETag then, for a later change to write on without reading it first."""
        name = self.blob_name(task_hub, name)
        answer: "asyncio.Future[Tuple[T, Tagged[D]]]" = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(name)
        if waiting is not None:
            waiting.append((decide, answer))  # the writer running takes it in its next round
        else:
            self._waiting[name] = [(decide, answer)]
            # The writer is a task of its own: a caller that goes away does not stop it.
            asyncio.ensure_future(self._writer(name, read))
        return await asyncio.shield(answer)

    async def _writer(self, name: str, read: Optional["Tagged[D]"]) -> None:
        """Write the changes waiting for ``name``, a round at a time, until none wait."""
        blob = self._container.get_blob_client(name)
        try:
            while self._waiting[name]:
                changes, self._waiting[name] = self._waiting[name], []
                await self._round(blob, changes, read)
                read = None
        finally:
            del self._waiting[name]

    async def _round(
        self,
        blob: Any,
        changes: List[Tuple[Callable[[Any], Any], "asyncio.Future[Any]"]],
        read: Optional["Tagged[D]"],
    ) -> None:
        """Apply ``changes`` in order to the document read (first ``read``, if given),
        write the result once, and answer each change with its result and the document
        as the round left it (or with its own exception, on a failure)."""
        pause = FIRST_RETRY_SECONDS
        results: List[Any] = []
        try:
            for _ in range(MAX_ATTEMPTS):
                current, etag = read if read is not None else await self._read(blob)
                read = None
                document, changed = current, False
                results = []
                for decide, _ in changes:
                    try:
                        written, result = decide(document)
                    except Exception as error:  # this change alone fails (writes nothing)
                        results.append(_Refused(error))
                        continue
                    results.append(result)
                    if written is not None:
                        document, changed = written, True
                after = (
                    await self._write_new(blob, current, document, etag)
                    if changed
                    else (current, etag)
                )
                if after is not None:
                    for (_, answer), result in zip(changes, results, strict=True):
                        refused = isinstance(result, _Refused)
                        _settle(answer, result=result if refused else (result, after))
                    return
                await asyncio.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, MAX_RETRY_SECONDS)
            raise DocumentBusy(f"the {self._what} kept changing")
        except DocumentWriteUnknown as unknown:
            for (_, answer), result in zip(changes, results, strict=True):
                if isinstance(result, _Refused):
                    _settle(answer, result=result)
                else:
                    _settle(answer, error=DocumentWriteUnknown(str(unknown), result))
        except Exception as error:  # every change of the round failed alike
            for _, answer in changes:
                _settle(answer, error=error)

    async def _write_new(
        self,
        blob: Any,
        current: Optional[D],
        document: Optional[D],
        etag: Optional[str],
    ) -> "Optional[Tagged[D]]":
        """Write ``document``, changed from ``current`` (read at ``etag``), with a new write
        id after the ones ``current`` keeps (see :meth:`_write`)."""
        assert document is not None
        token = uuid.uuid4().hex[:16]
        earlier = current.writes if current is not None else ()
        writes = (*earlier, token)[-MAX_WRITES:]
        document = document.with_writes(writes)
        return await self._write(blob, document, etag, token)

    async def read(self, task_hub: str, name: str) -> Optional[D]:
        """Document ``name``, or None when there is none (LockUnavailable on failure)."""
        return (await self.read_tagged(task_hub, name))[0]

    async def read_tagged(self, task_hub: str, name: str) -> "Tagged[D]":
        """Document ``name`` and the blob's ETag, for a :meth:`change` to come."""
        return await self._read(self._container.get_blob_client(self.blob_name(task_hub, name)))

    async def _read(self, blob: Any) -> "Tagged[D]":
        try:
            download = await storage_call(blob.download_blob(), self._timeout)
            data = await storage_call(download.readall(), self._timeout)
        except BlobMissing:
            return None, None
        try:
            return self._parse(data), download.properties.etag
        except (ValueError, TypeError):
            # Not a document this app wrote: replaced (conditionally) by the next change.
            return None, download.properties.etag

    async def _write(
        self, blob: Any, document: D, etag: Optional[str], token: str
    ) -> "Optional[Tagged[D]]":
        """Write ``document`` (whose latest write id is ``token``) if the blob is still at
        ``etag`` (absent, for None): the document stored after it, with the blob's ETag
        then, when it was written; None when the blob had changed. Told by a read back,
        that is the document read (a later writer's, keeping this write's id), never
        this one under another writer's ETag."""
        conditions: Dict[str, Any] = (
            {"overwrite": False}
            if etag is None
            else {
                "overwrite": True,
                "etag": etag,
                "match_condition": MatchConditions.IfNotModified,
            }
        )
        failure = ""
        for _ in range(WRITE_SENDS):
            try:
                written = await asyncio.wait_for(
                    blob.upload_blob(
                        document.to_json(), metadata=self._metadata(document), **conditions
                    ),
                    self._timeout,
                )
                return document, written["etag"]
            except (ResourceModifiedError, ResourceExistsError):
                # Refused: by another writer's change, or by this write itself, sent again
                # (here, by the SDK's retry, or by aiohttp's own on a pooled connection the
                # server closed) after an earlier send landed and its answer was lost.
                try:
                    landed, now = await self._read(blob)
                except LockUnavailable:
                    raise DocumentWriteUnknown(f"writing the {self._what}") from None
                return (landed, now) if landed is not None and token in landed.writes else None
            except ResourceNotFoundError:  # the container is missing: first use of the app
                await self._create_container()
                return None
            except (asyncio.TimeoutError, AzureError) as error:
                failure = type(error).__name__
            try:
                return await self._read_back(blob, document, etag, token)
            except _NotLandedYet:
                continue
        raise DocumentWriteUnknown(
            f"writing the {self._what} (sent {WRITE_SENDS} times: {failure})"
        )

    async def _read_back(
        self, blob: Any, document: D, etag: Optional[str], token: str
    ) -> "Optional[Tagged[D]]":
        """After a write's answer was lost, read the document back: carrying the write's
        id, it landed (later writers keep the latest ids), and this is what is there now.
        Carrying the id of the version the write was conditional on but not the write's,
        another writer's change came first, so the write can never land (its condition is
        spent): None, a conflict. Still at ``etag``, nothing landed yet, but a write held
        on the way or by a slow server may land later: _NotLandedYet, and the caller sends
        the same write again, whose answer settles it. Otherwise it cannot be told.
        A cut connection often mends within moments, so the read is tried a few times."""
        conditional_on = document.writes[-2] if len(document.writes) > 1 else None
        for pause in READ_BACK_PAUSES:
            await asyncio.sleep(pause)
            try:
                landed, now = await self._read(blob)
            except LockUnavailable:
                continue
            if now == etag:
                raise _NotLandedYet
            if landed is not None and token in landed.writes:
                return landed, now
            if landed is not None and conditional_on in landed.writes:
                return None
            break
        raise DocumentWriteUnknown(f"writing the {self._what}")

    async def _create_container(self) -> None:
        async def create() -> None:
            with contextlib.suppress(ResourceExistsError):
                await self._container.create_container()

        await storage_call(create(), self._timeout)
