"""A slot's side of its key's queue: which instance ids are slots, and the hand-over at
a run's end (SingletonNextRun ``take``); the rules are durable_singleton._limit's."""

from __future__ import annotations

import re
from typing import Any, Optional, Tuple

from azure.storage.blob.aio import ContainerClient

from . import _limit as rules
from ._documents import BlobDocuments
from ._limit import Queue, queue_blob_name, queue_metadata
from ._next_run import iso
from ._waiting import utc_now

#: The queues of the keys with a limit, in the lock container (Root.queues).
QueueStore = BlobDocuments[Queue]


def queue_store(container: ContainerClient, storage_timeout: float) -> QueueStore:
    """The key queues kept in ``container`` (the lock container), every storage call
    bounded by ``storage_timeout`` seconds."""
    return BlobDocuments(
        container, storage_timeout, Queue.of_json, queue_blob_name, "key's queue", queue_metadata
    )


#: A slot's instance id: the key, the separator, the slot's number.
_SLOT_ID = re.compile(r"^(?P<key>.+)" + re.escape(rules.SLOT_SEPARATOR) + r"(?P<slot>\d{1,3})$")


def parse_slot(instance_id: str) -> Optional[Tuple[str, int]]:
    """The key and slot number of a slot's instance id; None for any other id."""
    found = _SLOT_ID.match(instance_id)
    if found is None:
        return None
    return found["key"], int(found["slot"])


async def take_queued(queues: QueueStore, hub: str, instance_id: str, run: str) -> Any:
    """SingletonNextRun's ``take`` for a slot's instance whose channel has no next run:
    the queue's head as ``{"request", "input"}`` (the instance continues as new with
    it), or None (the slot is free, or the id is no slot: the instance ends)."""
    slot = parse_slot(instance_id)
    if slot is None:
        return None
    key, number = slot
    now = iso(utc_now())
    head = await queues.change(hub, key, lambda q: rules.take(q, number, run, now))
    return None if head is None else {"request": head.request, "input": head.input}
