"""Blob leases in memory, on a clock the test moves: the lock's logic (fencing, renewal,
expiry, a paused holder, local waiters) tested without Azurite and without real sleeps.

:class:`MemoryLeases` stands where :class:`durable_singleton._lock.LeaseStore` stands
(the :class:`~durable_singleton._lock.Leases` protocol) and answers as that store does
over Blob Storage, which answers as its documentation says (each rule below names its
source). The store's own mapping of the Storage SDK's errors is tested against Azurite
and the fault proxy (tests/test_lock.py, tests/test_faults.py), not here.
"""

from __future__ import annotations

import asyncio
import datetime
import heapq
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from durable_singleton._lock import (
    LEASE_SECONDS,
    LockLost,
    LockUnavailable,
    Seen,
    valid_until,
)


class FakeTime:
    """A monotonic clock and a sleep that moves it: a sleeper wakes when the test
    advances the clock past its wake time (:meth:`advance`), in wake-time order."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: List[Tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        """The time now."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Sleep until the clock has moved ``seconds`` on."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    async def advance(self, seconds: float, step: float = 0.25) -> None:
        """Move the clock ``seconds`` on, in steps of at most ``step``, waking each
        sleeper at its time and letting what it does then run before moving on."""
        end = self.now + seconds
        while True:
            await _settle()
            due = self._sleepers[0][0] if self._sleepers else None
            target = min(end, self.now + step) if due is None else min(due, end, self.now + step)
            self.now = max(self.now, target)
            while self._sleepers and self._sleepers[0][0] <= self.now:
                _, _, woken = heapq.heappop(self._sleepers)
                if not woken.done():
                    woken.set_result(None)
            await _settle()
            if self.now >= end:
                return


async def _settle() -> None:
    """Let every task that can run now run (a few loop turns)."""
    for _ in range(20):
        await asyncio.sleep(0)


@dataclass
class _Blob:
    etag: str
    metadata: Dict[str, str] = field(default_factory=dict)
    last_modified: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
    )
    #: The lease id, and the clock time its lease runs out (None: never leased).
    lease_id: Optional[str] = None
    expires: float = 0.0
    #: A later acquire by another id since the last one: an expired lease can no longer
    #: be renewed.
    generation: int = 0


@dataclass
class MemoryLease:
    """What :meth:`MemoryLeases.lease` hands out, as ``BlobLeaseClient`` is: a proposed
    id, and the ETag and last modification the lease request answered with."""

    name: str
    id: str
    etag: Optional[str] = None
    last_modified: Optional[datetime.datetime] = None
    generation: int = -1


