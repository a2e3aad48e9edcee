"""The guarded start: status -> decide -> lock -> (replace) -> start -> outcome.

It carries out what :mod:`durable_singleton._policy` decides and returns an :class:`Outcome`
or raises; :mod:`durable_singleton._answers` turns either into an answer."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

from . import _telemetry as telemetry
from ._durable import (
    DurableClient,
    DurableFailure,
    DurableUnavailable,
    InstanceEnded,
    InstanceStatus,
    StartOutcome,
    StartOutcomeUnknown,
    may_still_land,
)
from ._errors import NotStarted, SingletonError
from ._handover import (
    FIRST_END_POLL_SECONDS,
    MAX_END_POLL_SECONDS,
    ChannelInUse,
    Handover,
    close_channel,
    shown_by,
    stop_through_channel,
)
from ._idempotency import Record, created_second
from ._key_records import KeyRecords
from ._lock import HeldLock, LockLost, StartLocks
from ._policy import (
    FINISHED,
    REPLACES,
    Action,
    decide,
    must_recheck_under_lock,
)
from ._request import StartRequest
from ._root import Root
from ._stop import STOP_EVENT
from ._waiting import Pauses, utc_now

logger = logging.getLogger("durable_singleton._starter")

#: A caller that finds the lock taken checks again after a jittered pause that starts
#: short (the holder usually finishes within one Durable API call) and doubles up to
#: a cap, so waiting callers neither hammer the APIs nor queue behind one another.
FIRST_PAUSE_SECONDS = 0.02
MAX_PAUSE_SECONDS = 0.5

REPLACE_REASON = "Replaced by a start request with onConflict=terminateExisting."

#: While the old instance of onConflict=terminateExisting or stopExisting winds down.
FIRST_POLL_SECONDS = 0.25
MAX_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Outcome:
    """What a start request came to: ``started``, or ``action`` about ``status``.
    ``replayed``: its Idempotency-Key's earlier start is answered again (nothing started now);
    ``request_id``: the id a bufferOne or debounced input runs under; ``due_at``: when a
    debounced run begins; ``dropped``: the request whose next run the replaced instance held;
    ``replaced``: the request whose next (or waiting) run this input replaced."""

    action: Action
    status: Optional[InstanceStatus]
    started: bool
    replayed: bool = False
    request_id: Optional[str] = None
    due_at: Optional[str] = None
    dropped: Optional[str] = None
    replaced: Optional[str] = None

    @property
    def decision(self) -> str:
        """The decision word of the log line, span and metrics."""
        if self.replayed:
            return "replayed"
        return "debounced" if self.due_at is not None else self.action.value

    @property
    def kind(self) -> str:
        """What the answer's ``outcome`` member says: ``started``, ``existing``,
        ``buffered``, ``debounced``, or ``refused`` (the answer is a problem)."""
        if self.due_at is not None:
            return "debounced"
        if self.started:
            return "started"
        if self.action is Action.BUFFER:
            return "buffered"
        if self.action is Action.USE_EXISTING:
            return "existing"
        return "refused"


class LockBusy(NotStarted):
    """Another caller held the id's lock for longer than this one may wait."""


class InstanceVanished(NotStarted):
    """The runtime refused the start as a duplicate, but the instance could not be read."""

    def __init__(self, instance_id: str):
        super().__init__(instance_id)
        self.instance_id = instance_id


class InstanceEnding(NotStarted):
    """The active instance takes no next run (its run is ending, or it was not started
    through the app) and did not end within ``SINGLETON_NEXT_RUN_WAIT_SECONDS``."""

    def __init__(self, instance_id: str, waited_seconds: float):
        super().__init__(instance_id)
        self.instance_id = instance_id
        self.waited_seconds = waited_seconds


class ReplaceTimedOut(NotStarted):
    """The active instance did not end in time after Stop or terminate; nothing started."""

    def __init__(
        self,
        action: Action,
        status: InstanceStatus,
        instance_id: str,
        waited_seconds: float,
    ):
        super().__init__(instance_id)
        self.action = action
        self.status = status
        self.instance_id = instance_id
        self.waited_seconds = waited_seconds


