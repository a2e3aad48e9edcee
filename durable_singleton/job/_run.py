"""The background job SingletonOrchestrator runs: its input rules and its steps.

The orchestrator function is replayed by the Durable runtime, so :func:`run_job` is
deterministic: no I/O, no wall clock, no randomness; time comes from
``context.current_utc_datetime`` and all work happens in SingletonActivity.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, List, Optional

import azure.durable_functions as df
from azure.durable_functions.models.history import HistoryEventType

from .._catalog import InvalidInput
from .._next_run import NEXT_RUN_ACTIVITY, NEXT_RUN_RETRY, RunState, iso, parse_time, stops
from .._stop import STOP_EVENT

ACTIVITY = "SingletonActivity"
ITEM_STORE = "SingletonItemStore"

#: repeatEverySeconds range: at least a second, at most a day between passes.
MIN_REPEAT_SECONDS = 1
MAX_REPEAT_SECONDS = 86400

#: The most items one execution processes one at a time. Every episode replays its
#: execution's history, so a pass of N items in one execution costs N^2; a larger job
#: continues as new every this many items, carrying a cursor, and each execution's
#: history stays short whatever N is.
ITEMS_PER_EXECUTION = 25

#: parallelism range: how many items go through SingletonActivity at once.
MAX_PARALLELISM = 64
#: With parallelism P an execution processes up to this many times P items (at least
#: ITEMS_PER_EXECUTION): about this many episodes of P completions each, so replay per
#: item stays flat while the history stays bounded (two events per item, plus episodes).
WINDOWS_PER_EXECUTION = 8

#: The most item results the output keeps (the first ones of the pass). The counts
#: are always exact; results beyond this are not kept, so that the state carried
#: from execution to execution stays small.
MAX_RESULTS = 100

_KEYS = ("items", "repeatEverySeconds", "maxPasses", "pass", "parallelism")
#: Set only by the orchestrator itself when it continues as new; callers may not.
_CONTINUATION = "continuation"
#: Set by the starter and by the orchestrator: which request's input this run has, the
#: task hub of its next-run channel, and when it is due (durable_singleton._next_run).
_RUN = "run"
_INTERNAL = (_CONTINUATION, _RUN)


class InvalidJobInput(InvalidInput):
    """The orchestrator input breaks a rule; the message says which."""


@dataclass(frozen=True)
class Continuation:
    """Where a large pass stands, carried from one execution to the next.

    The items of a job larger than :data:`ITEMS_PER_EXECUTION` are staged once in the
    app's storage (SingletonItemStore) under ``store``, so no execution's input holds
    them all: each execution loads only the items it processes.
    """

    store: str
    total: int
    cursor: int = 0
    results: List[Any] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        """The member the next execution's input carries (read back by
        ``Continuation(**member)``)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class JobInput:
    """A validated orchestrator input.

    ``pass_number`` counts the passes of a repeating job; the orchestrator sets it
    when it continues as new, so each pass is a fresh execution with a short history.
    ``continuation`` is set when a large job continues within or across passes.
    """

    items: List[Any]
    repeat_every_seconds: Optional[int] = None
    max_passes: Optional[int] = None
    pass_number: int = 1
    continuation: Optional[Continuation] = None
    run: Optional[Dict[str, Any]] = None
    parallelism: int = 1

    @property
    def items_per_execution(self) -> int:
        """How many items one execution of this job processes at most."""
        return max(ITEMS_PER_EXECUTION, WINDOWS_PER_EXECUTION * self.parallelism)

    @property
    def is_last_pass(self) -> bool:
        """Whether the job ends after the current pass."""
        if self.repeat_every_seconds is None:
            return True
        return self.max_passes is not None and self.pass_number >= self.max_passes

    @property
    def total(self) -> int:
        """How many items one pass has."""
        return self.continuation.total if self.continuation else len(self.items)

    def _document(
        self, pass_number: int, continuation: Optional[Continuation], run: RunState
    ) -> Dict[str, Any]:
        document: Dict[str, Any] = {
            "repeatEverySeconds": self.repeat_every_seconds,
            "pass": pass_number,
            _RUN: _run_member(run),
        }
        if continuation is None:
            document["items"] = self.items
        else:
            document[_CONTINUATION] = continuation.to_json()
        if self.max_passes is not None:
            document["maxPasses"] = self.max_passes
        if self.parallelism != 1:
            document["parallelism"] = self.parallelism
        return document

    def next_pass(self, run: RunState) -> Dict[str, Any]:
        """Return the input of the next pass: the same job, one pass further."""
        store = self.continuation
        restart = Continuation(store.store, store.total) if store else None
        return self._document(self.pass_number + 1, restart, run)

    def resume_at(self, continuation: Continuation, run: RunState) -> Dict[str, Any]:
        """Return the input of the next execution of this pass."""
        return self._document(self.pass_number, continuation, run)


