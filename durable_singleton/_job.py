"""The background job SingletonOrchestrator runs: its input rules and its steps.

The orchestrator function is replayed by the Durable runtime, so :func:`run_job` is
deterministic: no I/O, no wall clock, no randomness; time comes from
``context.current_utc_datetime`` and all work happens in SingletonActivity.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, Generator, List, Optional

import azure.durable_functions as df
from azure.durable_functions.models.history import HistoryEventType

from ._catalog import InvalidInput

ACTIVITY = "SingletonActivity"
ITEM_STORE = "SingletonItemStore"
STOP_EVENT = "Stop"

#: repeatEverySeconds range: at least a second, at most a day between passes.
MIN_REPEAT_SECONDS = 1
MAX_REPEAT_SECONDS = 86400

#: The most items one execution processes. Every episode replays its execution's
#: history, so a pass of N items in one execution costs N^2; a larger job continues
#: as new every this many items, carrying a cursor, and each execution's history
#: stays short whatever N is.
ITEMS_PER_EXECUTION = 25

#: The most item results the output keeps (the first ones of the pass). The counts
#: are always exact; results beyond this are not kept, so that the state carried
#: from execution to execution stays small.
MAX_RESULTS = 100

_KEYS = ("items", "repeatEverySeconds", "maxPasses", "pass")
#: Set only by the orchestrator itself when it continues as new; callers may not.
_CONTINUATION = "continuation"


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

    def _document(self, pass_number: int, continuation: Optional[Continuation]) -> Dict[str, Any]:
        document: Dict[str, Any] = {
            "repeatEverySeconds": self.repeat_every_seconds,
            "pass": pass_number,
        }
        if continuation is None:
            document["items"] = self.items
        else:
            document[_CONTINUATION] = continuation.to_json()
        if self.max_passes is not None:
            document["maxPasses"] = self.max_passes
        return document

    def next_pass(self) -> Dict[str, Any]:
        """Return the input of the next pass: the same job, one pass further."""
        store = self.continuation
        restart = Continuation(store.store, store.total) if store else None
        return self._document(self.pass_number + 1, restart)

    def resume_at(self, continuation: Continuation) -> Dict[str, Any]:
        """Return the input of the next execution of this pass."""
        return self._document(self.pass_number, continuation)


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
    allowed = _KEYS + ((_CONTINUATION,) if internal else ())
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
    if max_passes is not None and repeat is None:
        raise InvalidJobInput("maxPasses needs repeatEverySeconds: a job without it runs once.")
    if max_passes is not None and pass_number > max_passes:
        raise InvalidJobInput("pass must not be greater than maxPasses.")
    carried = value.get(_CONTINUATION)
    continuation = Continuation(**carried) if isinstance(carried, dict) else None
    return JobInput(items, repeat, max_passes, pass_number, continuation)


def run_job(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """Run the job: each item through SingletonActivity, in order, then maybe again.

    Custom status shows progress as ``{"pass", "processed", "total", "nextRunAt",
    "stopping"}``. A ``Stop`` event ends the job at the next safe point: during a pass
    after the current item, while waiting between passes at once. A Stop that
    arrives together with the event after which the job would continue as new is
    never lost (the Python SDK drops events left unprocessed by continue-as-new): the
    job looks for it in the execution's history first, and stops instead.

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
    stop = context.wait_for_external_event(STOP_EVENT)
    store = job.continuation
    if store is None and len(job.items) > ITEMS_PER_EXECUTION:
        # Stage the items once; every later execution of the job loads only its share.
        staged = yield context.call_activity(
            ITEM_STORE,
            {
                "op": "stage",
                "instanceId": context.instance_id,
                "key": str(context.new_uuid()),
                "items": job.items,
            },
        )
        store = Continuation(staged["store"], len(job.items))
        if stop.is_completed or _stop_pending(context):
            progress = _Progress(context, job)
            progress.update(stopping=True)
            return (yield from _finish(context, progress, [], True, store))
        context.continue_as_new(job.resume_at(store))
        return None
    cursor = store.cursor if store else 0
    progress = _Progress(context, job, cursor)
    results: List[Any] = list(store.results) if store else []
    end = min(job.total, cursor + ITEMS_PER_EXECUTION)
    items = job.items[cursor:end]
    if store is not None and cursor < end and not stop.is_completed:
        items = yield context.call_activity(
            ITEM_STORE,
            {"op": "load", "store": store.store, "start": cursor, "count": end - cursor},
        )

    for offset, item in enumerate(items):
        if stop.is_completed:
            progress.update(stopping=True)
            break
        index = cursor + offset
        work = context.call_activity(ACTIVITY, {"item": item, "index": index})
        # Wait for the item or a Stop, whichever comes first: a Stop is shown at once,
        # but the item in flight still finishes before the job ends.
        if not stop.is_completed:
            yield context.task_any([work, stop])
        if stop.is_completed:
            progress.update(stopping=True)
        result = yield work
        if len(results) < MAX_RESULTS:
            results.append(result)
        progress.update(processed=index + 1)

    if end < job.total and not stop.is_completed:
        assert store is not None  # only a staged job has more than one execution a pass
        if not _stop_pending(context):
            context.continue_as_new(
                job.resume_at(Continuation(store.store, store.total, end, results))
            )
            return None
        # A Stop came in the same batch as the last item: end here, stopped.
        progress.update(stopping=True)
        return (yield from _finish(context, progress, results, True, store))
    if stop.is_completed or job.is_last_pass:
        return (yield from _finish(context, progress, results, stop.is_completed, store))

    fire_at = context.current_utc_datetime + datetime.timedelta(
        seconds=job.repeat_every_seconds or MIN_REPEAT_SECONDS
    )
    progress.update(next_run_at=fire_at)
    timer = context.create_timer(fire_at)
    yield context.task_any([timer, stop])
    if stop.is_completed or _stop_pending(context):
        if not timer.is_completed:
            # Cancel the timer so the finished instance leaves nothing pending.
            timer.cancel()
        progress.update(next_run_at=None, stopping=True)
        return (yield from _finish(context, progress, results, True, store))
    # A fresh execution per pass keeps the history short however long the job lives.
    context.continue_as_new(job.next_pass())
    return None


