"""Starts with a limit of N per key: admission through the key's queue, starts in its
slots, and the sweep. The rules are durable_singleton._limit's; the design is
docs/design.md#a-limit-of-n-per-key-_limitpy-_limitedpy-_slotspy-_limit_sweeppy."""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from . import _limit as rules
from . import _problems as problems
from ._documents import DocumentWriteUnknown, Tagged
from ._durable import DurableClient, InstanceStatus
from ._errors import NotStarted, OutcomeUnknown
from ._limit import Queue, slot_id
from ._lock import MIN_FENCED_SECONDS, BlobMissing, HeldLock, LockLost, storage_call
from ._next_run import iso, shown_run
from ._policy import ACTIVE, OnConflict, OnFull, Reuse
from ._problems import ProblemError
from ._request import LimitedStart, StartRequest
from ._root import Root
from ._settings import Settings
from ._slots import QueueStore, parse_slot
from ._starter import InstanceEnding, start_singleton
from ._waiting import Pauses, utc_now

logger = logging.getLogger("durable_singleton.limited")

#: Polls for the end of a slot's instance that passed its slot on but is still ending.
FIRST_END_POLL_SECONDS = 0.05
MAX_END_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Admitted:
    """What a start with a limit came to: started as ``instance_id`` (a slot of its key),
    or waiting at ``position`` (1: next) in the key's queue. ``request_id`` names the
    request either way (its URL; the run's name in the job's status)."""

    request_id: str
    instance_id: Optional[str] = None
    position: Optional[int] = None
    #: The request's Idempotency-Key was first used by this request: its answer again,
    #: as the request is now.
    replayed: bool = False

    @property
    def started(self) -> bool:
        """Whether the request was started now."""
        return self.instance_id is not None


class QueueFull(NotStarted):
    """The key's queue holds ``bound`` requests already: nothing was queued."""

    def __init__(self, key: str, bound: int):
        super().__init__(key)
        self.key = key
        self.bound = bound


class LimitReached(NotStarted):
    """``onFull=reject``: every slot of the key is busy (or others wait); nothing was
    queued. ``instance_ids``: the key's busy slots; ``limit``: the key's limit."""

    def __init__(self, key: str, limit: int, instance_ids: Tuple[str, ...]):
        super().__init__(key)
        self.key = key
        self.limit = limit
        self.instance_ids = instance_ids


class KeyInUse(NotStarted):
    """The key's slots run another orchestrator (``orchestrator``): nothing was queued."""

    def __init__(self, key: str, orchestrator: str):
        super().__init__(key)
        self.key = key
        self.orchestrator = orchestrator


class RequestCancelled(NotStarted):
    """The request's Idempotency-Key was first used by a request since cancelled."""

    def __init__(self, key: str, request_id: str):
        super().__init__(key)
        self.key = key
        self.request_id = request_id


class KeyedStartInProgress(NotStarted):
    """The request's Idempotency-Key was first used by ``request_id``, given slot
    ``instance_id`` for its own start, which is not known to have landed (it may still be
    under way, or its admission's answer was lost before it was sent): nothing was started
    now. The sweep settles the slot: then the retry gets the first request's answer, or
    (it never started) the key is free again."""

    def __init__(self, key: str, request_id: str, instance_id: str):
        super().__init__(key)
        self.key = key
        self.request_id = request_id
        self.instance_id = instance_id


class SlotTaken(NotStarted):
    """The slot is no longer reserved for the request (the sweep gave it back)."""


class QueueOutcomeUnknown(OutcomeUnknown):
    """The write to the key's queue lost its answer: the request may be queued (or
    started), or for a ``cancel`` cancelled; ``request_id`` names it (its URL tells)."""

    def __init__(self, key: str, request_id: str, cancel: bool = False):
        super().__init__(key)
        self.key = key
        self.request_id = request_id
        self.cancel = cancel


