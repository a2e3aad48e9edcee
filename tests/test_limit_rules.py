"""The rules of a limit of N per key (durable_singleton._limit) as pure functions: a
table of cases, and a machine that drives every operation in any order (arrivals,
starts that land or fail, runs that end, instances that fail or are terminated (also
between a take and the run taken), the sweep, the sweep timer (only a key its listing
flags), retried takes, cancels) and checks after each step that no more than N slots are
held, that queued requests get their slots in the order they were queued, and at the
end, once drained, that every request told ``queued`` or started ran exactly once
unless cancelled."""

from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from durable_singleton._limit import (
    AlreadyStarted,
    Busy,
    Cancelled,
    Full,
    OtherOrchestrator,
    Queue,
    Queued,
    Replayed,
    Start,
    Unknown,
    admit,
    cancel,
    fill,
    not_started,
    queue_metadata,
    slot_id,
    started,
    take,
    vacate,
)

NOW = "2026-12-03T18:00:00Z"


def test_a_slot_id_is_the_key_and_the_slot_number() -> None:
    assert slot_id("tenant-7", 0) == "tenant-7~0"


def test_requests_start_until_the_limit_then_wait_in_order() -> None:
    queue, (first, _) = admit(None, "Job", "a", 1, NOW, limit=2, bound=10)
    queue, (second, _) = admit(queue, "Job", "b", 2, NOW, limit=2, bound=10)
    queue, (third, _) = admit(queue, "Job", "c", 3, NOW, limit=2, bound=10)
    queue, (fourth, _) = admit(queue, "Job", "d", 4, NOW, limit=2, bound=10)
    assert (first, second, third, fourth) == (Start(0), Start(1), Queued(1), Queued(2))
    assert queue is not None and [w.request for w in queue.waiting] == ["c", "d"]


def test_past_the_bound_nothing_is_queued_and_reject_refuses_instead() -> None:
    queue, _ = admit(None, "Job", "a", None, NOW, limit=1, bound=1)
    queue, _ = admit(queue, "Job", "b", None, NOW, limit=1, bound=1)
    unchanged, (full, _) = admit(queue, "Job", "c", None, NOW, limit=1, bound=1)
    assert unchanged is None and full == Full(1)
    unchanged, (busy, _) = admit(
        queue, "Job", "c", None, NOW, limit=1, bound=5, reject_when_full=True
    )
    assert unchanged is None and busy == Busy((0,))


def test_a_run_that_ends_hands_its_slot_to_the_head_and_a_retry_gets_the_same() -> None:
    queue, _ = admit(None, "Job", "a", None, NOW, limit=1, bound=5)
    queue, _ = started(queue, 0, "a")
    queue, _ = admit(queue, "Job", "b", {"x": 1}, NOW, limit=1, bound=5)
    queue, following = take(queue, 0, "a", NOW)
    assert following is not None and (following.request, following.input) == ("b", {"x": 1})
    again, retried = take(queue, 0, "a", NOW)
    assert again is None and retried is not None and retried.request == "b"
    queue, nothing = take(queue, 0, "b", NOW)
    assert nothing is None and queue is not None and queue.slots == {}


def test_a_run_taken_at_a_runs_end_flags_its_key_until_it_is_seen_running() -> None:
    """With nobody else waiting, the listing must still find the key: the instance that
    took b may end before it begins it, and then only the sweep gives b its run."""
    queue, _ = admit(None, "Job", "a", None, NOW, limit=1, bound=5)
    queue, _ = started(queue, 0, "a")
    queue, _ = admit(queue, "Job", "b", None, NOW, limit=1, bound=5)
    queue, _ = take(queue, 0, "a", NOW)
    assert queue is not None
    assert queue_metadata(queue)["waiting"] == "0"
    assert queue_metadata(queue)["unconfirmed"] == "1"
    queue, known = started(queue, 0, "b")  # the sweep saw its instance run b
    assert known and queue is not None and queue_metadata(queue)["unconfirmed"] == "0"