def parse_job_input(value: Any, internal: bool = False) -> JobInput:
    """Check an orchestrator input and return it as a :class:`JobInput`.

    Parameters
    ----------
    value : Any
        The decoded JSON input; None (no input) means a job with no items.
    internal : bool
        The input comes from the orchestrator's own continue-as-new, which may carry
        a ``continuation``; a caller's input may not.

    Returns
    -------
    JobInput
        The input with defaults filled in.

    Raises
    ------
    InvalidJobInput
        When the input is not an object, holds an unknown member, or a member has the
        wrong type or is out of range.
    """
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidJobInput(
            'The orchestrator input must be a JSON object such as {"items": [...]}, '
            f"not {_json_type(value)}."
        )
    allowed = _KEYS + (_INTERNAL if internal else ())
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise InvalidJobInput(
            f"Unknown member(s) in the orchestrator input: {', '.join(unknown)}. "
            f"Allowed: {', '.join(_KEYS)}."
        )
    items = value.get("items", [])
    if not isinstance(items, list):
        raise InvalidJobInput(f"items must be a JSON array, not {_json_type(items)}.")
    repeat = _whole_number(value, "repeatEverySeconds", MIN_REPEAT_SECONDS, MAX_REPEAT_SECONDS)
    max_passes = _whole_number(value, "maxPasses", 1, None)
    pass_number = _whole_number(value, "pass", 1, None) or 1
    parallelism = _whole_number(value, "parallelism", 1, MAX_PARALLELISM) or 1
    if max_passes is not None and repeat is None:
        raise InvalidJobInput("maxPasses needs repeatEverySeconds: a job without it runs once.")
    if max_passes is not None and pass_number > max_passes:
        raise InvalidJobInput("pass must not be greater than maxPasses.")
    carried = value.get(_CONTINUATION)
    continuation = Continuation(**carried) if isinstance(carried, dict) else None
    run = value.get(_RUN)
    return JobInput(
        items,
        repeat,
        max_passes,
        pass_number,
        continuation,
        run if isinstance(run, dict) else None,
        parallelism,
    )