async def start_limited(start: LimitedStart, durable: DurableClient, root: Root) -> Admitted:
    """Admit ``start`` through its key's queue: start it in a free slot, or queue it.

    Raises QueueFull or LimitReached (nothing was queued), QueueOutcomeUnknown (the
    queue's write lost its answer), NotStarted or OutcomeUnknown (its start in a slot
    failed: nothing started and it is not queued; or may have), LockUnavailable (storage
    failed: nothing was queued).
    """
    hub, key, keyed = durable.task_hub, start.key, start.keyed
    request_id = str(uuid.uuid4())
    now = _now()

    def admitting(queue: Optional[Queue]) -> "tuple[Optional[Queue], Any]":
        return rules.admit(
            queue,
            start.function_name,
            request_id,
            start.input,
            now,
            start.limit,
            start.bound,
            start.on_full is OnFull.REJECT,
            None if keyed is None else (keyed.key_digest, keyed.fingerprint),
        )

    try:
        admission, heads = await root.queues().change(hub, key, admitting)
    except DocumentWriteUnknown as error:
        raise QueueOutcomeUnknown(key, request_id) from error
    for number, head in heads:
        await _start_head(start.function_name, key, number, head, durable, root)
    if isinstance(admission, rules.Start):
        instance_id = await start_in_slot(
            start.function_name, key, admission.slot, request_id, start.input, durable, root
        )
        return Admitted(request_id, instance_id=instance_id)
    if isinstance(admission, rules.Queued):
        return Admitted(request_id, position=admission.position)
    if isinstance(admission, rules.Full):
        raise QueueFull(key, admission.bound)
    if isinstance(admission, rules.Replayed):
        if admission.cancelled:
            raise RequestCancelled(key, admission.request)
        held = None if admission.slot is None else slot_id(key, admission.slot)
        if admission.starting and held is not None:
            raise KeyedStartInProgress(key, admission.request, held)
        return Admitted(admission.request, held, admission.position, replayed=True)
    if isinstance(admission, rules.KeyMismatch):
        raise ProblemError(problems.limited_key_mismatch(key))
    if isinstance(admission, rules.OtherOrchestrator):
        raise KeyInUse(key, admission.orchestrator)
    assert isinstance(admission, rules.Busy)
    raise LimitReached(key, start.limit, tuple(slot_id(key, n) for n in admission.slots))


@dataclass(frozen=True)
class RequestState:
    """Where a request of a key's queue is: ``queued`` at ``position``, ``started`` as
    ``instance_id`` (``starting``: its own start there is not known to have landed), or
    ``cancelled``."""

    state: str
    position: Optional[int] = None
    instance_id: Optional[str] = None


def _state_of(queue: Optional[Queue], key: str, request_id: str) -> Optional[RequestState]:
    if queue is None:
        return None
    position = queue.position(request_id)
    if position is not None:
        return RequestState("queued", position=position)
    slot = queue.slot_of(request_id)
    if slot is not None:
        # Its own start, not known to have landed: its caller may have been told only that
        # the admission's answer was lost; the sweep settles it (or gives it up).
        state = "starting" if queue.starting(request_id) else "started"
        return RequestState(state, instance_id=slot_id(key, slot))
    if request_id in queue.cancelled:
        return RequestState("cancelled")
    return None


async def request_state(
    root: Root, task_hub: str, key: str, request_id: str
) -> Optional[RequestState]:
    """Where request ``request_id`` of ``key``'s queue is; None when the queue knows no
    such request."""
    return _state_of(await root.queues().read(task_hub, key), key, request_id)


async def cancel_request(
    root: Root, task_hub: str, key: str, request_id: str
) -> Optional[RequestState]:
    """Cancel a waiting request (it never runs): its state after, ``cancelled``, or
    ``started`` when it was too late; None when the queue knows no such request.

    Raises QueueOutcomeUnknown when the write lost its answer (it may be cancelled).
    """

    def cancelling(queue: Optional[Queue]) -> "tuple[Optional[Queue], Optional[RequestState]]":
        written, _ = rules.cancel(queue, request_id)
        return written, _state_of(written or queue, key, request_id)

    try:
        return await root.queues().change(task_hub, key, cancelling)
    except DocumentWriteUnknown as error:
        raise QueueOutcomeUnknown(key, request_id, cancel=True) from error


