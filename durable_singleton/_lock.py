"""The lease around check-and-start: one blob lease per task hub and instance id, shared by
every app instance through the storage account (docs/design.md,
"The lease under faults (`_lock.py`)")."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import (
    Any,
    Awaitable,
    Callable,
    Coroutine,
    Dict,
    Optional,
    Protocol,
    Set,
    Tuple,
    TypeVar,
)

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob.aio import BlobClient, BlobLeaseClient, ContainerClient

from ._errors import NotStarted
from ._waiting import Pauses, utc_now

LEASE_SECONDS = 15
RENEW_EVERY_SECONDS = LEASE_SECONDS / 3
#: A renewal that failed is tried again this often while the lease may be valid.
RENEW_RETRY_SECONDS = 1.0
#: Taken off the lease's length when reckoning how long it is certainly held: storage
#: starts the lease when it receives the request, after the app sent it, so counting
#: from the send is already safe; the margin covers clock-rate differences.
SAFETY_MARGIN_SECONDS = 1.0
#: The least time a call under the lock is given; with less left, the holder stops.
MIN_FENCED_SECONDS = 1.0

#: How many lock blob names a process remembers as existing (least recently used go
#: first): a remembered blob needs no create before its lease request, and one whose
#: metadata this process has seen (with the ETag it had then) needs no read of it while
#: a lease request answers with that ETag.
KNOWN_BLOBS = 10_000

#: How many blob clients a LeaseStore keeps for reuse (see LeaseStore._blob).
RECENT_CLIENTS = 64

#: Appended to every lock blob's name. Azure Storage trims trailing dots from blob
#: names (Azurite does not), so "job." and "job" would share one blob there; with a
#: suffix no name ends in a dot, and distinct ids keep distinct names.
LOCK_SUFFIX = ".lock"

logger = logging.getLogger(__name__)


class LockUnavailable(NotStarted):
    """The storage account that holds the locks could not be used (in time)."""


class BlobMissing(Exception):
    """The blob (or its container) a storage call was made on does not exist
    (:func:`storage_call`); each caller says what that means."""

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


class AcquireTimedOut(LockUnavailable):
    """A lease request storage did not answer in time: it may have been granted."""


class LockLost(NotStarted):
    """The holder can no longer prove it holds the lease; it must act no further."""


#: What storage answers a call that needs a lease the caller does not hold (409
#: LeaseIdMismatch, LeaseLost, LeaseNotPresent; 412 a lease condition not met).
LEASE_REFUSED = (409, 412)

T = TypeVar("T")


async def storage_call(
    call: Awaitable[T],
    timeout: float,
    lost_on: Tuple[int, ...] = (),
    timed_out: Callable[[str], LockUnavailable] = LockUnavailable,
) -> T:
    """Make one storage ``call`` within ``timeout`` seconds: the one place where the
    Storage SDK's failures become the lock's.

    Raises ``timed_out`` when storage does not answer in time, BlobMissing when the blob (or
    its container) does not exist (each caller says what that means), LockLost for an
    HTTP status in ``lost_on`` (the lease is not held), LockUnavailable for any other
    failure.
    """
    try:
        return await asyncio.wait_for(call, timeout)
    except asyncio.TimeoutError:
        raise timed_out("storage did not answer in time") from None
    except ResourceNotFoundError as error:
        raise BlobMissing(_describe(error)) from error
    except HttpResponseError as error:
        if error.status_code in lost_on:
            raise LockLost(_describe(error)) from error
        raise LockUnavailable(_describe(error)) from error
    except AzureError as error:
        raise LockUnavailable(_describe(error)) from error


def lock_blob_name(task_hub: str, instance_id: str) -> str:
    """Name the lock blob of ``instance_id`` in ``task_hub``: ids are unique per task hub
    (not per function), hub names are case-insensitive (lowercased), ids case-sensitive, and
    :data:`LOCK_SUFFIX` keeps every name from ending in a dot."""
    return f"{task_hub.lower()}/{instance_id}{LOCK_SUFFIX}"


#: What a process last saw of a lock blob: its ETag and its metadata then.
Seen = Tuple[str, Dict[str, str]]

#: A sleep (the event loop's, unless a test gives one on its own clock).
Sleep = Callable[[float], Awaitable[None]]


def valid_until(sent: float, lease_seconds: float) -> float:
    """Until when a lease acquired or renewed by a request sent at ``sent`` certainly holds."""
    return sent + lease_seconds - SAFETY_MARGIN_SECONDS


class Leases(Protocol):
    """The storage a lock's leases live in: :class:`LeaseStore` on Blob Storage (each method
    is documented there), or tests/support/memory_leases.py's in memory on a clock tests move.
    A lease is what :meth:`lease` hands out, with the ``etag`` and ``last_modified`` its lease
    request answered with."""

    clock: Callable[[], float]
    storage_timeout: float

    def lease(self, name: str) -> Any: ...

    async def acquire(self, name: str, lease: Any) -> Tuple[bool, bool]: ...

    async def renew(self, lease: Any) -> float: ...

    async def release(self, lease: Any) -> None: ...

    async def delete(self, name: str, lease: Any, timeout: float) -> bool: ...

    async def write_metadata(
        self, name: str, lease: Any, metadata: Dict[str, str], timeout: float
    ) -> str: ...

    async def read_properties(
        self, name: str
    ) -> Optional[Tuple[Dict[str, str], datetime.datetime]]: ...

    async def read_metadata(self, name: str) -> Optional[Dict[str, str]]: ...

    def seen(self, name: str) -> Optional[Seen]: ...

    def knows(self, name: str) -> bool: ...

    async def create_ahead(self, name: str) -> Optional[LockUnavailable]: ...

    def valid_until(self, sent: float) -> float: ...


class LeaseStore:
    """The lease's storage calls on one lock container, each bounded by ``storage_timeout``
    and failing as :func:`storage_call` says. It remembers up to ``known_blobs`` lock blobs as
    existing (least recently used forgotten), so a lock used before needs only its lease
    request, each with the metadata it last created, read or wrote and the ETag then."""

    def __init__(
        self,
        container: ContainerClient,
        storage_timeout: float,
        lease_seconds: int = LEASE_SECONDS,
        known_blobs: int = KNOWN_BLOBS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Keep lock blobs in ``container``; see the class docstring. ``clock`` is the
        monotonic clock a lease's validity is reckoned on."""
        self._container = container
        self.clock = clock
        self.storage_timeout = storage_timeout
        self._lease_seconds = lease_seconds
        self._known: "OrderedDict[str, Optional[Seen]]" = OrderedDict()
        self._known_limit = known_blobs
        self._clients: "OrderedDict[str, BlobClient]" = OrderedDict()

    def _blob(self, name: str) -> BlobClient:
        """The client of blob ``name``: the SDK builds a pipeline per client (a few tenths
        of a millisecond of CPU), so the most recent few are kept for the calls of one
        start (create, lease, release, metadata) to share."""
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self._container.get_blob_client(name)
            while len(self._clients) > RECENT_CLIENTS:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(name)
        return client

    def lease(self, name: str) -> BlobLeaseClient:
        """A lease client for blob ``name`` with an id of the app's own (a new UUID), so
        any path that may have acquired it can release it."""
        return BlobLeaseClient(self._blob(name), lease_id=str(uuid.uuid4()))

    async def acquire(self, name: str, lease: BlobLeaseClient) -> Tuple[bool, bool]:
        """Take ``lease`` on blob ``name``: whether it was granted (False when another holder has
        it), and whether this call created the blob. AcquireTimedOut (a LockUnavailable) when
        storage did not answer in time: the lease may have been granted."""
        try:
            return await storage_call(
                self._acquire(name, lease), self.storage_timeout, timed_out=AcquireTimedOut
            )
        except BlobMissing as gone:
            raise LockUnavailable(gone.description) from gone.__cause__

    async def _acquire(self, name: str, lease: BlobLeaseClient) -> Tuple[bool, bool]:
        blob = self._blob(name)
        created = False
        seen = self._known.get(name)
        if name not in self._known:
            # Not used in this process yet: it may be new. Creating first costs one
            # request either way, where a failed lease request would cost two.
            seen = await self._create(blob)
            created = seen is not None
        try:
            acquired = await self._request_lease(lease)
        except ResourceNotFoundError:
            # Known but gone (the container was deleted): create, then once more.
            seen = await self._create(blob)
            created = seen is not None
            acquired = await self._request_lease(lease)
        self._remember(name, seen)
        return acquired, created

    async def _request_lease(self, lease: BlobLeaseClient) -> bool:
        """Request ``lease``; False when another holder has the blob's lease."""
        try:
            await lease.acquire(lease_duration=self._lease_seconds)
        except HttpResponseError as error:
            if error.status_code == 409 and _code(error) == "LeaseAlreadyPresent":
                return False
            raise
        return True

    def seen(self, name: str) -> Optional[Seen]:
        """The metadata of blob ``name`` this process last saw, with the blob's ETag then
        (None when it has seen none)."""
        return self._known.get(name)

    def knows(self, name: str) -> bool:
        """Whether blob ``name`` is known to exist (created or leased in this process)."""
        return name in self._known

    async def create_ahead(self, name: str) -> Optional[LockUnavailable]:
        """Create blob ``name`` ahead of a lease request, within the storage timeout;
        remember it on success. Returns (never raises) the failure, for the lease
        request that may follow to answer with: storage already had its time."""
        try:
            seen = await storage_call(self._create(self._blob(name)), self.storage_timeout)
        except LockUnavailable as error:
            return error
        except BlobMissing as gone:
            return LockUnavailable(gone.description)
        self._remember(name, seen)
        return None

    def _remember(self, name: str, seen: Optional[Seen] = None) -> None:
        """Note that the blob ``name`` exists (and, when given, what it held), forgetting
        the least recently used."""
        if seen is not None or name not in self._known:
            self._known[name] = seen
        self._known.move_to_end(name)
        while len(self._known) > self._known_limit:
            self._known.popitem(last=False)

    async def _create(self, blob: BlobClient) -> Optional[Seen]:
        """Create the empty lock blob (and its container) unless it exists: what it holds when
        this call created it, None when it existed (even leased: another caller's blob serves)."""
        try:
            try:
                created = await blob.upload_blob(b"", overwrite=False)
            except ResourceExistsError:
                return None
        except ResourceNotFoundError:  # the container is missing: first use of the app
            with contextlib.suppress(ResourceExistsError):
                await self._container.create_container()
            try:
                created = await blob.upload_blob(b"", overwrite=False)
            except ResourceExistsError:
                return None
        return str(created["etag"]), {}

    async def renew(self, lease: BlobLeaseClient) -> float:
        """Renew ``lease``; return the monotonic time until which it is certainly held."""
        sent = self.clock()
        try:
            await storage_call(lease.renew(), self.storage_timeout, lost_on=(409,))
        except BlobMissing as gone:
            raise LockUnavailable(gone.description) from gone.__cause__
        return self.valid_until(sent)

    async def read_metadata(self, name: str) -> Optional[Dict[str, str]]:
        """The metadata of lock blob ``name``; None when the blob does not exist."""
        found = await self.read_properties(name)
        return None if found is None else found[0]

    async def read_properties(
        self, name: str
    ) -> Optional[Tuple[Dict[str, str], datetime.datetime]]:
        """The metadata of lock blob ``name`` and when it was last modified (a metadata write
        modifies it; a lease does not); None when the blob does not exist."""
        blob = self._blob(name)
        try:
            properties = await storage_call(blob.get_blob_properties(), self.storage_timeout)
        except BlobMissing:
            return None
        metadata = dict(properties.metadata or {})
        self._remember(name, (str(properties.etag), metadata))
        return metadata, properties.last_modified

    async def delete(self, name: str, lease: BlobLeaseClient, timeout: float) -> bool:
        """Delete lock blob ``name`` under ``lease`` within ``timeout`` seconds; False when it was
        gone already (the next lease request creates it again)."""
        self._known.pop(name, None)
        try:
            await self._under_lease(self._blob(name).delete_blob(lease=lease), timeout)
        except BlobMissing:
            return False
        return True

    async def write_metadata(
        self, name: str, lease: BlobLeaseClient, metadata: Dict[str, str], timeout: float
    ) -> str:
        """Replace the metadata of lock blob ``name`` under ``lease`` within ``timeout`` seconds;
        return the blob's ETag after the write."""
        try:
            written = await self._under_lease(
                self._blob(name).set_blob_metadata(metadata, lease=lease), timeout
            )
        except BlobMissing as gone:
            raise LockUnavailable(gone.description) from gone.__cause__
        etag = str(written["etag"])
        self._remember(name, (etag, dict(metadata)))
        return etag

    async def _under_lease(self, call: Awaitable[Any], timeout: float) -> Any:
        """Make one storage ``call`` that needs the lease, within ``timeout`` seconds (and the
        storage timeout): LockLost when storage says the lease is not held."""
        return await storage_call(call, min(timeout, self.storage_timeout), LEASE_REFUSED)

    async def release(self, lease: BlobLeaseClient) -> None:
        """Release ``lease``; never raises (an unreleased lease expires on its own)."""
        try:
            await asyncio.wait_for(lease.release(), self.storage_timeout)
        except (Exception, asyncio.TimeoutError) as error:
            logger.warning(
                "Start lock release failed (%s); it expires on its own.", type(error).__name__
            )

    def valid_until(self, sent: float) -> float:
        """Until when a lease acquired or renewed by a request sent at ``sent`` holds."""
        return valid_until(sent, self._lease_seconds)


