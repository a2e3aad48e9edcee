"""SingletonRetention: an opt-in timer that cleans up after singletons that ended
(docs/operate.md, "Retention"). Each id is tidied under its own start lease with its status
read again under it; every storage and Durable call is counted where it is made
(:meth:`_Tick._call`), so a tick never passes ``SINGLETON_RETENTION_MAX_CALLS``."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, List, Optional, Set

import azure.functions as func
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import ContainerClient
from opentelemetry.trace import Span

from . import _telemetry as telemetry
from ._durable import DurableClient, DurableFailure, InstanceStatus
from ._idempotency import Records
from ._invocation import RootFactory, Told, enveloped
from ._lock import LOCK_SUFFIX, HeldLock, LockLost, LockUnavailable, lock_blob_name
from ._policy import FINISHED
from ._problems import Problem, printable
from ._root import Root
from ._settings import Retention, load_retention
from ._slots import parse_slot
from ._waiting import utc_now

logger = logging.getLogger("durable_singleton.retention")

#: Instances per page of the instance query.
PAGE_SIZE = 100


class _OutOfBudget(Exception):
    """The tick has spent its calls or its time."""

    def __init__(self, bound: str):
        super().__init__(bound)
        self.bound = bound


class _PurgeInFlight(Exception):
    """A purge request was sent and its answer lost; ``cause`` is why."""

    def __init__(self, cause: BaseException):
        super().__init__(type(cause).__name__)
        self.cause = cause


@dataclass
class RetentionReport:
    """What one tick removed, and why it stopped early (``stopped``: ``calls`` or
    ``time``; None when it got through everything)."""

    purged: List[str] = field(default_factory=list)
    staged_blobs: List[str] = field(default_factory=list)
    lock_blobs: List[str] = field(default_factory=list)
    busy: List[str] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)
    calls: int = 0
    stopped: Optional[str] = None


async def handle_retention_tick(
    make_root: RootFactory, timer: func.TimerRequest, starter: str
) -> Optional[RetentionReport]:
    """Run one tick of the retention timer; log one line. Returns what it removed
    (None when retention is off or could not run)."""
    report: Optional[RetentionReport] = None

    async def tick(told: Told, span: Span) -> None:
        nonlocal report
        root = make_root()
        retention = load_retention(root.environ)
        told.status = 200
        if not retention.enabled:
            told.decision = "retention-disabled"
            return
        report = await run_retention(root, root.durable(starter), retention)
        told.decision = "retention-done" if report.stopped is None else "retention-bounded"
        told.extra += (
            f" purged={len(report.purged)} staged_blobs={len(report.staged_blobs)}"
            f" lock_blobs={len(report.lock_blobs)} busy={len(report.busy)}"
            f" failed={len(report.failed)}"
            f" calls={report.calls} stopped={report.stopped or '-'}"
        )

    def misconfigured(problem: Problem) -> None:
        if problem.kind == "misconfigured":
            logger.error("Retention removes nothing: %s", problem.detail)

    told = Told(extra=f" trigger=timer past_due={str(timer.past_due).lower()}")
    await enveloped("retention", "SingletonRetention", tick, told, on_problem=misconfigured)
    return report


async def run_retention(
    root: Root,
    durable: DurableClient,
    retention: Retention,
    now: Optional[datetime.datetime] = None,
) -> RetentionReport:
    """One pass over what may be removed, within the retention's bounds, ages reckoned from
    ``now`` (the clock's by default). Raises what the instance query or a listing raises; what
    was removed before that is logged and counted already."""
    tick = _Tick(root, durable, retention, now or utc_now())
    # The bound is kept between calls (no call begins after it); this backstop only
    # covers a call that overruns its own time limit.
    settings = root.settings
    overrun = max(settings.durable_timeout_seconds, settings.storage_timeout_seconds) + 1
    try:
        async with asyncio.timeout(retention.max_seconds + overrun):
            await tick.run()
    except _OutOfBudget as out:
        tick.report.stopped = out.bound
    except TimeoutError:
        tick.report.stopped = "time"
    return tick.report


class _Tick:
    """One retention pass."""

    def __init__(
        self, root: Root, durable: DurableClient, retention: Retention, now: datetime.datetime
    ) -> None:
        settings = root.settings
        self.root = root
        self.durable = durable
        self.retention = retention
        self.names = root.catalog.names
        self.locks = root.locks()
        self.jobs = root.container(settings.job_container)
        self.lock_container = root.container(settings.lock_container)
        self.now = now
        age = datetime.timedelta(days=retention.days)
        self.cutoff = now - age
        # A lock blob carries the id's Idempotency-Key record: kept while one may live.
        self.lock_cutoff = now - max(
            age, datetime.timedelta(seconds=settings.idempotency_ttl_seconds)
        )
        self.deadline = time.monotonic() + retention.max_seconds
        self.report = RetentionReport()
        self._visited: Set[str] = set()

    def _call(self, count: int = 1) -> None:
        """Count ``count`` calls about to be made; stop the tick when the bounds are spent."""
        if self.report.calls + count > self.retention.max_calls:
            raise _OutOfBudget("calls")
        if time.monotonic() >= self.deadline:
            raise _OutOfBudget("time")
        self.report.calls += count

    async def run(self) -> None:
        sources = [self._staged_ids(), self._idle_locks()]
        if self.retention.purge_instances:
            sources.insert(0, self._old_instances())
        for source in sources:
            async for instance_id in source:
                if instance_id not in self._visited:
                    self._visited.add(instance_id)
                    await self._tidy(instance_id)

    # -- where the ids come from ----------------------------------------------------

    async def _old_instances(self) -> AsyncIterator[str]:
        """Ids of the app's orchestrators' instances that finished before the cutoff."""
        continuation: Optional[str] = None
        while True:
            self._call()
            page = await self.durable.list_page(
                FINISHED, PAGE_SIZE, continuation, created_to=self.cutoff
            )
            for status in page.statuses:
                if self._purgeable(status):
                    yield str(status.document["instanceId"])
            continuation = page.continuation
            if continuation is None:
                return

    async def _staged_ids(self) -> AsyncIterator[str]:
        """Ids that have staged item blobs (named ``<instance id>/<key>/<block>``)."""
        last = None
        async for name in self._blob_names(self.jobs, None):
            instance_id = name.split("/", 1)[0]
            if instance_id != last:
                last = instance_id
                yield instance_id

    async def _idle_locks(self) -> AsyncIterator[str]:
        """Ids of this task hub whose lock blob is free and was last modified before the
        lock cutoff."""
        prefix = lock_blob_name(self.durable.task_hub, "")[: -len(LOCK_SUFFIX)]
        async for blob in self._blobs(self.lock_container, prefix):
            leased = blob.lease is not None and blob.lease.state == "leased"
            idle = blob.last_modified is not None and blob.last_modified < self.lock_cutoff
            if blob.name.endswith(LOCK_SUFFIX) and idle and not leased:
                yield blob.name[len(prefix) : -len(LOCK_SUFFIX)]

    async def _blob_names(
        self, container: ContainerClient, prefix: Optional[str]
    ) -> AsyncIterator[str]:
        """The names of the blobs in ``container`` (under ``prefix``)."""
        async for blob in self._blobs(container, prefix):
            yield blob.name

    async def _blobs(
        self, container: ContainerClient, prefix: Optional[str]
    ) -> AsyncIterator[Any]:
        """The blobs in ``container`` (under ``prefix``), with their properties, a page per
        counted call; none when the container does not exist yet."""
        pages = container.list_blobs(name_starts_with=prefix).by_page()
        try:
            first = True
            # A page after the last is asked for only with a continuation token: without
            # one the SDK ends the listing without a request, and none is counted.
            while first or getattr(pages, "continuation_token", None):
                first = False
                self._call()
                page = await self._next_page(pages)
                if page is None:
                    return
                async for blob in page:
                    yield blob
        except ResourceNotFoundError:
            return  # no such container yet: nothing was ever staged or locked

    @staticmethod
    async def _next_page(pages: Any) -> Any:
        """The next page of a blob listing (one storage call), None after the last."""
        try:
            return await pages.__anext__()
        except StopAsyncIteration:
            return None

    # -- one id, under its lease -------------------------------------------------------

    def _purgeable(self, status: InstanceStatus) -> bool:
        """Whether an instance of the app's orchestrators finished before the cutoff."""
        updated = status.document.get("lastUpdatedTime")
        try:
            finished_at = datetime.datetime.fromisoformat(str(updated).replace("Z", "+00:00"))
        except ValueError:
            return False
        if finished_at.tzinfo is None:
            finished_at = finished_at.replace(tzinfo=datetime.timezone.utc)
        return (
            status.name in self.names
            and status.runtime_status in FINISHED
            and finished_at < self.cutoff
        )

    async def _tidy(self, instance_id: str) -> None:
        """Everything retention may remove of ``instance_id``, under its start lease. Its storage
        calls are counted as made: the lock blob's creation for an id this process has not met,
        the lease request, the release (or last renewal) charged up front so the budget never
        stops it, and renewals after the hold."""
        name = lock_blob_name(self.durable.task_hub, instance_id)
        self._call(3 if not self.locks.store.knows(name) else 2)
        try:
            held = await self.locks.try_acquire(self.durable.task_hub, instance_id)
        except BaseException:
            self.report.calls -= 1  # nothing to release
            raise
        if held is None:
            self.report.calls -= 1  # nothing to release
            self.report.busy.append(instance_id)
            return
        try:
            deleted = await self._tidy_held(instance_id, held)
        except _PurgeInFlight as in_flight:
            # The purge may still land: no start of the id until it has (see _purge).
            held.abandon()
            self.report.failed.append(instance_id)
            raise in_flight.cause from None
        except (DurableFailure, LockLost) as error:
            # This id only (a purge refused, a lease lost): the next tick tries again.
            logger.warning(
                "SingletonRetention left %s: %s", printable(instance_id), type(error).__name__
            )
            self.report.failed.append(instance_id)
            deleted = False
        except _OutOfBudget:
            # Stopped before this id was done: a lock blob this tick made only to take the
            # lease is deleted, in the call charged for the release, so no later tick finds
            # it and calls it left behind.
            if not (held.created and await self._undo_created(held)):
                await held.release()
            self.report.calls += held.renewals
            raise
        except BaseException:
            await held.release()
            self.report.calls += held.renewals
            raise
        if deleted:
            self.report.calls -= 1  # a deleted blob has no lease to release
        else:
            await held.release()
        self.report.calls += held.renewals

    async def _undo_created(self, held: HeldLock) -> bool:
        """Delete the lock blob this tick created (in place of the release); False when
        storage refused, and the release (one more call, counted) is still to be made."""
        try:
            await held.delete_blob()
            return True
        except (LockLost, LockUnavailable):
            self.report.calls += 1
            return False

    async def _tidy_held(self, instance_id: str, held: HeldLock) -> bool:
        """The work under the lease; True when the lock blob itself was deleted."""
        self._call()
        status = await self.durable.status(instance_id)
        if status is not None and status.runtime_status not in FINISHED:
            return False  # active (or unreadable): never touched
        purged = False
        purgeable = status is not None and self.retention.purge_instances
        if purgeable and status is not None and self._purgeable(status):
            if await self._slot_held(instance_id):
                return False  # the sweep has yet to read its status: its run is in it
            if await self._purge(instance_id, held):
                self._removed("instance", instance_id)
                self.report.purged.append(instance_id)
            purged = True
            status = None
        await self._delete_staged(instance_id)
        if status is None:
            return await self._delete_lock(instance_id, held, purged)
        return False

    async def _slot_held(self, instance_id: str) -> bool:
        """Whether ``instance_id`` is a slot of a key whose queue still holds it: the
        sweep settles such a slot from the instance's status, which a purge would take
        away (one counted read; none for an id that is no slot)."""
        slot = parse_slot(instance_id)
        if slot is None:
            return False
        self._call()
        queue = await self.root.queues().read(self.durable.task_hub, slot[0])
        return queue is not None and slot[1] in queue.slots

    async def _purge(self, instance_id: str, held: HeldLock) -> bool:
        """Purge the finished instance under ``held``; False when it was gone already. A purge
        whose answer was lost may still land: released then, a new run's start could come first
        and an older extension would purge it, freeing the id for a second run; so that answer is
        :class:`_PurgeInFlight` and the lease is kept until it runs out."""
        self._call()
        left = await held.fence(self.durable.timeout)
        try:
            return await self.durable.purge(instance_id, left)
        except DurableFailure:
            raise  # answered: refused, nothing in flight
        except BaseException as error:
            raise _PurgeInFlight(error) from error

    async def _delete_staged(self, instance_id: str) -> None:
        """Delete the id's staged item blobs (its instance is not active)."""
        names = [name async for name in self._blob_names(self.jobs, f"{instance_id}/")]
        for name in names:
            self._call()
            try:
                await asyncio.wait_for(
                    self.jobs.delete_blob(name), self.root.settings.storage_timeout_seconds
                )
            except ResourceNotFoundError:
                continue  # removed meanwhile (by another tick): not counted twice
            self._removed("staged_blob", name)
            self.report.staged_blobs.append(name)

    async def _delete_lock(self, instance_id: str, held: HeldLock, purged: bool) -> bool:
        """Delete the lock blob of an id with no instance, unless an Idempotency-Key
        record on it may still be needed or the id was in use within the cutoff. One this
        tick created to take the lease is deleted again, and not counted as removed."""
        if held.created:
            self._call()
            return await held.delete_blob()
        self._call()
        found = await self.locks.read_lock(self.durable.task_hub, instance_id)
        if found is None:
            return False
        metadata, last_modified = found
        live_until = Records.from_metadata(metadata).live_until()
        if live_until is not None and live_until > self.now:
            return False
        if not purged and last_modified >= self.lock_cutoff:
            return False
        self._call()
        if await held.delete_blob():
            self._removed("lock_blob", instance_id)
            self.report.lock_blobs.append(instance_id)
        return True

    @staticmethod
    def _removed(kind: str, name: str) -> None:
        """Log and count one thing removed."""
        logger.info("SingletonRetention removed %s %s", kind, printable(name))
        telemetry.record_removed(kind)