async def start_singleton(request: StartRequest, durable: DurableClient, root: Root) -> Outcome:
    """Start ``request``'s orchestrator under its id unless the policy says otherwise; the
    outcome says it started, or what was done about the existing instance. Raises LockBusy,
    ReplaceTimedOut, InstanceVanished, StartOutcomeUnknown, or a dependency's or setting's
    failure: once a replace dropped the instance's next run, its ``dropped_request_id``
    names it."""
    run = _StartRun(request, durable, root)
    try:
        return await run.execute()
    except SingletonError as error:
        # A drop that landed stands whatever failed after it: the answer names it, as
        # the 202 would, or the caller told the run was buffered would never hear of it.
        if run.dropped is not None and error.dropped_request_id is None:
            error.dropped_request_id = run.dropped
        raise


class _StartRun:
    """One validated start request, carried out."""

    def __init__(self, request: StartRequest, durable: DurableClient, root: Root):
        self.request = request
        self.durable = durable
        self.root = root
        self.settings = root.settings
        self.id = request.instance_id
        #: The request's side of the id's key records.
        self.keys = KeyRecords(request, durable.task_hub, root.settings, durable.timeout)
        #: The request's side of the id's next-run channel.
        self.handover = Handover(request, durable, root)
        #: The next run of the instance this request replaces, dropped with it.
        self.dropped: Optional[str] = None

    async def execute(self) -> Outcome:
        """Decide on the current status; take the lock only for a start."""
        locks = self.root.locks()
        # The lock blob, if this process has not met the id, is created while the
        # status is read: a start then takes its lease with one storage request.
        locks.prepare(self.durable.task_hub, self.id)
        status = await self.durable.status(self.id)
        if self.request.keyed is not None:
            record = await self.keys.replayed(locks, status)
            if record is not None:
                return _replayed(record)
        action = self._decide(status)
        if not action.takes_lock:
            # Fast path: refusing or pointing at the running instance needs no lock.
            return self._not_started(action, status)
        if action is Action.BUFFER:
            # The input becomes the instance's next run with one write to its channel,
            # with no lock: unless the instance is ending its run (then the request
            # starts the run itself, under the lock, once it has ended).
            offered = await self._offer(status)
            if offered is not None:
                return offered

        task_hub = self.durable.task_hub
        if not self._reads_again(action) and not locks.taken_here(task_hub, self.id):
            self.handover.read_ahead()  # beside the lease request, for the channel's open
        pauses, waiting = _lock_pauses(self.settings.lock_wait_seconds), telemetry.LockWait()
        while (held := await _try_or_wait(locks, task_hub, self.id, pauses, waiting)) is None:
            # Another caller is starting this id. Rather than queue for the lock, look
            # again at the instance once the holder is likely done: when its start
            # shows, the decision is a refusal (or useExisting) and this caller is
            # answered without the lock.
            status = await self.durable.status(self.id)
            action = self._decide(status)
            if not action.takes_lock:  # the holder's start shows: answered without the lock
                waiting.end("answered-from-status")
                return await self._answered_without_start(locks, action, status)
        return await self._holding(held, status, action)

    async def _holding(
        self, held: HeldLock, status: Optional[InstanceStatus], action: Action
    ) -> Outcome:
        """Carry the start out under ``held``, and let go of the lease as is safe."""
        acquired_at = utc_now()
        try:
            answer = await self._under_lock(held, status, action)
        except _Ambiguous as ambiguous:
            # The start may still land: keep the lease until it runs out so no other
            # caller can start over it (see durable_singleton._lock).
            held.abandon()
            if ambiguous.cancelled:
                raise asyncio.CancelledError() from None
            return await self._settle(ambiguous.before, acquired_at)
        except BaseException as error:
            if may_still_land(error):
                # A replace's terminate (or Stop) may still land: keep the lease until it
                # runs out, so no start of the id comes before it and is ended by it.
                held.abandon()
            else:
                # Released before the error answer, so an immediate retry is never
                # blocked by this request's lease.
                with telemetry.step("lock.release"):
                    await held.release()
            raise
        # The caller need not wait for the release: the start (or the status that
        # refused it) is visible now, so later callers are answered from the
        # instance's status without needing this lock. Nor for the channel's
        # confirmation: until it lands, requests wait for the lease (as when it fails).
        started_now = answer.started and not answer.replayed
        held.release_in_background(self.handover.confirm() if started_now else None)
        return answer

    async def _under_lock(
        self, held: HeldLock, status: Optional[InstanceStatus], action: Action
    ) -> Outcome:
        request = self.request
        if request.before_start is not None:
            await request.before_start(held)
        if not self._reads_again(action):
            # A start of an orchestrator that takes next runs opens the id's channel
            # before its start is sent; the channel itself tells whether another caller
            # started the id since the status was read (ChannelInUse), so it needs no
            # second status read unless it holds a run.
            with contextlib.suppress(ChannelInUse):
                return await self._start_now(held, status, action, checked=False)
        # Read again: another request with the same key may have started the id since
        # it read the record; the policy needs the current status; or another caller may
        # have started the id, whose channel must not be opened over its instance.
        status = await self.durable.status(self.id)
        if request.keyed is not None:
            # The key's records as they are under the lease: a request with the same
            # key that started (and, a quick job, finished) meanwhile is answered.
            record = self.keys.replayed_by(await self.keys.held(held), status)
            if record is not None:
                return _replayed(record)
        action = self._decide(status)
        if action is Action.BUFFER:
            return await self._offer_or_start(held, status)
        if not action.starts:
            return await self._answered_without_start(self.root.locks(), action, status)
        return await self._start_now(held, status, action)

    async def _start_now(
        self,
        held: HeldLock,
        status: Optional[InstanceStatus],
        action: Action,
        checked: bool = True,
    ) -> Outcome:
        """Start under ``held``: replace the active instance first if ``action`` says so.
        ``checked``: ``status`` was read under the lease (see :meth:`Handover.open`)."""
        request = self.request
        if action in REPLACES:
            assert status is not None  # only an existing instance is replaced
            await self._replace_and_wait(held, action, status)
        input_, due_at, latest_at = self.handover.start_input()
        previous = await self.handover.open(held, due_at, latest_at, checked)
        await self.keys.record_start(held, status, self.dropped)
        try:
            outcome = await self.durable.start(
                request.function_name,
                self.id,
                input_,
                await held.fence(self.durable.timeout),
            )
        except StartOutcomeUnknown as error:
            raise _Ambiguous(status) from error
        except asyncio.CancelledError as error:
            # The caller went away mid-start: the start may land all the same.
            raise _Ambiguous(status, cancelled=True) from error
        except (DurableUnavailable, DurableFailure):
            await self.keys.restore(held)  # answered: no execution came of this start
            raise
        if outcome is StartOutcome.STARTED:
            await self.keys.mark_landed(held)
            return self._started(action, due_at)
        await self.keys.restore(held)
        await self.handover.withdraw(previous)
        # The extension refused: an instance with the id is active after all (started
        # outside this app's lock, for example). Answer as the policy says for it. An
        # older build's 500 may also be a plain failure: then no instance is active.
        status = await self.durable.status(self.id)
        if outcome is StartOutcome.REFUSED_OR_FAILED and (
            status is None or status.runtime_status in FINISHED
        ):
            raise DurableFailure("starting the instance")
        refused = self._decide(status)
        if refused.takes_lock:
            refused = Action.REJECT_ACTIVE
        return self._not_started(refused, status)

    def _started(self, action: Action, due_at: Optional[str] = None) -> Outcome:
        return Outcome(
            action,
            None,
            started=True,
            request_id=self.handover.request_id,
            due_at=due_at,
            dropped=self.dropped,
        )

    async def _offer(self, status: Optional[InstanceStatus]) -> Optional[Outcome]:
        """The request's input as the active instance's next run (or its waiting run's
        input), answered at once; None when the channel takes nothing."""
        offered = await self.handover.offer(shown_by(status))
        if offered is None:
            return None
        return Outcome(
            Action.BUFFER,
            status,
            started=False,
            request_id=self.handover.request_id,
            due_at=offered.due_at,
            replaced=offered.replaced,
        )

    async def _offer_or_start(self, held: HeldLock, read: Optional[InstanceStatus]) -> Outcome:
        """Under the lock: hand the input to the active instance, or, once the instance
        that was ending its run has ended, start the run as the policies say."""
        wait = self.settings.next_run_wait_seconds
        polls = Pauses(FIRST_END_POLL_SECONDS, MAX_END_POLL_SECONDS, wait)
        async for status in polls.looks(self._read, (read,), _lease_cap(held)):
            if self._decide(status) is not Action.BUFFER:
                return await self._ended_before_taking(held, status)
            offered = await self._offer(status)
            if offered is not None:
                return offered
            if held.remaining() <= 0:
                break
        raise InstanceEnding(self.id, wait)

    async def _ended_before_taking(
        self, held: HeldLock, status: Optional[InstanceStatus]
    ) -> Outcome:
        """The instance ended without taking the request's input: start the run as the
        policies say for the ended instance (the lock is still held)."""
        action = self._decide(status)
        if not action.starts:
            return self._not_started(action, status)
        return await self._start_now(held, status, action)

    async def _settle(
        self, before: Optional[InstanceStatus], acquired_at: datetime.datetime
    ) -> Outcome:
        """Answer a start whose answer was lost from the status: an instance created while this
        request held the lock is its start (202); otherwise the outcome is unknown, never "not
        started"."""
        try:
            status = await self.durable.status(self.id)
        except (DurableUnavailable, DurableFailure):
            status = None
        if status is not None and _created_since(status, before, acquired_at):
            logger.info("A start's answer was lost; its status shows it started.")
            await self.handover.confirm()
            return self._started(Action.START, self.handover.due_at)
        raise StartOutcomeUnknown(self.id)

    async def _replace_and_wait(
        self, held: HeldLock, action: Action, status: InstanceStatus
    ) -> None:
        """Ask the active instance to end (Stop or terminate) and wait, bounded, until
        it has; on time-out answer 409 with nothing started."""
        hub, function_name = self.durable.task_hub, self.request.function_name

        async def stop(data: Any) -> None:
            budget = await held.fence(self.durable.timeout)
            await self.durable.raise_event(self.id, STOP_EVENT, data, budget)

        graceful = action is Action.STOP_THEN_START
        with contextlib.suppress(InstanceEnded):  # ended (or purged) already: start
            if graceful:
                self.dropped = await stop_through_channel(
                    self.root, hub, function_name, self.id, stop
                )
            else:
                budget = await held.fence(self.durable.timeout)
                await self.durable.terminate(self.id, REPLACE_REASON, budget)
        closed = None
        if not graceful:
            closed = await close_channel(self.root, hub, function_name, self.id)
            self.dropped = closed.dropped
        waited = self.settings.terminate_timeout_seconds
        polls = Pauses(FIRST_POLL_SECONDS, MAX_POLL_SECONDS, waited)
        async for current in polls.looks(self._read, cap=_lease_cap(held)):
            if current is None or current.runtime_status in FINISHED:
                if closed is not None and current is not None:
                    self.dropped = closed.after_end(shown_by(current))
                return
            if held.remaining() <= 0 and not polls.expired():
                # The renewals failed for a whole lease: say so now, not when the old
                # instance ends (the start would be refused by the fence anyway).
                raise LockLost("the lease ran out while the old instance was ending")
            last = current
        raise ReplaceTimedOut(action, last, self.id, waited)

    async def _answered_without_start(
        self, locks: StartLocks, action: Action, status: Optional[InstanceStatus]
    ) -> Outcome:
        """The answer when another caller's start shows: for a request with a key, the
        key's own start may be that one."""
        if self.request.keyed is not None:
            record = await self.keys.replayed(locks, status)
            if record is not None:
                return _replayed(record)
        return self._not_started(action, status)

    def _reads_again(self, action: Action) -> bool:
        """Whether a start decided as ``action`` reads the status again under the lock
        whatever the id's channel says (:func:`must_recheck_under_lock`; a request with
        a key looks for its own start)."""
        request = self.request
        keyed = request.keyed is not None
        return keyed or must_recheck_under_lock(action, request.on_conflict, request.reuse)

    async def _read(self) -> Optional[InstanceStatus]:
        return await self.durable.status(self.id)

    def _decide(self, status: Optional[InstanceStatus]) -> Action:
        runtime_status = status.runtime_status if status is not None else None
        return decide(runtime_status, self.request.on_conflict, self.request.reuse)

    def _not_started(self, action: Action, status: Optional[InstanceStatus]) -> Outcome:
        """The outcome of an action that starts nothing, about the existing ``status``."""
        assert action is not Action.BUFFER  # a next run is answered once taken
        if status is None:
            # Only reachable if the instance vanished (purged) between two reads.
            raise InstanceVanished(self.id)
        return Outcome(action, status, started=False, dropped=self.dropped)