class Background:
    """Work no caller waits for (lease releases and a start's confirmation before them, a
    last renewal), kept until closed."""

    def __init__(self) -> None:
        """Nothing running yet."""
        self._tasks: Set["asyncio.Task[Any]"] = set()

    def spawn(self, work: Coroutine[Any, Any, T]) -> "asyncio.Task[T]":
        """Run ``work`` without a caller waiting; kept until :meth:`close`."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Wait until everything spawned (and spawned meanwhile) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            # A task that had just ended is still in the set until its done callback
            # runs, and awaiting finished tasks never yields to the loop that would run
            # it: drop the finished ones here, or this would spin.
            self._tasks.difference_update([task for task in self._tasks if task.done()])


class _Attempt:
    """One process-local attempt at a lock, which other local callers may wait on."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.error: Optional[LockUnavailable] = None


class LocalAttempts:
    """The locks callers in this process are taking or hold, by blob name: a burst of
    requests for one id makes one storage attempt, and the others wait for it."""

    def __init__(self) -> None:
        """No attempt yet."""
        self._attempts: Dict[str, _Attempt] = {}

    def begin(self, name: str) -> Optional[Callable[[Optional[LockUnavailable]], None]]:
        """Begin the attempt at ``name``: the function that ends it (with the error its waiters
        get); None when a caller here already has it."""
        if name in self._attempts:
            return None
        attempt = self._attempts[name] = _Attempt()

        def finish(error: Optional[LockUnavailable] = None) -> None:
            if self._attempts.get(name) is attempt:  # not a later caller's attempt
                del self._attempts[name]
            attempt.error = error
            attempt.done.set()

        return finish

    def __contains__(self, name: object) -> bool:
        """Whether a caller here is taking (or holds) the lock ``name``."""
        return name in self._attempts

    async def wait(self, name: str, timeout: float) -> bool:
        """Wait, at most ``timeout`` seconds, until the attempt at ``name`` ends; False at
        once when there is none. Raises the attempt's LockUnavailable, if it failed."""
        attempt = self._attempts.get(name)
        if attempt is None:
            return False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(attempt.done.wait(), timeout)
        if attempt.error is not None:
            raise attempt.error
        return True


