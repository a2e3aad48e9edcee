"""The background job SingletonOrchestrator runs: its input rules and its steps.

The orchestrator function is replayed by the Durable runtime, so :func:`run_job` is
deterministic: no I/O, no wall clock, no randomness; time comes from
``context.current_utc_datetime`` and all work happens in SingletonActivity.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Dict, Generator, List, Optional

import azure.durable_functions as df

ACTIVITY = "SingletonActivity"
STOP_EVENT = "Stop"

#: repeatEverySeconds range: at least a second, at most a day between passes.
MIN_REPEAT_SECONDS = 1
MAX_REPEAT_SECONDS = 86400

_KEYS = ("items", "repeatEverySeconds", "maxPasses", "pass")


class InvalidJobInput(ValueError):
    """The orchestrator input breaks a rule; the message says which."""


@dataclass(frozen=True)
class JobInput:
    """A validated orchestrator input.

    ``pass_number`` counts the passes of a repeating job; the orchestrator sets it
    when it continues as new, so each pass is a fresh execution with a short history.
    """

    items: List[Any]
    repeat_every_seconds: Optional[int] = None
    max_passes: Optional[int] = None
    pass_number: int = 1

    @property
    def is_last_pass(self) -> bool:
        """Whether the job ends after the current pass."""
        if self.repeat_every_seconds is None:
            return True
        return self.max_passes is not None and self.pass_number >= self.max_passes

    def next_pass(self) -> Dict[str, Any]:
        """Return the input of the next pass: the same job, one pass further."""
        document: Dict[str, Any] = {"items": self.items,
                                    "repeatEverySeconds": self.repeat_every_seconds,
                                    "pass": self.pass_number + 1}
        if self.max_passes is not None:
            document["maxPasses"] = self.max_passes
        return document


def parse_job_input(value: Any) -> JobInput:
    """Check an orchestrator input and return it as a :class:`JobInput`.

    Parameters
    ----------
    value : Any
        The decoded JSON input; None (no input) means a job with no items.

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
            f"not {_json_type(value)}.")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise InvalidJobInput(
            f"Unknown member(s) in the orchestrator input: {', '.join(unknown)}. "
            f"Allowed: {', '.join(_KEYS)}.")
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
    return JobInput(items, repeat, max_passes, pass_number)


def run_job(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """Run the job: each item through SingletonActivity, in order, then maybe again.

    Custom status shows progress as ``{"pass", "processed", "total", "nextRunAt",
    "stopping"}``. A ``Stop`` event ends the job at the next safe point: during a pass
    after the current item, while waiting between passes at once.

    Parameters
    ----------
    context : DurableOrchestrationContext
        The orchestration context the Durable runtime replays.

    Returns
    -------
    dict
        ``{"processed", "total", "results", "pass", "passesCompleted", "stopped"}``;
        nothing when the job continues as new for its next pass.
    """
    job = parse_job_input(context.get_input())
    stop = context.wait_for_external_event(STOP_EVENT)
    progress = _Progress(context, job)
    results: List[Any] = []

    for index, item in enumerate(job.items):
        if stop.is_completed:
            progress.update(stopping=True)
            break
        work = context.call_activity(ACTIVITY, {"item": item, "index": index})
        # Wait for the item or a Stop, whichever comes first: a Stop is shown at once,
        # but the item in flight still finishes before the job ends.
        if not stop.is_completed:
            yield context.task_any([work, stop])
        if stop.is_completed:
            progress.update(stopping=True)
        results.append((yield work))
        progress.update(processed=index + 1)

    if stop.is_completed or job.is_last_pass:
        return progress.output(results, stopped=stop.is_completed)

    fire_at = context.current_utc_datetime + datetime.timedelta(seconds=job.repeat_every_seconds)
    progress.update(next_run_at=fire_at)
    timer = context.create_timer(fire_at)
    yield context.task_any([timer, stop])
    if stop.is_completed:
        # Cancel the timer so the finished instance leaves nothing pending.
        timer.cancel()
        progress.update(next_run_at=None, stopping=True)
        return progress.output(results, stopped=True)
    # A fresh execution per pass keeps the history short however long the job lives.
    context.continue_as_new(job.next_pass())
    return None


class _Progress:
    """The custom status of one execution, kept in step with what it reports."""

    def __init__(self, context: df.DurableOrchestrationContext, job: JobInput):
        self._context = context
        self._status: Dict[str, Any] = {"pass": job.pass_number, "processed": 0,
                                        "total": len(job.items), "nextRunAt": None,
                                        "stopping": False}
        context.set_custom_status(dict(self._status))

    def update(self, processed: Optional[int] = None, stopping: Optional[bool] = None,
               next_run_at: Any = ...) -> None:
        if processed is not None:
            self._status["processed"] = processed
        if stopping is not None:
            self._status["stopping"] = stopping
        if next_run_at is not ...:
            self._status["nextRunAt"] = _iso(next_run_at) if next_run_at else None
        self._context.set_custom_status(dict(self._status))

    def output(self, results: List[Any], stopped: bool) -> Dict[str, Any]:
        processed, total = self._status["processed"], self._status["total"]
        current = self._status["pass"]
        return {"processed": processed, "total": total, "results": results, "pass": current,
                "passesCompleted": current if processed == total else current - 1,
                "stopped": stopped}


def _whole_number(value: Dict[str, Any], name: str, low: int,
                  high: Optional[int]) -> Optional[int]:
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