async def hold_lock(
    locks: StartLocks, task_hub: str, instance_id: str, wait_seconds: float
) -> HeldLock:
    """Take the id's lock, waiting at most ``wait_seconds`` for another holder (then
    :class:`LockBusy`); for an operation that must not interleave with a start or a
    next run of the id."""
    pauses, waiting = _lock_pauses(wait_seconds), telemetry.LockWait()
    while (held := await _try_or_wait(locks, task_hub, instance_id, pauses, waiting)) is None:
        pass
    return held


def _lock_pauses(wait_seconds: float) -> Pauses:
    return Pauses(FIRST_PAUSE_SECONDS, MAX_PAUSE_SECONDS, wait_seconds, jitter=0.5)


async def _try_or_wait(
    locks: StartLocks, task_hub: str, instance_id: str, pauses: Pauses, waiting: telemetry.LockWait
) -> Optional[HeldLock]:
    """One try at the id's lock: the lock, or None once its other holder is likely done
    with it (a holder in this process says when; one elsewhere is polled for, with
    jittered, growing ``pauses``); LockBusy once they are spent."""
    with telemetry.step("lock.acquire"):
        held = await locks.try_acquire(task_hub, instance_id)
    if held is not None:
        waiting.end("acquired")
        return held
    waiting.begin()
    if pauses.expired():
        waiting.end("gave-up")
        raise LockBusy()
    if not await locks.wait_for_local_holder(task_hub, instance_id, pauses.remaining()):
        await pauses.sleep()
    return None