class StartLocks:
    """The start locks of one lock container (one per composition root): the lease's storage
    calls (``store``), this process's attempts and the work left to the background."""

    def __init__(
        self,
        store: Leases,
        renew_every: float = RENEW_EVERY_SECONDS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """Keep locks in ``store``; renew a held lease every ``renew_every`` seconds,
        pausing with ``sleep`` (the leases are reckoned on ``store.clock``)."""
        self.store = store
        self.attempts = LocalAttempts()
        self.background = Background()
        self._renew_every = renew_every
        self._sleep = sleep
        #: Lock blobs being created ahead of a possible lease request, by name.
        self._preparing: Dict[str, "asyncio.Task[Optional[LockUnavailable]]"] = {}

    def prepare(self, task_hub: str, instance_id: str) -> None:
        """Create the id's lock blob in the background, unless this process knows it: called while
        the status is read, so that a start takes its lease with one storage request. A request
        that starts nothing does not wait for it."""
        name = lock_blob_name(task_hub, instance_id)
        if self.store.knows(name) or name in self._preparing:
            return
        task = self.background.spawn(self.store.create_ahead(name))
        self._preparing[name] = task

        def done(_: "asyncio.Task[Optional[LockUnavailable]]") -> None:
            if self._preparing.get(name) is task:
                del self._preparing[name]

        task.add_done_callback(done)

    async def try_acquire(self, task_hub: str, instance_id: str) -> Optional["HeldLock"]:
        """Take the lease for the id, or return None at once when someone else holds it.
        Raises LockUnavailable, and the callers here waiting on this attempt get the same."""
        name = lock_blob_name(task_hub, instance_id)
        finish = self.attempts.begin(name)
        if finish is None:
            return None  # taken (or being taken) in this process: no storage call needed
        lease = self.store.lease(name)
        preparing = self._preparing.get(name)
        if preparing is not None:
            try:
                # Its own time limit bounds it, and it never raises; shielded, as other
                # callers may be waiting for it too.
                failure = await asyncio.shield(preparing)
            except BaseException:
                finish(None)
                raise
            if failure is not None:  # storage had its time: answer now, not after more
                finish(failure)
                raise failure
        sent = self.store.clock()
        try:
            acquired, created = await self.store.acquire(name, lease)
        except LockUnavailable as error:
            finish(error)  # the waiters hear it now, with this caller
            if isinstance(error, AcquireTimedOut):
                # The request may have been granted: its release goes on meanwhile.
                self.background.spawn(self.store.release(lease))
            raise
        except BaseException:
            # Cancelled while the lease request was in flight: it may have been
            # granted. The proposed id lets the release undo it; local waiters go on
            # once that is done.
            async def release_then_finish() -> None:
                try:
                    await self.store.release(lease)
                finally:
                    finish(None)

            self.background.spawn(release_then_finish())
            raise
        if not acquired:
            finish(None)
            return None
        held = HeldLock(
            name, lease, self.store, self.background, sent, self._renew_every, finish, self._sleep
        )
        held.created = created
        return held

    def taken_here(self, task_hub: str, instance_id: str) -> bool:
        """Whether a caller in this process is taking (or holds) the id's lock: then
        :meth:`try_acquire` answers None at once, without a storage call."""
        return lock_blob_name(task_hub, instance_id) in self.attempts

    async def wait_for_local_holder(self, task_hub: str, instance_id: str, timeout: float) -> bool:
        """Wait, at most ``timeout`` seconds, until this process's holder of the id's lock is done
        with it; False at once when no caller here has it (the caller polls instead). Raises the
        LockUnavailable the attempt waited on failed with."""
        return await self.attempts.wait(lock_blob_name(task_hub, instance_id), timeout)

    async def read_record(self, task_hub: str, instance_id: str) -> Optional[Dict[str, str]]:
        """The metadata of the id's lock blob (None when it has none yet)."""
        return await self.store.read_metadata(lock_blob_name(task_hub, instance_id))

    async def read_lock(
        self, task_hub: str, instance_id: str
    ) -> Optional[Tuple[Dict[str, str], datetime.datetime]]:
        """The metadata of the id's lock blob and when it was last modified (None when
        there is no blob)."""
        return await self.store.read_properties(lock_blob_name(task_hub, instance_id))

    async def close(self) -> None:
        """Wait for the work handed to the background (shutdown, tests)."""
        await self.background.close()


@dataclass(frozen=True)
class Fenced:
    """The time a call made under a held lease may take, proven by
    :meth:`HeldLock.fence` (the only maker of one): the call ends before the lease can."""

    seconds: float


class HeldLock:
    """A lease this caller holds, renewed in the background until let go."""

    def __init__(
        self,
        name: str,
        lease: Any,
        store: Leases,
        background: Background,
        sent: float,
        renew_every: float,
        on_done: Callable[[Optional[LockUnavailable]], None],
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """Hold ``lease`` on blob ``name``, acquired by a request sent at monotonic time ``sent``;
        renew it every ``renew_every`` seconds (pausing with ``sleep``) through ``store``; leave
        releases to ``background``. ``on_done`` runs as soon as the holder lets go, before the
        release reaches storage: it wakes the callers here that wait for the lock."""
        self.name = name
        self._lease = lease
        self._store = store
        self._background = background
        self._renew_every = renew_every
        self._valid_until = store.valid_until(sent)
        self._on_done = on_done
        self._sleep = sleep
        self._renewing = asyncio.Lock()
        #: Whether the lease request created the lock blob (the id had none).
        self.created = False
        #: Renewals sent so far (in the background or to fence a call).
        self.renewals = 0
        #: The blob's ETag as this holder last knew it: the lease request's, then its own
        #: metadata writes'.
        self._etag = lease.etag
        self._renewer = asyncio.create_task(self._keep_renewing())

    def remaining(self) -> float:
        """Seconds for which the lease is certainly still held (negative once not)."""
        return self._valid_until - self._store.clock()

    async def fence(self, needed: float) -> Fenced:
        """Make sure the lease is held for ``needed`` more seconds, renewing (and retrying while
        it may be valid) when less remains; return the time left, which bounds the caller's call
        (a slow renewal can leave less than ``needed``). LockLost when less than
        :data:`MIN_FENCED_SECONDS` can be proven: the caller must not act under the lock."""
        if self.remaining() < needed:
            retries = Pauses(
                RENEW_RETRY_SECONDS,
                RENEW_RETRY_SECONDS,
                self.remaining(),
                clock=self._store.clock,
                sleep=self._sleep,
            )
            while not retries.expired():
                try:
                    await self._renew()
                    break
                except LockUnavailable:
                    await retries.sleep()
        left = self.remaining()
        if left < MIN_FENCED_SECONDS:
            raise LockLost("the lease could not be renewed while it was valid")
        return Fenced(left)

    def known_metadata(self, within: datetime.timedelta) -> Optional[Dict[str, str]]:
        """The lock blob's metadata as far as it may have been written in the last ``within``,
        when known without a storage call: the metadata this process last saw, if the blob still
        has the ETag it had then; {} when the lease request's last modification is older than
        ``within``; otherwise None (:meth:`read_metadata`)."""
        seen = self._store.seen(self.name)
        if seen is not None and seen[0] == self._etag:
            return dict(seen[1])
        modified = self._lease.last_modified
        if modified is not None and modified + within <= utc_now():
            return {}
        return None

    async def read_metadata(self) -> Dict[str, str]:
        """The lock blob's metadata, read now (LockUnavailable)."""
        found = await self._store.read_properties(self.name)
        return {} if found is None else found[0]

    async def write_metadata(self, metadata: Dict[str, str]) -> None:
        """Replace the lock blob's metadata under this lease, fenced like every call
        made under the lock (LockLost, LockUnavailable)."""
        left = await self.fence(self._store.storage_timeout)
        self._etag = await self._store.write_metadata(
            self.name, self._lease, metadata, left.seconds
        )

    async def delete_blob(self) -> bool:
        """Delete the lock blob under this lease, fenced, and let go; False when it was gone
        already. On LockLost or LockUnavailable the lease is still held, to release."""
        left = await self.fence(self._store.storage_timeout)
        deleted = await self._store.delete(self.name, self._lease, left.seconds)
        await self._stop()
        return deleted

    async def release(self) -> None:
        """Stop renewing and release the lease. Never raises."""
        await self._stop()
        await self._store.release(self._lease)

    def release_in_background(self, first: Optional[Awaitable[None]] = None) -> None:
        """Release without making the caller wait, once ``first`` (work that comes
        before the release, if any) has ended; see :meth:`StartLocks.close`."""
        self._let_go()

        async def release() -> None:
            try:
                if first is not None:
                    await first
            finally:
                await self.release()

        self._background.spawn(release())

    def abandon(self) -> None:
        """Keep the lease until it runs out, after a call under it whose answer was lost and
        which may still land; one more renewal (best effort) gives that call a full lease to land
        before anyone else can start the id."""
        self._let_go()

        async def last_renewal() -> None:
            await self._stop()
            with contextlib.suppress(LockLost, LockUnavailable):
                await self._renew()

        self._background.spawn(last_renewal())

    async def _stop(self) -> None:
        self._let_go()
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer

    def _let_go(self) -> None:
        on_done, self._on_done = self._on_done, lambda error: None
        on_done(None)

    async def _renew(self) -> None:
        async with self._renewing:
            self.renewals += 1
            self._valid_until = max(self._valid_until, await self._store.renew(self._lease))

    async def _keep_renewing(self) -> None:
        """Renew every few seconds, and a failed renewal every second while the lease may hold,
        until the holder lets go."""
        pause = self._renew_every
        while True:
            await self._sleep(pause)
            try:
                await self._renew()
                pause = self._renew_every
            except LockLost as error:
                logger.warning("Start lock lost (%s).", error)
                return
            except LockUnavailable as error:
                if self.remaining() <= 0:
                    logger.warning(
                        "Start lock renewal failed until the lease ran out (%s).", error
                    )
                    return
                logger.warning("Start lock renewal failed (%s); retrying.", error)
                pause = RENEW_RETRY_SECONDS


def _code(error: AzureError) -> Optional[str]:
    """The storage error code as the service sends it (``LeaseAlreadyPresent``, ...), when
    the answer had one; the SDK gives a known code as a member of its enum."""
    code = getattr(error, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))


def _describe(error: AzureError) -> str:
    # The error code or class only: messages can hold URLs, never needed in a log.
    code = _code(error)
    return f"{type(error).__name__}{f' ({code})' if code else ''}"