def test_a_start_that_did_not_happen_puts_a_queued_request_back_at_the_head() -> None:
    queue, _ = admit(None, "Job", "a", None, NOW, limit=1, bound=5)
    queue, _ = admit(queue, "Job", "b", None, NOW, limit=1, bound=5)
    queue, _ = admit(queue, "Job", "c", None, NOW, limit=1, bound=5)
    queue, _ = not_started(queue, 0, "a")  # its own start: its caller hears it failed
    assert queue is not None and [w.request for w in queue.waiting] == ["b", "c"]
    queue, (admission, heads) = admit(queue, "Job", "d", None, NOW, limit=1, bound=5)
    assert admission == Queued(2) and [(n, h.request) for n, h in heads] == [(0, "b")]
    queue, _ = not_started(queue, 0, "b")
    assert queue is not None and [w.request for w in queue.waiting] == ["b", "c", "d"]


def test_a_waiting_request_can_be_cancelled_until_it_starts() -> None:
    queue, _ = admit(None, "Job", "a", None, NOW, limit=1, bound=5)
    queue, _ = admit(queue, "Job", "b", None, NOW, limit=1, bound=5)
    queue, answer = cancel(queue, "b")
    assert answer == Cancelled() and queue is not None and queue.waiting == ()
    assert cancel(queue, "b") == (None, Cancelled())  # a retried cancel
    assert cancel(queue, "a") == (None, AlreadyStarted(0))
    assert cancel(queue, "zzz") == (None, Unknown())


def test_a_key_is_one_orchestrators() -> None:
    queue, _ = admit(None, "Job", "a", None, NOW, limit=1, bound=5)
    unchanged, (other, _) = admit(queue, "Export", "b", None, NOW, limit=1, bound=5)
    assert unchanged is None and other == OtherOrchestrator("Job")


def test_the_document_reads_back_as_written() -> None:
    queue, _ = admit(None, "Job", "a", {"n": [1, 2]}, NOW, limit=2, bound=5)
    queue, _ = admit(queue, "Job", "b", None, NOW, limit=1, bound=5)
    assert queue is not None and Queue.of_json(queue.to_json()) == queue


class Instance:
    """A slot's instance as the model sees it: the request it runs, and whether it has
    begun running it (a run taken at the end of another is begun when the instance
    continues as new)."""

    def __init__(self, request: str) -> None:
        self.request = request
        self.active = True


