"""A limit of N per key: the key's queue and its rules, as pure functions
(docs/design.md#a-limit-of-n-per-key-_limitpy-_limitedpy-_slotspy-_limit_sweeppy).

Each takes the document as read (None: none yet) and returns the document to write (None:
nothing to write) with its result."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple, Union

#: The limit's range per orchestrator.
MIN_LIMIT = 1
MAX_LIMIT = 100
#: A key's queue is the blob ``<task hub>`` and this, ``/<key>``: in the lock container,
#: apart from the lock blobs (task hub names hold no dot), so a listing finds the queues
#: alone.
QUEUE_FOLDER = ".queues"
#: Separates a key from its slot number in a slot's instance id.
SLOT_SEPARATOR = "~"
#: How many slotted and cancelled requests (and Idempotency-Keys) a queue remembers
#: (newest kept), so that a request's URL can still say what became of it.
MAX_HISTORY = 256


def queue_blob_name(task_hub: str, key: str) -> str:
    """The blob of ``key``'s queue in ``task_hub`` (lowercased, as lock blobs' hubs are)."""
    return f"{task_hub.lower()}{QUEUE_FOLDER}/{key}"


def queue_metadata(queue: "Queue") -> Dict[str, str]:
    """What a listing of the queues shows of one without reading it: its orchestrator,
    its busy slots, how many requests wait and since when the oldest does, and how many
    slots were reserved for starts not yet confirmed (the sweep's work)."""
    unconfirmed = sum(1 for slot in queue.slots.values() if not slot.confirmed)
    oldest = queue.waiting[0] if queue.waiting else None
    return {
        "orchestrator": queue.orchestrator,
        "slots": ",".join(str(number) for number in sorted(queue.slots)),
        "waiting": str(len(queue.waiting)),
        "unconfirmed": str(unconfirmed),
        "oldestrequest": oldest.request if oldest else "",
        "oldestqueuedat": oldest.queued_at if oldest else "",
    }


def slot_id(key: str, slot: int) -> str:
    """The instance id of ``key``'s slot ``slot``."""
    return f"{key}{SLOT_SEPARATOR}{slot}"


@dataclass(frozen=True)
class Waiting:
    """A request waiting for a slot: its id, its input, and when it was queued."""

    request: str
    input: Any
    queued_at: str


@dataclass(frozen=True)
class Slot:
    """A busy slot: the request it runs (or is about to start).

    ``queued``: the request waited in the queue (it was promised a run: a start of it that
    does not happen, or an instance that ends before it begins the run, puts it back at
    the head, so ``input`` is kept as long as it holds the slot); ``confirmed``: its
    instance is known to run it (its start landed, or its status showed the run);
    ``after``: the run the slot's instance took it at the end of (a retried take answers
    it again), unconfirmed until the sweep sees the instance run it.
    """

    request: str
    since: str
    queued: bool = False
    input: Any = None
    confirmed: bool = False
    after: Optional[str] = None

    @property
    def reserved(self) -> bool:
        """Whether a start (not a take) holds the slot and is not known to have landed: the
        slot's instance may not exist."""
        return not self.confirmed and self.after is None


@dataclass(frozen=True)
class Queue:
    """One key's queue document: the orchestrator the key's slots run, its busy slots,
    its waiting requests (oldest first), the latest requests given a slot (``started``,
    in the order they were given one) and cancelled, and the Idempotency-Keys of the
    latest requests;
    ``writes``: the ids of the latest writes (the store's, to tell whether a write whose
    answer was lost landed)."""

    orchestrator: str = ""
    slots: Dict[int, Slot] = field(default_factory=dict)
    waiting: Tuple[Waiting, ...] = ()
    started: Tuple[Tuple[str, int], ...] = ()
    cancelled: Tuple[str, ...] = ()
    #: Idempotency-Keys of the latest requests: (key digest, fingerprint, request).
    keys: Tuple[Tuple[str, str, str], ...] = ()
    writes: Tuple[str, ...] = ()

    def with_writes(self, writes: Tuple[str, ...]) -> "Queue":
        """This document with the ids ``writes`` as its latest writes' (the store's)."""
        return replace(self, writes=writes)

    def to_json(self) -> bytes:
        """The document as stored."""
        data = asdict(self)
        data["slots"] = {str(number): slot for number, slot in data["slots"].items()}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def of_json(cls, data: Union[bytes, str]) -> "Queue":
        """The document :meth:`to_json` wrote (ValueError or TypeError otherwise)."""
        raw = json.loads(data)
        return cls(
            orchestrator=str(raw["orchestrator"]),
            slots={int(number): Slot(**slot) for number, slot in raw["slots"].items()},
            waiting=tuple(Waiting(**entry) for entry in raw["waiting"]),
            started=tuple((request, int(slot)) for request, slot in raw["started"]),
            cancelled=tuple(raw["cancelled"]),
            keys=tuple((str(d), str(f), str(r)) for d, f, r in raw["keys"]),
            writes=tuple(raw["writes"]),
        )

    def free(self, limit: int) -> List[int]:
        """The slots below ``limit`` that no request holds, lowest first."""
        return [number for number in range(limit) if number not in self.slots]

    def position(self, request: str) -> Optional[int]:
        """Where ``request`` waits (1: next), None when it does not."""
        for index, entry in enumerate(self.waiting):
            if entry.request == request:
                return index + 1
        return None

    def starting(self, request: str) -> bool:
        """Whether ``request`` holds a slot for its own start (it never waited) that is not
        known to have landed."""
        held = self.slots.values()
        return any(s.request == request and not (s.queued or s.confirmed) for s in held)

    def slot_of(self, request: str) -> Optional[int]:
        """The slot ``request`` holds or was started in (latest known), None if neither."""
        for number, slot in self.slots.items():
            if slot.request == request:
                return number
        for started, number in reversed(self.started):
            if started == request:
                return number
        return None


@dataclass(frozen=True)
class Start:
    """Start the request in ``slot`` (its slot is reserved for it)."""

    slot: int


@dataclass(frozen=True)
class Queued:
    """The request waits at ``position`` (1: next)."""

    position: int


@dataclass(frozen=True)
class Full:
    """Nothing was queued: the queue holds ``bound`` requests already."""

    bound: int


@dataclass(frozen=True)
class Busy:
    """Nothing was queued (``onFull=reject``): every slot is busy or others wait."""

    slots: Tuple[int, ...]


@dataclass(frozen=True)
class OtherOrchestrator:
    """Nothing was queued: the key's slots run ``orchestrator`` (a key is one
    orchestrator's: its slots are instance ids of the task hub)."""

    orchestrator: str


@dataclass(frozen=True)
class Replayed:
    """The request's Idempotency-Key was first used by ``request``, which waits at
    ``position`` or holds (held) ``slot``, or was ``cancelled``: nothing changed.
    ``starting``: the slot is the request's own, its start not known to have landed."""

    request: str
    position: Optional[int] = None
    slot: Optional[int] = None
    cancelled: bool = False
    starting: bool = False


@dataclass(frozen=True)
class KeyMismatch:
    """The request's Idempotency-Key was first used for another request: nothing
    changed."""


Admission = Union[Start, Queued, Full, Busy, OtherOrchestrator, Replayed, KeyMismatch]

#: Heads of the queue moved into free slots, to be started by whoever wrote that.
Heads = Tuple[Tuple[int, Waiting], ...]


def admit(
    queue: Optional[Queue],
    orchestrator: str,
    request: str,
    input_: Any,
    now: str,
    limit: int,
    bound: int,
    reject_when_full: bool = False,
    keyed: Optional[Tuple[str, str]] = None,
) -> Tuple[Optional[Queue], Tuple[Admission, Heads]]:
    """Admit ``request`` at the queue's tail, then give the free slots to the heads of the
    queue: the request starts now (:class:`Start`, its slot reserved for it) when it
    reaches one, and waits (:class:`Queued`) otherwise. Nothing changes when it would wait
    and ``reject_when_full`` (:class:`Busy`), or when ``bound`` requests wait already
    (:class:`Full`). The heads given slots before it are the caller's to start too.

    ``keyed`` (the Idempotency-Key's digest and the request's fingerprint): a key first
    used by a request the queue still knows is answered with that request
    (:class:`Replayed`, or :class:`KeyMismatch` for another request); one whose request
    failed to start is free again."""
    if keyed is not None and queue is not None:
        earlier = _keyed_request(queue, keyed)
        if earlier is not None:
            return None, (earlier, ())
    if queue is not None and queue.orchestrator != orchestrator and (queue.slots or queue.waiting):
        return None, (OtherOrchestrator(queue.orchestrator), ())
    queue = replace(queue or Queue(), orchestrator=orchestrator)
    free = queue.free(limit)
    would_wait = len(queue.waiting) + 1 - len(free)
    if would_wait > 0 and reject_when_full:
        return None, (Busy(tuple(sorted(queue.slots))), ())
    if would_wait > bound:
        return None, (Full(bound), ())
    queue = replace(queue, waiting=(*queue.waiting, Waiting(request, input_, now)))
    queue, heads = _filled(queue, limit, now)
    if keyed is not None:
        kept = tuple(k for k in queue.keys if k[0] != keyed[0])
        queue = replace(queue, keys=(*kept, (keyed[0], keyed[1], request))[-MAX_HISTORY:])
    own = [number for number, head in heads if head.request == request]
    if not own:
        return queue, (Queued(queue.position(request) or 0), heads)
    # Its own start: a start that fails is its caller's failure, not a queued request's.
    queue = _with_slot(queue, own[0], Slot(request, now))
    return queue, (Start(own[0]), tuple(h for h in heads if h[1].request != request))


def _keyed_request(queue: Queue, keyed: Tuple[str, str]) -> Optional[Admission]:
    for digest, fingerprint, request in queue.keys:
        if digest != keyed[0]:
            continue
        if fingerprint != keyed[1]:
            return KeyMismatch()
        position, slot = queue.position(request), queue.slot_of(request)
        if position is not None or slot is not None or request in queue.cancelled:
            cancelled, starting = request in queue.cancelled, queue.starting(request)
            return Replayed(request, position, slot, cancelled, starting)
        return None  # its start failed: the key is free again
    return None


def fill(queue: Optional[Queue], limit: int, now: str) -> Tuple[Optional[Queue], Heads]:
    """Move the heads of the queue into the free slots; the caller starts them."""
    if queue is None:
        return None, ()
    filled, heads = _filled(queue, limit, now)
    return (filled if heads else None), heads


def started(queue: Optional[Queue], slot: int, request: str) -> Tuple[Optional[Queue], bool]:
    """The start of ``request`` in ``slot`` is known to have happened; False (nothing
    written) when the slot no longer holds it."""
    held = queue.slots.get(slot) if queue is not None else None
    if queue is None or held is None or held.request != request:
        return None, False
    if held.confirmed:
        return None, True
    # The input stays: an instance can end before it begins the run (terminated while
    # Pending), and the queue then owes the request its run, with its input.
    confirmed = replace(held, confirmed=True)
    return _with_slot(queue, slot, confirmed), True


def not_started(queue: Optional[Queue], slot: int, request: str) -> Tuple[Optional[Queue], bool]:
    """The start of ``request`` in ``slot`` is known not to have happened: the slot is
    free again, and a queued request is back at the head. False when the slot no longer
    holds it (nothing written)."""
    held = queue.slots.get(slot) if queue is not None else None
    if queue is None or held is None or held.request != request or held.confirmed:
        return None, False
    return _given_back(queue, slot, held), True


def take(
    queue: Optional[Queue], slot: int, run: str, now: str
) -> Tuple[Optional[Queue], Optional[Waiting]]:
    """Run ``run`` in ``slot`` has ended: the request the slot's instance runs next (it
    continues as new with it), or None (the slot is free; the instance ends).

    A retried take answers as the first did; a slot that holds another request (freed
    and given to another since) is not this instance's to pass on: None, nothing written.
    """
    held = queue.slots.get(slot) if queue is not None else None
    if queue is None or held is None:
        return None, None
    if held.after == run:  # taken already: the same answer again
        return None, Waiting(held.request, held.input, held.since)
    if held.request != run:
        return None, None
    if not queue.waiting:
        slots = {number: s for number, s in queue.slots.items() if number != slot}
        return replace(queue, slots=slots), None
    head, rest = queue.waiting[0], queue.waiting[1:]
    # Unconfirmed until the sweep sees the instance run it: an instance that ends before
    # it begins the run (failed, or terminated, after the take) leaves the key flagged.
    following = Slot(head.request, now, queued=True, input=head.input, after=run)
    queue = _with_slot(replace(queue, waiting=rest), slot, following)
    return _remember_slotted(queue, head.request, slot), head


def vacate(
    queue: Optional[Queue], slot: int, request: str, began: bool, limit: int, now: str
) -> Tuple[Optional[Queue], Heads]:
    """The sweep found ``slot``'s instance ended (or gone) while the slot holds
    ``request``: the slot is freed; a queued request that never ``began`` goes back to
    the head. Free slots then go to the heads (the caller starts them)."""
    held = queue.slots.get(slot) if queue is not None else None
    if queue is None or held is None or held.request != request:
        return None, ()
    if began:
        slots = {number: s for number, s in queue.slots.items() if number != slot}
        queue = replace(queue, slots=slots)
    else:
        queue = _given_back(queue, slot, held)
    return _filled(queue, limit, now)


@dataclass(frozen=True)
class Cancelled:
    """The request was removed from the queue (or had been): it never runs."""


@dataclass(frozen=True)
class AlreadyStarted:
    """Too late: the request holds (or held) ``slot``."""

    slot: int


@dataclass(frozen=True)
class Unknown:
    """The queue knows no such request (never queued here, or forgotten)."""


Cancellation = Union[Cancelled, AlreadyStarted, Unknown]


def cancel(queue: Optional[Queue], request: str) -> Tuple[Optional[Queue], Cancellation]:
    """Remove a waiting ``request`` from the queue."""
    if queue is None:
        return None, Unknown()
    if queue.position(request) is not None:
        waiting = tuple(entry for entry in queue.waiting if entry.request != request)
        cancelled = (*queue.cancelled, request)[-MAX_HISTORY:]
        return replace(queue, waiting=waiting, cancelled=cancelled), Cancelled()
    if request in queue.cancelled:
        return None, Cancelled()
    slot = queue.slot_of(request)
    return None, (Unknown() if slot is None else AlreadyStarted(slot))


def _filled(queue: Queue, limit: int, now: str) -> Tuple[Queue, Heads]:
    heads: List[Tuple[int, Waiting]] = []
    for number in queue.free(limit):
        if not queue.waiting:
            break
        head = queue.waiting[0]
        reserved = Slot(head.request, now, queued=True, input=head.input)
        queue = _with_slot(replace(queue, waiting=queue.waiting[1:]), number, reserved)
        queue = _remember_slotted(queue, head.request, number)
        heads.append((number, head))
    return queue, tuple(heads)


def _given_back(queue: Queue, slot: int, held: Slot) -> Queue:
    slots = {number: s for number, s in queue.slots.items() if number != slot}
    waiting, history = queue.waiting, queue.started
    if held.queued:
        waiting = (Waiting(held.request, held.input, held.since), *waiting)
    else:  # its caller was told it did not start: the request is gone
        history = tuple(entry for entry in history if entry[0] != held.request)
    return replace(queue, slots=slots, waiting=waiting, started=history)


def _with_slot(queue: Queue, number: int, slot: Slot) -> Queue:
    return replace(queue, slots={**queue.slots, number: slot})


def _remember_slotted(queue: Queue, request: str, slot: int) -> Queue:
    return replace(queue, started=(*queue.started, (request, slot))[-MAX_HISTORY:])
