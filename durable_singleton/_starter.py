"""The guarded start: status -> decide -> lock -> (replace) -> start -> outcome.

The one sequence behind every start, whatever triggered it (HttpStartSingle, the
timer): it carries out what :mod:`durable_singleton._policy` decides and never decides
itself, and returns what happened as an :class:`Outcome`, or raises what went wrong.
Turning either into an answer is :mod:`durable_singleton._answers`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, TypeVar

from . import _problems as problems
from . import _telemetry as telemetry
from ._durable import (
    DurableClient,
    DurableFailure,
    DurableUnavailable,
    InstanceEnded,
    InstanceStatus,
    StartOutcome,
    StartOutcomeUnknown,
)
from ._errors import NotStarted, OutcomeUnknown
from ._idempotency import (
    Record,
    Records,
    Verdict,
    created_second,
    created_text,
    judge,
)
from ._lock import HeldLock, LockLost, LockUnavailable, StartLocks
from ._next_run import (
    Channel,
    Closed,
    Offered,
    close,
    confirmed,
    offer,
    opened,
    shown_run,
    start_member,
    stop_event,
    stop_run,
    takes_requests,
)
from ._next_run_store import ChannelWriteUnknown
from ._policy import (
    FINISHED,
    REPLACES,
    Action,
    OnConflict,
    decide,
    must_recheck_under_lock,
)
from ._problems import ProblemError
from ._request import StartRequest
from ._root import Root
from ._stop import STOP_EVENT
from ._waiting import Pauses

logger = logging.getLogger("durable_singleton._starter")

T = TypeVar("T")

#: A caller that finds the lock taken checks again after a jittered pause that starts
#: short (the holder usually finishes within one Durable API call) and doubles up to
#: a cap, so waiting callers neither hammer the APIs nor queue behind one another.
FIRST_PAUSE_SECONDS = 0.02
MAX_PAUSE_SECONDS = 0.5

REPLACE_REASON = "Replaced by a start request with onConflict=terminateExisting."

#: While the old instance of onConflict=terminateExisting or stopExisting winds down.
FIRST_POLL_SECONDS = 0.25
MAX_POLL_SECONDS = 2.0

#: While a bufferOne request waits for an instance that is ending its run to end.
FIRST_END_POLL_SECONDS = 0.05
MAX_END_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Outcome:
    """What a start request came to: ``started``, or ``action`` about ``status``.

    ``replayed``: the request's Idempotency-Key started the id's latest execution
    before; that start's answer is given again and nothing was started now.
    ``request_id``: the id a bufferOne or debounced request's input runs under (the
    job's status shows it); ``due_at``: when a debounced run begins; ``dropped``: the
    request whose next run the replaced instance held, dropped with it; ``replaced``:
    the request whose next (or waiting) run this request's input replaced.
    """

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


class NextRunOutcomeUnknown(OutcomeUnknown):
    """A write to the id's next-run channel was sent and its answer lost: whether the
    next run was kept (or dropped, for a stop) is unknown. ``members``: the request's
    id, and what the write replaced or dropped if it landed (the answer's members)."""

    def __init__(self, instance_id: str, **members: Optional[str]):
        super().__init__(instance_id)
        self.instance_id = instance_id
        self.members = {name: value for name, value in members.items() if value is not None}


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
    """Start ``request``'s orchestrator under its id unless the policy says otherwise.

    Parameters
    ----------
    request : StartRequest
        The validated request.
    durable : DurableClient
        The Durable API client of this invocation.
    root : Root
        The composition root: the settings and the start locks.

    Returns
    -------
    Outcome
        Started, or the action taken about the existing instance.

    Raises
    ------
    LockBusy, ReplaceTimedOut, InstanceVanished, StartOutcomeUnknown
        As their docstrings say.
    DurableUnavailable, DurableFailure, LockUnavailable, LockLost, ConfigurationError
        A dependency or a setting failed.
    """
    return await _StartRun(request, durable, root).execute()


class _StartRun:
    """One validated start request, carried out."""

    def __init__(self, request: StartRequest, durable: DurableClient, root: Root):
        self.request = request
        self.durable = durable
        self.root = root
        self.settings = root.settings
        self.id = request.instance_id
        #: The id's key records before this start wrote its own (when it wrote any), and
        #: the records it wrote.
        self.prior: Optional[Records] = None
        self.records: Optional[Records] = None
        #: A bufferOne or debounced request's own id: its run's name in the job's status.
        self.request_id = (
            str(uuid.uuid4()) if request.on_conflict is OnConflict.BUFFER_ONE else None
        )
        #: Whether the orchestrator takes next runs: its instances have a channel.
        self.channelled = root.catalog.accepts_next_run(request.function_name)
        #: The name of the run a start begins (the request's own id, if it has one).
        self.run_id = self.request_id or str(uuid.uuid4())
        #: The next run of the instance this request replaces, dropped with it.
        self.dropped: Optional[str] = None
        #: When the run of a debounced start is due, once its start was sent.
        self.due_at: Optional[str] = None

    async def execute(self) -> Outcome:
        """Decide on the current status; take the lock only for a start."""
        locks = self.root.locks()
        # The lock blob, if this process has not met the id, is created while the
        # status is read: a start then takes its lease with one storage request.
        locks.prepare(self.durable.task_hub, self.id)
        status = await self.durable.status(self.id)
        if self.request.keyed is not None:
            replay = await self._by_key(locks, status)
            if replay is not None:
                return replay
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

        pauses = Pauses(
            FIRST_PAUSE_SECONDS, MAX_PAUSE_SECONDS, self.settings.lock_wait_seconds, jitter=0.5
        )
        waiting = telemetry.LockWait()
        while True:
            with telemetry.step("lock.acquire"):
                held = await locks.try_acquire(self.durable.task_hub, self.id)
            if held is not None:
                waiting.end("acquired")
                return await self._holding(held, status, action)
            waiting.begin()
            # Another caller is starting this id. Rather than queue for the lock, look
            # again at the instance once the holder is likely done: when its start
            # shows, the decision is a refusal (or useExisting) and this caller is
            # answered without the lock. A holder in this process says when it is
            # done; one elsewhere is polled for, with jittered, growing pauses.
            if pauses.expired():
                waiting.end("gave-up")
                raise LockBusy()
            task_hub = self.durable.task_hub
            if not await locks.wait_for_local_holder(task_hub, self.id, pauses.remaining()):
                await pauses.sleep()
            status = await self.durable.status(self.id)
            action = self._decide(status)
            if not action.takes_lock:  # the holder's start shows: answered without the lock
                waiting.end("answered-from-status")
                return await self._answered_without_start(locks, action, status)

    async def _holding(
        self, held: HeldLock, status: Optional[InstanceStatus], action: Action
    ) -> Outcome:
        """Carry the start out under ``held``, and let go of the lease as is safe."""
        acquired_at = _utc_now()
        try:
            answer = await self._under_lock(held, status, action)
        except _Ambiguous as ambiguous:
            # The start may still land: keep the lease until it runs out so no other
            # caller can start over it (see durable_singleton._lock).
            held.abandon()
            if ambiguous.cancelled:
                raise asyncio.CancelledError() from None
            return await self._settle(ambiguous.before, acquired_at)
        except BaseException:
            # Released before the error answer, so an immediate retry is never
            # blocked by this request's lease.
            with telemetry.step("lock.release"):
                await held.release()
            raise
        # The caller need not wait for the release: the start (or the status that
        # refused it) is visible now, so later callers are answered from the
        # instance's status without needing this lock.
        held.release_in_background()
        return answer

    async def _under_lock(
        self, held: HeldLock, status: Optional[InstanceStatus], action: Action
    ) -> Outcome:
        request = self.request
        keyed = request.keyed
        # A request with a key looks again: another one with the same key may have
        # started the id since it read the record. So does a start of an orchestrator
        # that takes next runs: it opens the id's channel before its start is sent, and
        # must not open it over an instance another caller started meanwhile (whose
        # start the runtime would refuse after the channel was taken from it).
        if (
            keyed is not None
            or self.channelled
            or must_recheck_under_lock(action, request.on_conflict, request.reuse)
        ):
            status = await self.durable.status(self.id)
            if keyed is not None:
                # The key's records as they are under the lease: a request with the same
                # key that started (and, a quick job, finished) meanwhile is answered.
                replay = self._by_records(await self._held_records(held), status)
                if replay is not None:
                    return replay
            action = self._decide(status)
            if action is Action.BUFFER:
                return await self._offer_or_start(held, status)
            if not action.starts:
                return await self._answered_without_start(self.root.locks(), action, status)
        return await self._start_now(held, status, action)

    async def _start_now(
        self, held: HeldLock, status: Optional[InstanceStatus], action: Action
    ) -> Outcome:
        """Start under ``held``: replace the active instance first if ``action`` says so."""
        request = self.request
        if action in REPLACES:
            assert status is not None  # only an existing instance is replaced
            await self._replace_and_wait(held, action, status)
        input_, due_at, latest_at = self._start_input()
        if self.channelled:
            await self._open_channel(held, due_at, latest_at)
        await self._record_start(held, status)
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
            await self._restore_records(held)  # answered: no execution came of this start
            raise
        if outcome is StartOutcome.STARTED:
            await self._mark_landed(held)
            await self._confirm_channel()
            return self._started(action, due_at)
        await self._restore_records(held)
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

    def _start_input(self) -> "tuple[Any, Optional[str], Optional[str]]":
        """The input a start sends, and when a debounced run is due (and at the latest):
        a start of an orchestrator that takes next runs names its run, its channel's
        task hub and its due time in the input."""
        if not self.channelled:
            return self.request.input, None, None
        due_at = latest_at = None
        if self.request.debounce is not None:
            due_at, latest_at = self.request.debounce.times(_utc_now())
        member = start_member(self.run_id, self.durable.task_hub, due_at, latest_at)
        self.due_at = due_at
        return {**(self.request.input or {}), "run": member}, due_at, latest_at

    async def _open_channel(
        self, held: HeldLock, due_at: Optional[str], latest_at: Optional[str]
    ) -> None:
        """Before the start is sent, under the lease: the id's channel is this start's,
        keeping a next run its last instance did not take."""
        await held.fence(self.settings.storage_timeout_seconds * 2)
        input_ = self.request.input

        def opening(previous: Any) -> "tuple[Any, None]":
            return opened(previous, self.run_id, input_, due_at, latest_at), None

        try:
            with telemetry.step("nextrun.open"):
                await self.root.next_runs().change(self.durable.task_hub, self.id, opening)
        except ChannelWriteUnknown as error:  # nothing is started on an unknown channel
            raise LockUnavailable("opening the next-run channel") from error

    async def _confirm_channel(self) -> None:
        """The start created the instance: its channel takes requests from now on. If this
        write fails, the first request that reads a status showing the run confirms it
        (durable_singleton._next_run.takes_requests); until then requests wait under the
        lock, so a failure here delays them and loses nothing."""
        if not self.channelled:
            return
        run = self.run_id

        def confirming(channel: Any) -> "tuple[Any, None]":
            return confirmed(channel, run), None

        try:
            with telemetry.step("nextrun.confirm"):
                await self.root.next_runs().change(self.durable.task_hub, self.id, confirming)
        except (LockUnavailable, ChannelWriteUnknown) as error:
            logger.warning("The next-run channel was not confirmed: %s", error)

    def _started(self, action: Action, due_at: Optional[str] = None) -> Outcome:
        return Outcome(
            action,
            None,
            started=True,
            request_id=self.request_id,
            due_at=due_at,
            dropped=self.dropped,
        )

    async def _offer(self, status: Optional[InstanceStatus]) -> Optional[Outcome]:
        """Make the request's input the active instance's next run (or its waiting run's
        input) with one conditional write to the channel; None when the channel takes
        nothing (the instance is ending its run, or was not started through the app)."""
        assert self.request_id is not None
        request_id, input_ = self.request_id, self.request.input
        asked = None
        if self.request.debounce is not None:
            asked, _ = self.request.debounce.times(_utc_now())

        shown = shown_run(status.custom_status) if status is not None else None

        def offering(channel: Any) -> "tuple[Any, Optional[Offered]]":
            if not takes_requests(channel, shown):
                return None, None
            offered = offer(channel, request_id, input_, asked)
            return offered.channel, offered

        try:
            with telemetry.step("nextrun.offer"):
                offered = await self.root.next_runs().change(
                    self.durable.task_hub, self.id, offering
                )
        except ChannelWriteUnknown as error:
            maybe: Optional[Offered] = error.result
            raise NextRunOutcomeUnknown(
                self.id,
                requestId=request_id,
                replacedRequestId=maybe.replaced if maybe is not None else None,
            ) from error
        if offered is None:
            return None
        return Outcome(
            Action.BUFFER,
            status,
            started=False,
            request_id=request_id,
            due_at=offered.due_at,
            replaced=offered.replaced,
        )

    async def _offer_or_start(self, held: HeldLock, status: Optional[InstanceStatus]) -> Outcome:
        """Under the lock: hand the input to the active instance, or, once the instance
        that was ending its run has ended, start the run as the policies say."""
        wait = self.settings.next_run_wait_seconds
        polls = Pauses(FIRST_END_POLL_SECONDS, MAX_END_POLL_SECONDS, wait)
        while self._decide(status) is Action.BUFFER:
            offered = await self._offer(status)
            if offered is not None:
                return offered
            if polls.expired() or held.remaining() <= 0:
                raise InstanceEnding(self.id, wait)
            await polls.sleep(cap=max(held.remaining(), 0.05))
            status = await self.durable.status(self.id)
        return await self._ended_before_taking(held, status)

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
        """Answer a start whose answer was lost from the instance's status.

        An instance created while this request held the lock can only be this
        request's start (or a newer one): 202. Otherwise the outcome is unknown and
        the answer says so, never that nothing was started.
        """
        try:
            status = await self.durable.status(self.id)
        except (DurableUnavailable, DurableFailure):
            status = None
        if status is not None and _created_since(status, before, acquired_at):
            logger.info("A start's answer was lost; its status shows it started.")
            await self._confirm_channel()
            return self._started(Action.START, self.due_at)
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
        while True:
            current = await self.durable.status(self.id)
            if current is None or current.runtime_status in FINISHED:
                if closed is not None and current is not None:
                    self.dropped = closed.after_end(shown_run(current.custom_status))
                return
            if polls.expired():
                raise ReplaceTimedOut(action, current, self.id, waited)
            if held.remaining() <= 0:
                # The renewals failed for a whole lease: say so now, not when the old
                # instance ends (the start would be refused by the fence anyway).
                raise LockLost("the lease ran out while the old instance was ending")
            await polls.sleep(cap=max(held.remaining(), 0.05))

    async def _by_key(
        self, locks: StartLocks, status: Optional[InstanceStatus]
    ) -> Optional[Outcome]:
        """What the request's Idempotency-Key says: the earlier answer again, a problem
        (raised), or None for an ordinary start request."""
        with telemetry.step("idempotency.read"):
            metadata = await locks.read_record(self.durable.task_hub, self.id)
        return self._by_records(Records.from_metadata(metadata or {}), status)

    def _by_records(self, records: Records, status: Optional[InstanceStatus]) -> Optional[Outcome]:
        """What :func:`judge` says of the key, given ``records``: see :meth:`_by_key`."""
        keyed = self.request.keyed
        assert keyed is not None
        now = _utc_now()
        verdict = judge(records, keyed, status, now)
        if verdict is Verdict.REPLAY:
            return Outcome(Action.START, None, started=True, replayed=True)
        if verdict is Verdict.MISMATCH:
            raise ProblemError(problems.idempotency_key_mismatch(self.id))
        if verdict is Verdict.IN_PROGRESS:
            assert records.current is not None
            wait = math.ceil((records.current.window_to - now).total_seconds()) + 1
            raise ProblemError(problems.idempotency_key_in_progress(self.id, wait))
        if verdict is Verdict.SUPERSEDED:
            raise ProblemError(problems.idempotency_key_superseded(self.id))
        return None

    async def _answered_without_start(
        self, locks: StartLocks, action: Action, status: Optional[InstanceStatus]
    ) -> Outcome:
        """The answer when another caller's start shows: for a request with a key, the
        key's own start may be that one."""
        if self.request.keyed is not None:
            replay = await self._by_key(locks, status)
            if replay is not None:
                return replay
        return self._not_started(action, status)

    async def _record_start(self, held: HeldLock, before: Optional[InstanceStatus]) -> None:
        """Under the lease, before the start is sent: move a live key record aside (this
        start comes after its key's), and for a request with a key write its own.

        Costs no storage call for a request without a key unless a record may be live
        (see :meth:`HeldLock.known_metadata`).
        """
        keyed = self.request.keyed
        ttl = datetime.timedelta(seconds=self.settings.idempotency_ttl_seconds)
        prior = await self._held_records(held)
        now = _utc_now()
        own = prior.live_current(now)
        if keyed is None and own is None:
            return
        base = prior
        if keyed is not None and own is not None and own.key_digest == keyed.key_digest:
            base = prior.with_current(None)  # its own earlier attempt, which never landed
        records = base.superseding(now)
        if keyed is not None:
            await _past_the_second_of(before)
            # The record's window: from now to the end of the time the lease is proven
            # held; the start call is bounded by that time.
            await held.fence(self.durable.timeout + self.settings.storage_timeout_seconds)
            began = _utc_now()
            record = Record(
                keyed.key_digest,
                keyed.fingerprint,
                began + datetime.timedelta(seconds=max(held.remaining(), 0.0)),
                created_text(before),
                began + ttl,
            )
            records = records.with_current(record)
        with telemetry.step("idempotency.record"):
            await held.write_metadata(records.metadata())
        self.prior, self.records = prior, records

    async def _held_records(self, held: HeldLock) -> Records:
        """The id's key records, read under the lease only when they may have changed
        since this process last saw them (:meth:`HeldLock.known_metadata`)."""
        ttl = datetime.timedelta(seconds=self.settings.idempotency_ttl_seconds)
        metadata = held.known_metadata(ttl + _CLOCK_ALLOWANCE)
        if metadata is None:
            with telemetry.step("idempotency.read"):
                metadata = await held.read_metadata()
        return Records.from_metadata(metadata)

    async def _mark_landed(self, held: HeldLock) -> None:
        """After the key's start was answered 202, say so in its record. Best effort: an
        unmarked record is judged from the instance's status instead."""
        records = self.records
        if records is None or records.current is None:
            return
        landed = dataclasses.replace(records.current, landed=True, window_to=_utc_now())
        with contextlib.suppress(LockLost, LockUnavailable):
            with telemetry.step("idempotency.record"):
                await held.write_metadata(records.with_current(landed).metadata())

    async def _restore_records(self, held: HeldLock) -> None:
        """Put the key records back as they were once the start was answered without
        starting: no start came after the keys it moved aside, and a retry of its own
        key is a new request at once, not "in progress" until its window ends. Best
        effort: records left behind only make a retry wait for the window, or answer
        "superseded" where nothing newer started."""
        if self.prior is not None:
            with contextlib.suppress(LockLost, LockUnavailable):
                await held.write_metadata(self.prior.metadata())

    def _decide(self, status: Optional[InstanceStatus]) -> Action:
        runtime_status = status.runtime_status if status is not None else None
        return decide(runtime_status, self.request.on_conflict, self.request.reuse)

    def _not_started(self, action: Action, status: Optional[InstanceStatus]) -> Outcome:
        """The outcome of an action that starts nothing, about the existing ``status``."""
        assert action is not Action.BUFFER  # a next run is answered once taken
        if status is None:
            # Only reachable if the instance vanished (purged) between two reads.
            raise InstanceVanished(self.id)
        return Outcome(action, status, started=False)


async def hold_lock(
    locks: StartLocks, task_hub: str, instance_id: str, wait_seconds: float
) -> HeldLock:
    """Take the id's lock, waiting at most ``wait_seconds`` for another holder (then
    :class:`LockBusy`); for an operation that must not interleave with a start or a
    next run of the id."""
    pauses = Pauses(FIRST_PAUSE_SECONDS, MAX_PAUSE_SECONDS, wait_seconds, jitter=0.5)
    while True:
        with telemetry.step("lock.acquire"):
            held = await locks.try_acquire(task_hub, instance_id)
        if held is not None:
            return held
        if pauses.expired():
            raise LockBusy()
        if not await locks.wait_for_local_holder(task_hub, instance_id, pauses.remaining()):
            await pauses.sleep()


#: How many times a Stop follows the instance to the next run it took meanwhile.
MAX_STOP_ROUNDS = 3


async def stop_through_channel(
    root: Root,
    task_hub: str,
    function_name: str,
    instance_id: str,
    send: "Callable[[Any], Awaitable[None]]",
) -> Optional[str]:
    """Send a Stop (``send(data)``) and return the request whose next (or waiting) run
    it dropped.

    The Stop names the run the id's channel names; once it is sent, the next run is
    dropped from the channel with one conditional write, so the instance can never take
    it afterwards. If the instance took it in between, it has begun: it is sent a Stop
    of its own, and nothing is dropped. A Stop that cannot be sent changes nothing.
    Orchestrators that take no next runs have no channel: nothing is dropped.

    Raises what ``send`` raises for the first Stop (InstanceEnded: nothing dropped),
    LockUnavailable when the channel cannot be read (nothing sent), and
    NextRunOutcomeUnknown when the drop's answer was lost (it may have been dropped).
    """
    if not root.catalog.accepts_next_run(function_name):
        await send(stop_event(None))
        return None
    channel = await root.next_runs().read(task_hub, instance_id)
    run = channel.run if channel is not None else None
    await send(stop_event(run))
    for _ in range(MAX_STOP_ROUNDS):
        try:
            stopped = await _in_channel(
                root, task_hub, instance_id, functools.partial(stop_run, run=run)
            )
        except LockUnavailable:
            return None  # the Stop was sent; the next run was not dropped
        if not stopped.moved:
            return stopped.dropped
        run = stopped.run
        with contextlib.suppress(InstanceEnded):
            await send(stop_event(run))
    return None


async def close_channel(root: Root, task_hub: str, function_name: str, instance_id: str) -> Closed:
    """After a terminate was sent: the id's channel takes nothing more, and its next
    (or waiting) run is dropped; return what it removed, and the run it had handed to
    the instance (see :func:`dropped_by_terminate`). Done after the terminate, so a
    terminate that fails loses no next run. Raises NextRunOutcomeUnknown when the
    write's answer was lost, LockUnavailable when storage failed before it."""
    if not root.catalog.accepts_next_run(function_name):
        return Closed(None)
    return await _in_channel(root, task_hub, instance_id, close)


async def dropped_by_terminate(
    durable: DurableClient, instance_id: str, closed: Closed, wait: float
) -> Optional[str]:
    """The request a terminate dropped. A run the channel had handed to the instance
    (taken at a run's end, or begun after its wait) is dropped too when the instance
    ends before beginning it, which its status shows once it has ended: it is read until
    then, at most ``wait`` seconds; after that (or when it cannot be read) only what the
    close removed is claimed."""
    if closed.handed is None or closed.dropped is not None:
        return closed.dropped
    polls = Pauses(FIRST_END_POLL_SECONDS, MAX_END_POLL_SECONDS, wait)
    while True:
        try:
            status = await durable.status(instance_id)
        except (DurableUnavailable, DurableFailure):
            return None
        if status is not None and status.runtime_status in FINISHED:
            return closed.after_end(shown_run(status.custom_status))
        if status is None or polls.expired():
            return None
        await polls.sleep()


async def _in_channel(
    root: Root,
    task_hub: str,
    instance_id: str,
    decide: "Callable[[Optional[Channel]], tuple[Optional[Channel], T]]",
) -> T:
    try:
        with telemetry.step("nextrun.end"):
            return await root.next_runs().change(task_hub, instance_id, decide)
    except ChannelWriteUnknown as error:
        dropped = getattr(error.result, "dropped", error.result)
        raise NextRunOutcomeUnknown(
            instance_id, droppedRequestId=dropped if isinstance(dropped, str) else None
        ) from error


class _Ambiguous(Exception):
    """A start was sent under the lock and its answer was lost (or its caller was
    cancelled); ``before`` is the status the start was decided on."""

    def __init__(self, before: Optional[InstanceStatus], cancelled: bool = False):
        super().__init__()
        self.before = before
        self.cancelled = cancelled


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


#: A key record is looked for while it may be live by the app's clock: the lock blob's
#: last modification is storage's clock.
_CLOCK_ALLOWANCE = datetime.timedelta(minutes=5)
#: The longest a keyed start waits for the second of the execution before it to pass
#: (more would mean the clocks of the app's instances disagree by that much).
MAX_SECOND_WAIT = 2.0


async def _past_the_second_of(before: Optional[InstanceStatus]) -> None:
    """Wait until this machine's clock has left the whole second ``before`` was created
    in: the host stamps the next execution's ``createdTime`` with this clock, so the
    two cannot share a second and a lost answer can be told from the status."""
    created = created_second(before)
    if created is None:
        return
    wait = (created + datetime.timedelta(seconds=1) - _utc_now()).total_seconds()
    if wait > MAX_SECOND_WAIT:
        logger.warning("The instance before this start was created %.1f s ahead.", wait)
    if wait > 0:
        await asyncio.sleep(min(wait, MAX_SECOND_WAIT))


def _created_since(
    status: InstanceStatus,
    before: Optional[InstanceStatus],
    acquired_at: datetime.datetime,
) -> bool:
    """Whether ``status`` describes an instance created after the lock was taken.

    The extension writes ``createdTime`` to the whole second, with the host's clock, the
    same machine's clock as this worker's. An instance created in a later second than
    ``before`` and not before the second the lock was taken in was started while this
    request held the lock; one created in ``before``'s second cannot be told from it
    (a keyed start waits for that second to pass, so for it this never happens).
    """
    created = created_second(status)
    if created is None:
        return False
    previous = created_second(before)
    if previous is not None and created <= previous:
        return False
    return created >= acquired_at.replace(microsecond=0)
