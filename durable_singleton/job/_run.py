"""The background job SingletonOrchestrator runs: its input rules and its steps.

The orchestrator function is replayed by the Durable runtime, so :func:`run_job` is
deterministic: no I/O, no wall clock, no randomness; time comes from
``context.current_utc_datetime`` and all work happens in SingletonActivity.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, List, Optional

import azure.durable_functions as df

from .._catalog import InvalidInput
from .._in_orchestrator import (
    RUN_MEMBER,
    Signals,
    begin,
    end_run,
    run_member,
    stopping,
    wait_until_due,
)
from .._next_run import RunState, iso

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
_RUN = RUN_MEMBER
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
            _RUN: run_member(run),
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
    job = parse_job_input(context.get_input(), internal=True)
    signals = Signals(context, job.run or {})
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
    yield from signals.wait(timer, until=stopping)
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
    signals: Signals,
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
    context: df.DurableOrchestrationContext, job: JobInput, signals: Signals
) -> Generator[Any, Any, Any]:
    """Wait until the run is due (its input and due time may move meanwhile), then begin
    it as a new execution; end when a Stop ended it first."""
    progress = _Progress(context, job, signals)
    run = yield from wait_until_due(context, signals)
    if run is not None:
        return begin(context, signals, run)
    return (yield from _end(context, signals, progress, []))


def _finish(
    context: df.DurableOrchestrationContext,
    progress: "_Progress",
    signals: Signals,
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
    signals: Signals,
    progress: "_Progress",
    results: List[Any],
) -> Generator[Any, Any, Optional[Dict[str, Any]]]:
    """The run has ended: take the next run from the channel and continue as new with
    it, or return the job's output (also for an instance the app did not start, which
    has no channel)."""
    if (yield from end_run(context, signals)):
        return progress.output(results, signals.state.stopping)
    return None


def _continue(
    context: df.DurableOrchestrationContext,
    signals: Signals,
    next_input: Callable[[RunState], Dict[str, Any]],
) -> None:
    """The run goes on in a new execution, carrying what the signals have taken."""
    signals.settle()
    context.continue_as_new(next_input(signals.state))


class _Progress:
    """The custom status of one execution, kept in step with what it reports."""

    def __init__(
        self,
        context: df.DurableOrchestrationContext,
        job: JobInput,
        signals: Signals,
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