async def start_in_slot(
    function_name: str,
    key: str,
    number: int,
    request_id: str,
    input_: Any,
    durable: DurableClient,
    root: Root,
) -> str:
    """Start the run of ``request_id`` as slot ``number``'s instance, reserved for it;
    return the instance id. Waits (bounded) for an instance of the slot that passed it
    on to end first. The queue says afterwards whether it started (a start that did not
    happen gives the slot back, and a queued request its place at the head).

    Raises NotStarted (nothing started) or OutcomeUnknown (it may have started: the
    sweep settles the slot).
    """
    hub = durable.task_hub
    instance_id = slot_id(key, number)
    queues = root.queues()
    storage_timeout = root.settings.storage_timeout_seconds
    # The queue as read under the slot's lease: the start's confirmation writes on it.
    seen: "Optional[Tagged[Queue]]" = None

    async def still_reserved(held: HeldLock) -> None:
        nonlocal seen
        # Under the slot's lease, decided while the lease is certain: the sweep takes
        # this lock too before it gives a reservation back.
        await held.fence(storage_timeout * 2)
        seen = await queues.read_tagged(hub, key)
        queue = seen[0]
        if held.remaining() < MIN_FENCED_SECONDS:
            raise LockLost("the lease could not be proven for the slot's check")
        slot = queue.slots.get(number) if queue is not None else None
        if slot is None or slot.request != request_id:
            raise SlotTaken(instance_id)

    request = StartRequest(
        function_name,
        instance_id,
        input_,
        OnConflict.REJECT,
        Reuse.ALLOW_DUPLICATE,
        run_id=request_id,
        before_start=still_reserved,
    )
    wait = root.settings.next_run_wait_seconds
    polls = Pauses(FIRST_END_POLL_SECONDS, MAX_END_POLL_SECONDS, wait)
    try:
        while True:
            outcome = await start_singleton(request, durable, root)
            if outcome.started:
                break
            # The slot's last instance passed it on and is still ending: wait for it.
            if polls.expired():
                raise InstanceEnding(instance_id, wait)
            await polls.sleep()
    except SlotTaken:
        raise
    except NotStarted:
        await _give_back(queues, hub, key, number, request_id)
        raise
    await _confirm(queues, hub, key, number, request_id, seen)
    return instance_id


async def _start_head(
    function_name: str,
    key: str,
    number: int,
    head: rules.Waiting,
    durable: DurableClient,
    root: Root,
) -> None:
    """Start a queued request given a slot; a failure leaves it to the queue (given back
    to the head) or to the sweep (outcome unknown), and is only logged: the caller who
    moved it is not the one it belongs to."""
    try:
        await start_in_slot(function_name, key, number, head.request, head.input, durable, root)
    except (NotStarted, OutcomeUnknown) as error:
        logger.warning(
            "A queued request's start in slot %s failed (%s); it waits for the next chance.",
            number,
            type(error).__name__,
        )


async def _give_back(queues: QueueStore, hub: str, key: str, number: int, request: str) -> None:
    try:
        await queues.change(hub, key, lambda q: rules.not_started(q, number, request))
    except Exception as error:  # the sweep gives it back once its grace has passed
        logger.warning("A slot could not be given back (%s).", type(error).__name__)


async def _confirm(
    queues: QueueStore,
    hub: str,
    key: str,
    number: int,
    request: str,
    read: "Optional[Tagged[Queue]]" = None,
) -> None:
    """Mark the slot's start as landed, writing on ``read`` (the queue as read a moment
    ago, if it was) unless the queue changed since."""
    try:
        await queues.change(hub, key, lambda q: rules.started(q, number, request), read)
    except Exception as error:  # the sweep confirms it from the instance's status
        logger.warning("A slot's start could not be confirmed (%s).", type(error).__name__)


async def sweep_key(
    function_name: str, key: str, limit: int, durable: DurableClient, root: Root
) -> int:
    """Free the key's slots whose instances ended without taking (failed, terminated,
    purged) and start the queue's heads in the free slots; confirm starts the
    instances' statuses show. Returns how many heads it started.

    A slot is looked at under its lock, with its instance's status read under it: a run
    that began is done with its slot; a queued request that never began goes back to the
    head. A reservation younger than :func:`reservation_grace` is left to its starter.
    """
    hub = durable.task_hub
    queues = root.queues()
    queue = await queues.read(hub, key)
    if queue is None:
        return 0
    for number, slot in sorted(queue.slots.items()):
        status = await durable.status(slot_id(key, number))
        if status is not None and status.runtime_status in ACTIVE:
            if not slot.confirmed and shown_run(status.custom_status) == slot.request:
                await _confirm(queues, hub, key, number, slot.request)
            continue
        # A reservation is left to its starter for a while; a take is not (its instance
        # continues as new into the run at once, or has ended without it).
        if slot.reserved and not _older(slot.since, reservation_grace(root.settings)):
            continue
        await _vacate_under_lock(key, number, slot, durable, root)
    # Heads for the slots free now (the vacated ones' and any others').
    _, heads = await queues.change(hub, key, lambda q: _fill(q, limit))
    for number, head in heads:
        await _start_head(function_name, key, number, head, durable, root)
    return len(heads)


def slot_of(function_name: str, instance_id: str, root: Root) -> Optional[Tuple[str, int]]:
    """The key whose slot ``instance_id`` is, and the key's limit, when ``function_name``
    has a limit per key and the id is one of its slots; otherwise None."""
    limit, parsed = root.catalog.limit(function_name), parse_slot(instance_id)
    if limit is None or parsed is None or parsed[1] >= limit:
        return None
    key, number = parsed
    return (key, limit) if slot_id(key, number) == instance_id else None  # "k~01" is none