def run_job(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """Run the job: each item through SingletonActivity, in order, then maybe again.

    Custom status shows progress as ``{"pass", "processed", "total", "nextRunAt",
    "stopping", "run", "dueAt"}`` (the last two: durable_singleton._next_run). A
    ``Stop`` event ends the job at the next safe point: during a pass after the current
    item, while waiting between passes (or for a debounced run's due time) at once.
    When the run ends, the job takes its next run from the id's next-run channel
    (SingletonNextRun) and begins it as a new execution under the same id. Stop events
    that arrive together with the one after which an execution ends are never lost
    (the Python SDK drops events left unprocessed by continue-as-new): the job looks for
    them in the execution's history first, and carries one meant for the run it begins.

    Parameters
    ----------
    context : DurableOrchestrationContext
        The orchestration context the Durable runtime replays.

    Returns
    -------
    dict
        ``{"processed", "total", "results", "pass", "passesCompleted", "stopped"}``;
        nothing when the job continues as new. ``results`` holds the results of the
        first :data:`MAX_RESULTS` items of the pass.
    """
    raw = context.get_input()
    job = parse_job_input(raw, internal=True)
    signals = _Signals(context, job, raw)
    if signals.state.waiting:
        return (yield from _debounce(context, job, signals))
    store = job.continuation
    if store is None and len(job.items) > job.items_per_execution:
        # Stage the items once; every later execution of the job loads only its share.
        progress = _Progress(context, job, signals)
        staged = yield from signals.result(
            context.call_activity(
                ITEM_STORE,
                {
                    "op": "stage",
                    "instanceId": context.instance_id,
                    "key": str(context.new_uuid()),
                    "items": job.items,
                },
            )
        )
        store = Continuation(staged["store"], len(job.items))
        if signals.state.stopping or signals.stop_pending():
            progress.update(stopping=True)
            return (yield from _finish(context, progress, signals, [], store))
        return _continue(context, signals, lambda run: job.resume_at(store, run))
    cursor = store.cursor if store else 0
    progress = _Progress(context, job, signals, cursor)
    results: List[Any] = list(store.results) if store else []
    end = min(job.total, cursor + job.items_per_execution)
    items = job.items[cursor:end]
    if store is not None and cursor < end and not signals.state.stopping:
        items = yield from signals.result(
            context.call_activity(
                ITEM_STORE,
                {"op": "load", "store": store.store, "start": cursor, "count": end - cursor},
            )
        )

    finished = yield from _process(context, signals, progress, job.parallelism, cursor, items)
    results.extend(finished[: max(0, MAX_RESULTS - len(results))])

    if end < job.total and not signals.state.stopping:
        assert store is not None  # only a staged job has more than one execution a pass
        if not signals.stop_pending():
            done = Continuation(store.store, store.total, end, results)
            return _continue(context, signals, lambda run: job.resume_at(done, run))
        # A Stop came in the same batch as the last item: end here, stopped.
        progress.update(stopping=True)
        return (yield from _finish(context, progress, signals, results, store))
    if signals.state.stopping or job.is_last_pass:
        return (yield from _finish(context, progress, signals, results, store))

    fire_at = context.current_utc_datetime + datetime.timedelta(
        seconds=job.repeat_every_seconds or MIN_REPEAT_SECONDS
    )
    progress.update(next_run_at=fire_at)
    timer = context.create_timer(fire_at)
    yield from signals.wait(timer, until=_stopping)
    if signals.state.stopping or signals.stop_pending():
        if not timer.is_completed:
            # Cancel the timer so the finished instance leaves nothing pending.
            timer.cancel()
        progress.update(next_run_at=None, stopping=True)
        return (yield from _finish(context, progress, signals, results, store))
    # A fresh execution per pass keeps the history short however long the job lives.
    return _continue(context, signals, job.next_pass)


def _process(
    context: df.DurableOrchestrationContext,
    signals: "_Signals",
    progress: "_Progress",
    parallelism: int,
    cursor: int,
    items: List[Any],
) -> Generator[Any, Any, List[Any]]:
    """Send ``items`` (the pass's items from ``cursor``) through SingletonActivity, up
    to ``parallelism`` at a time (fan-out/fan-in), and return their results in item
    order: those of the items that started, a prefix unless a Stop came.

    Each wait also takes a Stop or a next run: a Stop is shown at once; no item starts
    after it, and the items in flight finish before the job ends.
    """
    results: Dict[int, Any] = {}
    in_flight: List[Any] = []  # [index, task] pairs, oldest first
    started = 0
    while started < len(items) or in_flight:
        while not signals.state.stopping and started < len(items) and len(in_flight) < parallelism:
            index = cursor + started
            task = context.call_activity(ACTIVITY, {"item": items[started], "index": index})
            in_flight.append([index, task])
            started += 1
        if not in_flight:
            break  # stopped before the rest started
        yield from signals.wait_any([task for _, task in in_flight])
        for entry in [e for e in in_flight if e[1].is_completed]:
            index, task = entry
            results[index] = yield task  # a failed item fails the orchestration, as it raises
            in_flight.remove(entry)
        progress.update(processed=cursor + len(results))
    return [results[index] for index in sorted(results)]


def _debounce(
    context: df.DurableOrchestrationContext, job: JobInput, signals: "_Signals"
) -> Generator[Any, Any, Any]:
    """Wait until the run is due, then look in the channel: requests meanwhile may have
    replaced its input and moved its due time (wait again), or a Stop dropped it (end);
    otherwise begin it as a new execution."""
    progress = _Progress(context, job, signals)
    due = signals.state.due_at
    while True:
        assert due is not None
        timer = context.create_timer(parse_time(due))
        yield from signals.wait(timer, until=_stopping)
        if signals.state.stopping:
            if not timer.is_completed:
                timer.cancel()
            progress.update(stopping=True)
            return (yield from _end(context, signals, progress, []))
        decision = yield from signals.next_run({"op": "begin"})
        if "wait" in decision:
            due = decision["wait"]
            signals.moved(due)
            continue
        if "begin" in decision:
            return _begin(context, signals, decision["begin"])
        signals.dropped()  # a Stop dropped the run before it began
        return (yield from _end(context, signals, progress, []))


def _finish(
    context: df.DurableOrchestrationContext,
    progress: "_Progress",
    signals: "_Signals",
    results: List[Any],
    store: Optional[Continuation],
) -> Generator[Any, Any, Optional[Dict[str, Any]]]:
    """End the run: delete its staged items, if any; then begin the next run, if the
    channel has one, or return the job's output."""
    if store is not None:
        yield from signals.result(
            context.call_activity(ITEM_STORE, {"op": "delete", "store": store.store})
        )
    return (yield from _end(context, signals, progress, results))


def _end(
    context: df.DurableOrchestrationContext,
    signals: "_Signals",
    progress: "_Progress",
    results: List[Any],
) -> Generator[Any, Any, Optional[Dict[str, Any]]]:
    """The run has ended: take the next run from the channel and continue as new with
    it, or return the job's output (also for an instance the app did not start, which
    has no channel)."""
    following = None
    if signals.state.hub is not None:
        following = yield from signals.next_run({"op": "take", "run": signals.state.id})
    if following is None:
        signals.settle()
        return progress.output(results, signals.state.stopping)
    _begin(context, signals, following)
    return None


def _begin(
    context: df.DurableOrchestrationContext, signals: "_Signals", run: Dict[str, Any]
) -> None:
    """Begin run ``{"request", "input"}`` as a new execution, stopping at once if a
    Stop meant for it has arrived already."""
    signals.settle()
    member: Dict[str, Any] = {"id": run["request"], "hub": signals.state.hub}
    if signals.stops_for(run["request"]):
        member["stopping"] = True
    given = run["input"]
    # Not the app's (it validates): the run then fails clearly on its input.
    context.continue_as_new({**given, _RUN: member} if isinstance(given, dict) else given)


def _continue(
    context: df.DurableOrchestrationContext,
    signals: "_Signals",
    next_input: Callable[[RunState], Dict[str, Any]],
) -> None:
    """The run goes on in a new execution, carrying what the signals have taken."""
    signals.settle()
    context.continue_as_new(next_input(signals.state))


def _run_member(run: RunState) -> Dict[str, Any]:
    """The ``run`` member carried to the next execution of the same run."""
    member: Dict[str, Any] = {"id": run.id}
    if run.hub is not None:
        member["hub"] = run.hub
    return member


def _stopping(state: RunState) -> bool:
    return state.stopping


class _Signals:
    """The job's Stop events, taken as they arrive, and its calls to its channel.

    A wait for Stop is part of every task the job waits on, so the SDK hands each
    event to one of them in history order (an event with no open wait is deferred
    by the SDK and handed to every later wait of its name). The events the job has
    not taken when an execution ends are in its history; :meth:`settle` applies them.
    """

    def __init__(self, context: df.DurableOrchestrationContext, job: JobInput, raw: Any):
        self._context = context
        member = job.run or {}
        self.state = RunState(
            member.get("id") or str(context.new_uuid()),
            member.get("hub"),
            member.get("dueAt"),
            member.get("stopping") is True,
        )
        self._stop = context.wait_for_external_event(STOP_EVENT)
        self._taken = 0
        #: Called after each change, so the custom status shows it.
        self.changed: Callable[[], None] = lambda: None

    def wait(
        self, task: Any, until: Callable[[RunState], bool] = lambda _: False
    ) -> Generator[Any, Any, None]:
        """Yield until ``task`` completes or ``until`` holds, taking events meanwhile."""
        yield from self.wait_any([task], until)

    def wait_any(
        self, tasks: List[Any], until: Callable[[RunState], bool] = lambda _: False
    ) -> Generator[Any, Any, None]:
        """Yield until one of ``tasks`` completes or ``until`` holds, taking events."""
        while not any(task.is_completed for task in tasks) and not until(self.state):
            yield self._context.task_any([*tasks, self._stop])
            self._take()

    def result(self, task: Any) -> Generator[Any, Any, Any]:
        """Wait for ``task`` as :meth:`wait` does; return its result (or raise)."""
        yield from self.wait(task)
        return (yield task)

    def next_run(self, request: Dict[str, Any]) -> Generator[Any, Any, Any]:
        """Send ``request`` to SingletonNextRun for this instance's channel; return its
        answer."""
        request = {**request, "hub": self.state.hub, "instanceId": self._context.instance_id}
        task = self._context.call_activity_with_retry(NEXT_RUN_ACTIVITY, NEXT_RUN_RETRY, request)
        return (yield from self.result(task))

    def _take(self) -> None:
        if self._stop.is_completed:
            self.state = self.state.with_stop(self._stop.result)
            self._stop = self._context.wait_for_external_event(STOP_EVENT)
            self._taken += 1
            self.changed()

    def _stop_events(self) -> List[Any]:
        """The data of every Stop event in this execution's history, in order."""
        return [
            _decoded_input(event)
            for event in self._context.histories
            if event.event_type == HistoryEventType.EVENT_RAISED
            and getattr(event, "Name", None) == STOP_EVENT
        ]

    def _folded(self) -> RunState:
        state = self.state
        for data in self._stop_events()[self._taken :]:
            state = state.with_stop(data)
        return state

    def stop_pending(self) -> bool:
        """Whether an untaken event stops this run.

        Called only where "no" means the execution ends now (it continues as new), so
        a "no" is never replayed; a "yes" stays "yes" in every later replay, since
        history only grows. So the job stays deterministic.
        """
        return self._folded().stopping and not self.state.stopping

    def stops_for(self, run: str) -> bool:
        """Whether a Stop in this execution's history is meant for run ``run`` (the
        one it begins): only right before the execution ends, as :meth:`settle`."""
        return any(stops(data, run) for data in self._stop_events())

    def settle(self) -> None:
        """Apply the untaken events: only right before the execution ends, so no
        replay ever sees the history beyond this point."""
        self.state = self._folded()
        self._taken = len(self._stop_events())
        self.changed()

    def dropped(self) -> None:
        """The channel says a Stop dropped the waiting run (its event may not be here
        yet): the run is stopped before it began."""
        self.state = dataclasses.replace(self.state, stopping=True)
        self.changed()

    def moved(self, due: str) -> None:
        """The waiting run's due time moved to ``due``."""
        self.state = dataclasses.replace(self.state, due_at=due)
        self.changed()


def _decoded_input(event: Any) -> Any:
    raw = getattr(event, "Input", None)
    return json.loads(raw) if isinstance(raw, str) else raw


class _Progress:
    """The custom status of one execution, kept in step with what it reports."""

    def __init__(
        self,
        context: df.DurableOrchestrationContext,
        job: JobInput,
        signals: _Signals,
        processed: int = 0,
    ):
        self._context = context
        self._signals = signals
        self._status: Dict[str, Any] = {
            "pass": job.pass_number,
            "processed": processed,
            "total": job.total,
            "nextRunAt": None,
            "stopping": False,
        }
        signals.changed = self._report
        self._report()

    def update(
        self,
        processed: Optional[int] = None,
        stopping: Optional[bool] = None,
        next_run_at: Any = ...,
    ) -> None:
        """Change the fields given (``next_run_at=None`` clears it) and report them."""
        if processed is not None:
            self._status["processed"] = processed
        if stopping is not None:
            self._status["stopping"] = stopping
        if next_run_at is not ...:
            self._status["nextRunAt"] = iso(next_run_at) if next_run_at else None
        self._report()

    def _report(self) -> None:
        state = self._signals.state
        if state.stopping:
            self._status["stopping"] = True
        self._context.set_custom_status({**self._status, **state.status()})

    def output(self, results: List[Any], stopped: bool) -> Dict[str, Any]:
        """The job's output at its end, from the progress reported so far."""
        processed, total = self._status["processed"], self._status["total"]
        current = self._status["pass"]
        return {
            "processed": processed,
            "total": total,
            "results": results,
            "pass": current,
            "passesCompleted": current if processed == total else current - 1,
            "stopped": stopped,
        }


def _whole_number(
    value: Dict[str, Any], name: str, low: int, high: Optional[int]
) -> Optional[int]:
    number = value.get(name)
    if number is None:
        return None
    # bool is an int in Python, but true is not a number of seconds.
    if not isinstance(number, int) or isinstance(number, bool):
        raise InvalidJobInput(f"{name} must be a whole number, not {_json_type(number)}.")
    if number < low or (high is not None and number > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise InvalidJobInput(f"{name} must be {bound}; got {number}.")
    return number


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