def _replayed(record: Record) -> Outcome:
    """The answer to a request whose Idempotency-Key started the current execution (its
    ``record``): its 202, given again, naming the next run its replace dropped."""
    return Outcome(Action.START, None, started=True, replayed=True, dropped=record.dropped)


class _Ambiguous(Exception):
    """A start was sent under the lock and its answer was lost (or its caller was
    cancelled); ``before`` is the status the start was decided on."""

    def __init__(self, before: Optional[InstanceStatus], cancelled: bool = False):
        super().__init__()
        self.before = before
        self.cancelled = cancelled


def _created_since(
    status: InstanceStatus,
    before: Optional[InstanceStatus],
    acquired_at: datetime.datetime,
) -> bool:
    """Whether ``status`` describes an instance created after the lock was taken.
    ``createdTime`` is whole seconds on this machine's clock: an instance created after
    ``before``'s second and not before the lock's was started while this request held the
    lock; one in ``before``'s second cannot be told (a keyed start waits that second out)."""
    created = created_second(status)
    if created is None:
        return False
    previous = created_second(before)
    if previous is not None and created <= previous:
        return False
    return created >= acquired_at.replace(microsecond=0)


def _lease_cap(held: HeldLock) -> Callable[[], float]:
    """The longest pause a holder polling under ``held`` takes: never past its lease (with
    a floor, so that a lease gone does not make it spin)."""
    return lambda: max(held.remaining(), 0.05)
