"""Traces and metrics: what the app decided, how long it waited, what failed.

Written against ``opentelemetry-api`` only: without an SDK configured every call is a no-op
(docs/operate.md says how Azure sends them to Application Insights). Attributes hold ids,
names and decisions only: never a URL (the management URLs carry the system key), a
connection string or an input."""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Any, Iterator, List, Mapping, Optional

from opentelemetry import metrics, trace

_SCOPE = "durable_singleton"

#: Span names, one per step of a request.
REQUEST_SPANS = {
    "http": "HttpStartSingle",
    "timer": "TimerStartSingle",
    "instance": "SingletonInstance",
    "list": "SingletonList",
    "page": "SingletonsPage",
    "retention": "SingletonRetention",
    "limit-sweep": "SingletonLimitSweep",
    "limited": "HttpStartLimited",
    "limited-request": "LimitedRequest",
}

_tracer = trace.get_tracer(_SCOPE)
_meter = metrics.get_meter(_SCOPE)

#: Every answer, by decision (started, rejected-active, ... or the problem kind).
decisions = _meter.create_counter(
    "singleton.decisions", unit="{request}", description="Start requests by decision"
)
#: How long a request (a start, a terminate) waited for an id's lock held by another caller.
lock_wait = _meter.create_histogram(
    "singleton.lock.wait", unit="ms", description="Time spent waiting for a busy start lock"
)
#: Failures of the services the app depends on, by dependency and kind.
dependency_failures = _meter.create_counter(
    "singleton.dependency.failures",
    unit="{failure}",
    description="Storage and Durable API failures",
)

#: Instances found stuck (Pending too long) and described in an answer.
stuck_instances = _meter.create_counter(
    "singleton.stuck_instances",
    unit="{instance}",
    description="Answers that described an instance stuck in Pending",
)

#: The Pending times of the stuck instances the current request described; a fresh
#: list per request (a context variable: each invocation runs in its own context).
_stuck_noted: contextvars.ContextVar[List[float]] = contextvars.ContextVar("stuck_noted")
#: What the retention timer removed, by kind (instance, staged_blob, lock_blob).
retention_removed = _meter.create_counter(
    "singleton.retention.removed",
    unit="{item}",
    description="Instances purged and blobs deleted by the retention timer",
)


@contextlib.contextmanager
def step(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A child span for one step (a status read, a lock attempt, a start)."""
    with _tracer.start_as_current_span(name, attributes=_clean(attributes)) as span:
        yield span


@contextlib.contextmanager
def request(
    trigger: str,
    instance_id: str,
    function_name: str,
    method: Optional[str] = None,
    route: Optional[str] = None,
) -> Iterator[trace.Span]:
    """The span of one request or timer tick; an HTTP request's names its ``method`` and
    ``route`` template (never its URL: that holds the key), which is what makes
    Application Insights read it as an HTTP request with a result code."""
    attributes = {"singleton.instance_id": instance_id, "singleton.function_name": function_name}
    if method is not None and route is not None:
        attributes["http.request.method"] = method
        attributes["http.route"] = route
    _stuck_noted.set([])
    with _tracer.start_as_current_span(
        REQUEST_SPANS[trigger], kind=trace.SpanKind.SERVER, attributes=attributes
    ) as span:
        yield span


def record_decision(
    span: trace.Span, trigger: str, decision: str, status: int, problem: Optional[str]
) -> None:
    """Put the request's outcome on its span and count it."""
    span.set_attribute("singleton.decision", decision)
    span.set_attribute("http.response.status_code", status)
    if problem:
        span.set_attribute("singleton.problem_type", problem)
        if status >= 500:
            span.set_status(trace.Status(trace.StatusCode.ERROR, problem))
    decisions.add(1, {"decision": decision, "trigger": trigger})
    noted = _stuck_noted.get([])
    if noted:
        span.set_attribute("singleton.stuck", True)
        span.set_attribute("singleton.pending_seconds", int(max(noted)))
        stuck_instances.add(len(noted), {"decision": decision, "trigger": trigger})


def record_removed(kind: str) -> None:
    """Count one thing the retention timer removed."""
    retention_removed.add(1, {"kind": kind})


def note_stuck(pending_seconds: float) -> None:
    """The request's answer describes an instance stuck Pending for ``pending_seconds``."""
    noted = _stuck_noted.get(None)
    if noted is not None:
        noted.append(pending_seconds)


def stuck_note() -> str:
    """The log line's words about the stuck instances the request described, if any:
    `` stuck=true pending_s=N`` (the longest), or ""."""
    noted = _stuck_noted.get([])
    return f" stuck=true pending_s={int(max(noted))}" if noted else ""


def record_failure(dependency: str, kind: str) -> None:
    """Count one failure of ``dependency`` (storage, durable) of ``kind``."""
    dependency_failures.add(1, {"dependency": dependency, "kind": kind})
    trace.get_current_span().add_event(
        "dependency.failure", {"dependency": dependency, "kind": kind}
    )


class LockWait:
    """Measures the time a request waits on a busy lock, reported once."""

    def __init__(self) -> None:
        """Not waiting yet."""
        self._began: Optional[float] = None

    def begin(self) -> None:
        """The lock was found taken; the wait starts now (once)."""
        if self._began is None:
            self._began = time.monotonic()
            trace.get_current_span().add_event("lock.wait.begin")

    def end(self, outcome: str) -> None:
        """The wait is over (the lock was taken, or the answer came without it)."""
        if self._began is not None:
            waited_ms = (time.monotonic() - self._began) * 1000
            lock_wait.record(waited_ms, {"outcome": outcome})
            trace.get_current_span().add_event(
                "lock.wait.end", {"outcome": outcome, "waited_ms": waited_ms}
            )
            self._began = None


def _clean(attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    return {f"singleton.{k}": v for k, v in attributes.items() if v is not None}
