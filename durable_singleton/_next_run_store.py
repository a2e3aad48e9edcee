"""Where an id's next-run channel (durable_singleton._next_run) is kept: the blob
``<task hub>/<instance id>.next`` beside the id's lock blob, changed through
:class:`~durable_singleton._documents.BlobDocuments`; and SingletonNextRun's requests,
through which a job takes its next run."""

from __future__ import annotations

from typing import Any, Dict, Optional

from azure.storage.blob.aio import ContainerClient

from . import _next_run as protocol
from ._documents import BlobDocuments, DocumentWriteUnknown
from ._lock import LOCK_SUFFIX, lock_blob_name
from ._next_run import Channel
from ._slots import QueueStore, take_queued
from ._waiting import utc_now

#: The name the channel's callers know this failure by.
ChannelWriteUnknown = DocumentWriteUnknown

#: Beside the id's lock blob (``<task hub>/<instance id>.lock``).
CHANNEL_SUFFIX = ".next"


def channel_blob_name(task_hub: str, instance_id: str) -> str:
    """The channel blob's name: the lock blob's, with ``.next`` instead of its suffix."""
    return lock_blob_name(task_hub, instance_id)[: -len(LOCK_SUFFIX)] + CHANNEL_SUFFIX


class NextRunStore(BlobDocuments[Channel]):
    """The next-run channels of one lock container (changes of one id's channel made at
    once in this process are written together: :class:`BlobDocuments`)."""

    def __init__(self, container: ContainerClient, storage_timeout: float) -> None:
        """Keep channels in ``container``; bound every storage call by
        ``storage_timeout`` seconds."""
        super().__init__(
            container, storage_timeout, Channel.of_json, channel_blob_name, "next-run channel"
        )


async def handle(
    store: NextRunStore, request: Dict[str, Any], queues: Optional[QueueStore] = None
) -> Any:
    """Carry out one request of SingletonNextRun, the job's side of the channel.

    ``{"op": "take", "hub", "instanceId", "run"}``: run ``run`` has ended; returns the
    next run as ``{"request", "input"}``, or None (the instance ends); for a slot of a key
    with a limit (given ``queues``) with no next run of its own, the key's queue's head.
    ``{"op": "begin", "hub", "instanceId"}``: a waiting run's timer fired; returns
    ``{"begin": {"request", "input"}}``, ``{"wait": dueAt}`` or ``{}`` (a Stop dropped
    it). Each may be retried by the runtime and answers as it did the first time.
    """
    hub, instance_id = request["hub"], request["instanceId"]
    if request["op"] == "take":
        run = request["run"]
        following = await store.change(hub, instance_id, lambda c: protocol.take(c, run))
        if following is None and queues is not None:
            # A slot of a key with a limit passes itself on to the key's queue's head.
            return await take_queued(queues, hub, instance_id, run)
        return (
            None if following is None else {"request": following.request, "input": following.input}
        )
    if request["op"] == "begin":
        now = utc_now()
        decision = await store.change(hub, instance_id, lambda c: protocol.begin(c, now))
        if isinstance(decision, protocol.Wait):
            return {"wait": decision.due_at}
        if isinstance(decision, protocol.Pending):
            return {"begin": {"request": decision.request, "input": decision.input}}
        return {}
    raise ValueError(f"unknown next-run operation {request['op']!r}")