def _finish(
    context: df.DurableOrchestrationContext,
    progress: "_Progress",
    results: List[Any],
    stopped: bool,
    store: Optional[Continuation],
) -> Generator[Any, Any, Dict[str, Any]]:
    """End the job: delete its staged items, if any, and return its output."""
    if store is not None:
        yield context.call_activity(ITEM_STORE, {"op": "delete", "store": store.store})
    return progress.output(results, stopped)


def _stop_pending(context: df.DurableOrchestrationContext) -> bool:
    """Whether this execution's history holds a Stop not yet handed to the job.

    Called only where "no" means the execution ends now (it continues as new), so a
    "no" is never replayed; a "yes" stays "yes" in every later replay, since history
    only grows. So the job stays deterministic. Events that arrive in the same batch
    as the one that woke the job are in the history but not yet processed, and
    continue-as-new would drop them.
    """
    return any(
        event.event_type == HistoryEventType.EVENT_RAISED
        and getattr(event, "Name", None) == STOP_EVENT
        for event in context.histories
    )


class _Progress:
    """The custom status of one execution, kept in step with what it reports."""

    def __init__(self, context: df.DurableOrchestrationContext, job: JobInput, processed: int = 0):
        self._context = context
        self._status: Dict[str, Any] = {
            "pass": job.pass_number,
            "processed": processed,
            "total": job.total,
            "nextRunAt": None,
            "stopping": False,
        }
        context.set_custom_status(dict(self._status))

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
            self._status["nextRunAt"] = _iso(next_run_at) if next_run_at else None
        self._context.set_custom_status(dict(self._status))

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


def _iso(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


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