class LimitMachine(RuleBasedStateMachine):
    LIMIT = 3
    BOUND = 6

    def __init__(self) -> None:
        super().__init__()
        self.queue: Optional[Queue] = None
        self.count = 0
        #: Starts to carry out: (slot, request, own).
        self.pending: List[Tuple[int, str, bool]] = []
        self.instances: Dict[int, Instance] = {}
        self.runs: Dict[str, int] = {}
        self.queued_order: List[str] = []
        self.slotted: List[str] = []
        self.told_queued: Set[str] = set()
        self.told_started: Set[str] = set()
        self.cancelled: Set[str] = set()
        self.failed_own: Set[str] = set()
        self.admitted: Set[str] = set()
        self.keyed: Dict[Tuple[str, str], str] = {}

    # -- helpers ---------------------------------------------------------------------

    def _write(self, written: Optional[Queue]) -> None:
        if written is not None:
            self.queue = written

    def _slot_heads(self, heads) -> None:
        for number, head in heads:
            self._slotted(head.request)
            self.pending.append((number, head.request, False))

    def _slotted(self, request: str) -> None:
        if request not in self.slotted:
            self.slotted.append(request)

    def _run(self, number: int, request: str) -> None:
        self.runs[request] = self.runs.get(request, 0) + 1
        self.instances[number] = Instance(request)

    # -- rules -----------------------------------------------------------------------

    @rule(reject=st.booleans(), keyed=st.booleans())
    def arrive(self, reject: bool, keyed: bool) -> None:
        self.count += 1
        request = f"r{self.count}"
        key = (f"key-{self.count}", "same") if keyed else None
        self._admit(request, reject, key)

    @precondition(lambda self: self.keyed)
    @rule(data=st.data())
    def a_caller_retries_with_its_key(self, data) -> None:
        key, first = data.draw(st.sampled_from(sorted(self.keyed.items())))
        self.count += 1
        written, (admission, heads) = admit(
            self.queue, "Job", f"r{self.count}", None, NOW, self.LIMIT, self.BOUND, False, key
        )
        if isinstance(admission, Replayed):
            assert written is None and heads == () and admission.request == first
            # "Starting" exactly while its own start has neither landed nor failed: a
            # retry is never told started for a start nobody has made.
            assert admission.starting == any(r == first and own for _, r, own in self.pending)
        else:  # only a key whose first request failed to start is free again
            assert first in self.failed_own or first not in self.admitted, (first, admission)
            self._record(f"r{self.count}", written, admission, heads, key)

    def _admit(self, request: str, reject: bool, key) -> None:
        written, (admission, heads) = admit(
            self.queue, "Job", request, self.count, NOW, self.LIMIT, self.BOUND, reject, key
        )
        self._record(request, written, admission, heads, key)

    def _record(self, request: str, written, admission, heads, key) -> None:
        if isinstance(admission, (Start, Queued)):
            self.admitted.add(request)
            if key is not None:
                self.keyed[key] = request
        self._write(written)
        if isinstance(admission, Start):
            self._slotted(request)
            self.pending.append((admission.slot, request, True))
        elif isinstance(admission, Queued):
            self.told_queued.add(request)
            self.queued_order.append(request)
        else:
            assert written is None and heads == ()
        self._slot_heads(heads)

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), lands=st.booleans())
    def carry_out_a_start(self, data, lands: bool) -> None:
        index = data.draw(st.integers(0, len(self.pending) - 1))
        number, request, own = self.pending[index]
        instance = self.instances.get(number)
        if instance is not None and instance.active:
            return  # the old instance is still ending: the starter waits for it
        del self.pending[index]
        if lands:
            self._run(number, request)
            written, known = started(self.queue, number, request)
            assert known
            self._write(written)
            if own:
                self.told_started.add(request)
        else:
            written, known = not_started(self.queue, number, request)
            assert known
            self._write(written)
            if own:
                self.failed_own.add(request)  # its caller is told nothing started
            self.the_sweep_fills_free_slots()  # the starter tries the heads once

    @rule()
    def the_sweep_fills_free_slots(self) -> None:
        written, heads = fill(self.queue, self.LIMIT, NOW)
        self._write(written)
        self._slot_heads(heads)

    @precondition(lambda self: any(i.active for i in self.instances.values()))
    @rule(data=st.data(), retry=st.booleans())
    def a_run_ends(self, data, retry: bool) -> None:
        active = sorted(n for n, i in self.instances.items() if i.active)
        number = data.draw(st.sampled_from(active))
        instance = self.instances[number]
        written, following = take(self.queue, number, instance.request, NOW)
        self._write(written)
        if retry:  # the activity's answer was lost and it ran again
            again, repeated = take(self.queue, number, instance.request, NOW)
            assert (
                again is None
                and repeated == following
                or (
                    repeated is not None
                    and following is not None
                    and repeated.request == following.request
                )
            )
        if following is None:
            instance.active = False  # it completes
        else:
            self._slotted(following.request)
            self._run(number, following.request)  # continued as new into it

    @precondition(lambda self: any(i.active for i in self.instances.values()))
    @rule(data=st.data())
    def a_run_ends_and_its_instance_fails_before_the_next(self, data) -> None:
        """The take lands, and the instance fails before it begins the run it took (its
        activity lost every answer): nobody sweeps the slot at once; the timer must."""
        active = sorted(n for n, i in self.instances.items() if i.active)
        number = data.draw(st.sampled_from(active))
        written, following = take(self.queue, number, self.instances[number].request, NOW)
        self._write(written)
        if following is not None:
            self._slotted(following.request)
        self.instances[number].active = False

    @rule()
    def the_sweep_timer_ticks(self) -> None:
        """SingletonLimitSweep: only a key whose blob metadata says requests wait or
        reservations are unconfirmed is swept (durable_singleton._limit_sweep); then each
        slot as sweep_key does: an active instance seen running its slot's request
        confirms it, an ended one is vacated under the slot's lock."""
        if self.queue is None:
            return
        flags = queue_metadata(self.queue)
        if flags["waiting"] == "0" and flags["unconfirmed"] == "0":
            return
        for number, held in sorted(self.queue.slots.items()):
            instance = self.instances.get(number)
            if instance is not None and instance.active:
                if not held.confirmed and instance.request == held.request:
                    written, _ = started(self.queue, number, held.request)
                    self._write(written)
            elif instance is not None:
                self._sweep(number)
        self.the_sweep_fills_free_slots()

    @precondition(lambda self: any(i.active for i in self.instances.values()))
    @rule(data=st.data())
    def an_instance_fails_or_is_terminated(self, data) -> None:
        active = sorted(n for n, i in self.instances.items() if i.active)
        number = data.draw(st.sampled_from(active))
        self.instances[number].active = False
        self._sweep(number)

    def _sweep(self, number: int) -> None:
        """The sweep, under the slot's lock, after the instance ended without a take."""
        held = self.queue.slots.get(number) if self.queue is not None else None
        if held is None or any(p[0] == number for p in self.pending):
            return
        began = self.instances[number].request == held.request
        written, heads = vacate(self.queue, number, held.request, began, self.LIMIT, NOW)
        self._write(written)
        self._slot_heads(heads)

    @precondition(lambda self: self.count > 0)
    @rule(data=st.data())
    def a_caller_cancels(self, data) -> None:
        request = f"r{data.draw(st.integers(1, self.count))}"
        written, answer = cancel(self.queue, request)
        self._write(written)
        if isinstance(answer, Cancelled):
            self.cancelled.add(request)
            assert self.runs.get(request, 0) == 0

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def never_more_than_the_limit(self) -> None:
        active = [n for n, i in self.instances.items() if i.active]
        assert len(active) <= self.LIMIT and all(n < self.LIMIT for n in active)
        if self.queue is not None:
            assert len(self.queue.slots) <= self.LIMIT

    @invariant()
    def nobody_runs_twice(self) -> None:
        assert all(count == 1 for count in self.runs.values())

    @invariant()
    def queued_requests_get_slots_in_order(self) -> None:
        order = {request: index for index, request in enumerate(self.queued_order)}
        slotted = [order[r] for r in self.slotted if r in order]
        assert slotted == sorted(slotted)
        # The document's own record of who was given a slot, in order, says the same.
        if self.queue is not None:
            recorded = list(dict.fromkeys(r for r, _ in self.queue.started if r in order))
            assert [order[r] for r in recorded] == sorted(order[r] for r in recorded)

    def teardown(self) -> None:
        """Drain: carry out every start, end every run, sweep every slot, until idle."""
        for _ in range(10 * (self.count + 1)):
            if self.pending:
                number, request, own = self.pending[0]
                instance = self.instances.get(number)
                if instance is not None and instance.active:
                    self._end(number)
                    continue
                self.pending.pop(0)
                self._run(number, request)
                written, _ = started(self.queue, number, request)
                self._write(written)
                if own:
                    self.told_started.add(request)
                continue
            active = [n for n, i in self.instances.items() if i.active]
            if active:
                self._end(active[0])
                continue
            if self.queue is not None and (self.queue.waiting or self.queue.slots):
                before = self.queue
                self.the_sweep_fills_free_slots()
                if self.queue is before and not self.pending:  # no slot free: the timer
                    self.the_sweep_timer_ticks()
                if self.queue is not before or self.pending:
                    continue
            break
        assert not self.pending and self.queue is not None or self.count == 0
        if self.queue is not None:
            assert self.queue.waiting == () and self.queue.slots == {}
        for request in self.told_queued - self.cancelled:
            assert self.runs.get(request) == 1, request
        for request in self.told_started:
            assert self.runs.get(request) == 1, request
        for request in self.cancelled | self.failed_own:
            assert request not in self.runs, request

    def _end(self, number: int) -> None:
        instance = self.instances[number]
        written, following = take(self.queue, number, instance.request, NOW)
        self._write(written)
        if following is None:
            instance.active = False
        else:
            self._slotted(following.request)
            self._run(number, following.request)


LimitMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_the_rules_keep_the_limit_the_order_and_every_request = LimitMachine.TestCase