class MemoryLeases:
    """Lock blobs and their leases in memory, reckoned on ``time``.

    ``down`` makes every call fail as storage that cannot be reached does (LockUnavailable,
    nothing done); ``calls`` counts the calls made, by kind.
    """

    def __init__(
        self, time: FakeTime, storage_timeout: float = 5.0, lease_seconds: int = LEASE_SECONDS
    ) -> None:
        self.clock = time.clock
        self.storage_timeout = storage_timeout
        self._lease_seconds = lease_seconds
        self._blobs: Dict[str, _Blob] = {}
        self._known: Dict[str, Optional[Seen]] = {}
        self.down = False
        self.calls: Dict[str, int] = {}
        #: Calls refused while down.
        self.refused = 0

    # -- the Leases protocol ------------------------------------------------------------

    def lease(self, name: str) -> MemoryLease:
        return MemoryLease(name, str(uuid.uuid4()))

    async def acquire(self, name: str, lease: MemoryLease) -> Tuple[bool, bool]:
        self._call("acquire")
        created = name not in self._blobs
        blob = self._blobs.setdefault(name, _Blob(_etag()))
        if created:
            self._known[name] = (blob.etag, {})
        # Lease Blob, acquire: "409 LeaseAlreadyPresent" while another id's lease is
        # active; the same id may acquire again (it renews); an expired or released
        # lease is free (docs: "Lease Blob" REST reference, "Outcomes of lease operations").
        if self._active(blob) and blob.lease_id != lease.id:
            return False, created
        if blob.lease_id != lease.id:
            blob.generation += 1
        blob.lease_id, blob.expires = lease.id, self.clock() + self._lease_seconds
        lease.etag, lease.last_modified = blob.etag, blob.last_modified
        lease.generation = blob.generation
        return True, created

    async def renew(self, lease: MemoryLease) -> float:
        sent = self.clock()
        self._call("renew")
        blob = self._blobs.get(lease.name)
        # BlobLeaseClient.Renew: "the lease may be renewed even if it has expired as long
        # as the blob ... has not been leased again since the expiration of that lease";
        # otherwise 409 (LeaseIdMismatchWithLeaseOperation), which the store reads as lost.
        if blob is None or blob.lease_id != lease.id or blob.generation != lease.generation:
            raise LockLost("LeaseIdMismatchWithLeaseOperation")
        blob.expires = self.clock() + self._lease_seconds
        return valid_until(sent, self._lease_seconds)

    async def release(self, lease: MemoryLease) -> None:
        if self.down:
            return  # never raises: an unreleased lease expires on its own
        self.calls["release"] = self.calls.get("release", 0) + 1
        blob = self._blobs.get(lease.name)
        if blob is not None and blob.lease_id == lease.id and blob.generation == lease.generation:
            blob.lease_id, blob.expires = None, 0.0

    async def delete(self, name: str, lease: MemoryLease, timeout: float) -> bool:
        self._call("delete")
        self._known.pop(name, None)
        blob = self._blobs.get(name)
        if blob is None:
            return False
        self._check_lease(blob, lease)
        del self._blobs[name]
        return True

    async def write_metadata(
        self, name: str, lease: MemoryLease, metadata: Dict[str, str], timeout: float
    ) -> str:
        self._call("write")
        blob = self._blobs.get(name)
        if blob is None:
            raise LockUnavailable("BlobNotFound")
        self._check_lease(blob, lease)
        blob.metadata, blob.etag = dict(metadata), _etag()
        blob.last_modified = datetime.datetime.now(datetime.timezone.utc)
        self._known[name] = (blob.etag, dict(metadata))
        return blob.etag

    async def read_properties(
        self, name: str
    ) -> Optional[Tuple[Dict[str, str], datetime.datetime]]:
        self._call("read")
        blob = self._blobs.get(name)
        if blob is None:
            return None
        self._known[name] = (blob.etag, dict(blob.metadata))
        return dict(blob.metadata), blob.last_modified

    async def read_metadata(self, name: str) -> Optional[Dict[str, str]]:
        found = await self.read_properties(name)
        return None if found is None else found[0]

    def seen(self, name: str) -> Optional[Seen]:
        return self._known.get(name)

    def knows(self, name: str) -> bool:
        return name in self._known

    async def create_ahead(self, name: str) -> Optional[LockUnavailable]:
        try:
            self._call("create")
        except LockUnavailable as error:
            return error
        if name not in self._blobs:
            self._blobs[name] = _Blob(_etag())
        self._known.setdefault(name, None)
        return None

    def valid_until(self, sent: float) -> float:
        return valid_until(sent, self._lease_seconds)

    # -- for the tests --------------------------------------------------------------------

    def holder(self, name: str) -> Optional[str]:
        """The id of the lease active on blob ``name`` now (None: free)."""
        blob = self._blobs.get(name)
        return blob.lease_id if blob is not None and self._active(blob) else None

    def _active(self, blob: _Blob) -> bool:
        return blob.lease_id is not None and blob.expires > self.clock()

    def _check_lease(self, blob: _Blob, lease: MemoryLease) -> None:
        # Writes with a lease id: 412 LeaseLost (expired), LeaseIdMismatchWithBlobOperation
        # or LeaseNotPresentWithBlobOperation (Blob service error codes), all read by the
        # store as "the lease is not held".
        if not self._active(blob) or blob.lease_id != lease.id:
            raise LockLost("LeaseLost")

    def _call(self, kind: str) -> None:
        if self.down:
            self.refused += 1
            raise LockUnavailable("storage did not answer in time")
        self.calls[kind] = self.calls.get(kind, 0) + 1


def _etag() -> str:
    return f'"0x{uuid.uuid4().hex[:16].upper()}"'