async def pass_on_terminated(
    function_name: str, slot: Tuple[str, int], instance_id: str, durable: DurableClient, root: Root
) -> None:
    """After a terminate the app sent to a slot's instance: once its status shows it
    ended (read for at most ``SINGLETON_NEXT_RUN_WAIT_SECONDS``), sweep the key, so the
    slot passes to the queue's head now rather than at the sweep timer's next tick. The
    sweep's own rules decide, under the slot's lock; what fails here is left to the
    timer, and only logged. ``slot``: the key and its limit (:func:`slot_of`)."""
    key, limit = slot
    polls = Pauses(
        FIRST_END_POLL_SECONDS, MAX_END_POLL_SECONDS, root.settings.next_run_wait_seconds
    )
    try:
        async for status in polls.looks(lambda: durable.status(instance_id)):
            if status is None or status.runtime_status not in ACTIVE:
                await sweep_key(function_name, key, limit, durable, root)
                return
    except (NotStarted, OutcomeUnknown) as error:
        logger.warning("A terminated slot was left to the sweep (%s).", type(error).__name__)


def reservation_grace(settings: Settings) -> datetime.timedelta:
    """How long the sweep leaves an unconfirmed reservation to its starter: the longest a
    starter takes from its reservation to the slot's lease (a status read, the lock wait,
    the lease request), and twice that. Correctness does not rest on it: the starter
    checks its reservation under the lease, and the sweep gives one back only under that
    lease; it only spares the sweep the starts in progress."""
    seconds = settings.durable_timeout_seconds + settings.lock_wait_seconds
    seconds += 2 * settings.storage_timeout_seconds
    return datetime.timedelta(seconds=2 * seconds)


def _fill(queue: Optional[Queue], limit: int) -> "tuple[Optional[Queue], Any]":
    written, heads = rules.fill(queue, limit, _now())
    return written, (written, heads)


async def _vacate_under_lock(
    key: str, number: int, slot: rules.Slot, durable: DurableClient, root: Root
) -> None:
    instance_id = slot_id(key, number)
    held = await root.locks().try_acquire(durable.task_hub, instance_id)
    if held is None:
        return  # a start of the slot is in progress: it is its starter's
    try:
        status = await durable.status(instance_id)
        if status is not None and status.runtime_status in ACTIVE:
            return
        began = _began(status, slot)
        now = _now()

        def vacating(queue: Optional[Queue]) -> "tuple[Optional[Queue], Any]":
            if held.remaining() < MIN_FENCED_SECONDS:
                raise LockLost("the lease could not be proven for the sweep's write")
            # Heads are given the free slots afterwards, with the lock let go.
            written, _ = rules.vacate(queue, number, slot.request, began, 0, now)
            return written, None

        await held.fence(root.settings.storage_timeout_seconds * 2)
        await root.queues().change(durable.task_hub, key, vacating)
    finally:
        await held.release()


def _began(status: Optional[InstanceStatus], slot: rules.Slot) -> bool:
    """Whether the ended instance of a slot began the run of the slot's request: its
    status shows that run. A purged instance's status cannot be read: a start known to
    have landed (confirmed), or a take, is taken to have begun, so that nothing runs
    twice; a reservation (a start never confirmed) did not create the instance."""
    if status is None:
        return not slot.reserved
    return shown_run(status.custom_status) == slot.request


def _older(since: str, grace: datetime.timedelta) -> bool:
    moment = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
    return utc_now() - moment > grace


def _now() -> str:
    return iso(utc_now())


#: The most queues one listing reads (about a page of blob names).
MAX_LISTED_QUEUES = 5000


async def listed_queues(root: Root, task_hub: str) -> List[Tuple[str, Dict[str, str]]]:
    """The task hub's key queues, each key with its blob metadata
    (:func:`durable_singleton._limit.queue_metadata`), from one listing bounded by the
    storage timeout (twice); none when there is no lock container yet."""
    container = root.container(root.settings.lock_container)
    prefix = rules.queue_blob_name(task_hub, "")
    found: List[Tuple[str, Dict[str, str]]] = []

    async def listing() -> None:
        async for blob in container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            found.append((blob.name[len(prefix) :], dict(blob.metadata or {})))
            if len(found) >= MAX_LISTED_QUEUES:
                return

    try:
        await storage_call(listing(), root.settings.storage_timeout_seconds * 2)
    except BlobMissing:
        return []
    return found
