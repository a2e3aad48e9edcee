"""Every HTTP answer the app gives, built here and only here.

Successes from a start's :class:`~durable_singleton._starter.Outcome`; failures from the
one table :data:`FAILURES`, which maps each exception the request path can raise to
its problem+json answer (RFC 9457, constructors in :mod:`durable_singleton._problems`).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type

import azure.functions as func

from . import _problems as problems
from . import _telemetry as telemetry
from ._durable import (
    DurableFailure,
    DurableUnavailable,
    InstanceStatus,
    StartOutcomeUnknown,
    StopOutcomeUnknown,
)
from ._errors import SingletonError
from ._handover import NextRunOutcomeUnknown
from ._idempotency import REPLAYED_HEADER
from ._limited import (
    Admitted,
    KeyedStartInProgress,
    KeyInUse,
    LimitReached,
    QueueFull,
    QueueOutcomeUnknown,
    RequestCancelled,
    RequestState,
    SlotTaken,
)
from ._links import Links
from ._lock import LockLost, LockUnavailable
from ._policy import FINISHED, Action, Reuse
from ._problems import Problem, ProblemError
from ._settings import ConfigurationError
from ._starter import (
    InstanceEnding,
    InstanceVanished,
    LockBusy,
    Outcome,
    ReplaceTimedOut,
)

logger = logging.getLogger("durable_singleton._answers")

JSON = "application/json"

#: Retry-After (seconds) for the 503 answers, and for polling a started instance.
RETRY_AFTER_UNAVAILABLE = 5
RETRY_AFTER_LOCK_BUSY = 2
RETRY_AFTER_STARTED = 10
#: Retry-After (seconds) when a key's queue is full.
RETRY_AFTER_QUEUE_FULL = 30

#: Members of a status the 409, 200 and status answers repeat for the caller.
_STATUS_MEMBERS = ("instanceId", "name", "runtimeStatus", "createdTime", "lastUpdatedTime")


def _members(status: InstanceStatus, instance_id: str) -> Dict[str, Any]:
    """The status members every answer about an instance repeats, and whether it is
    stuck (:func:`stuck_members`)."""
    document = status.to_json()
    members = {key: document[key] for key in _STATUS_MEMBERS if key in document}
    members["instanceId"] = instance_id
    members.update(stuck_members(status))
    return members


def stuck_members(status: InstanceStatus) -> Dict[str, Any]:
    """``stuck``, and ``pendingSeconds`` while it is Pending; a stuck instance is noted
    for the request's log line, span and metric."""
    pending = status.pending_seconds
    members: Dict[str, Any] = {"stuck": status.stuck}
    if pending is not None:
        members["pendingSeconds"] = int(pending)
        if status.stuck:
            telemetry.note_stuck(pending)
    return members


def describe(status: InstanceStatus, instance_id: str, links: Links) -> Dict[str, Any]:
    """An existing instance as the answers show it: its status members and URLs."""
    return {**_members(status, instance_id), **links(instance_id)}


def json_response(
    status_code: int, body: Mapping[str, Any], headers: Optional[Mapping[str, str]] = None
) -> func.HttpResponse:
    """A JSON answer."""
    return func.HttpResponse(
        body=json.dumps(body),
        status_code=status_code,
        headers={"Content-Type": JSON, **(headers or {})},
    )


class ProblemResponse(func.HttpResponse):
    """A problem+json answer that remembers its problem's kind (for the span and the
    metrics, without reading its body back)."""

    def __init__(self, problem: Problem) -> None:
        """The answer for ``problem``."""
        super().__init__(
            body=json.dumps(problem.body()),
            status_code=problem.status,
            headers={"Content-Type": problems.MEDIA_TYPE, **problem.headers},
        )
        self.kind = problem.kind


def problem_response(problem: Problem) -> func.HttpResponse:
    """A problem+json answer."""
    return ProblemResponse(problem)


def problem_kind_of(response: func.HttpResponse) -> Optional[str]:
    """The problem kind of a problem+json answer this module built, None for others."""
    return response.kind if isinstance(response, ProblemResponse) else None


def accepted(
    instance_id: str, links: Links, members: Optional[Mapping[str, Any]] = None
) -> func.HttpResponse:
    """202: the instance was started, took a next run, or was asked to stop; where to
    follow it, and ``members`` that say which."""
    urls = links(instance_id)
    return json_response(
        202,
        {**urls, **(members or {})},
        {"Location": urls["statusQueryGetUri"], "Retry-After": str(RETRY_AFTER_STARTED)},
    )


def stop_requested(instance_id: str, links: Links, dropped: Optional[str]) -> func.HttpResponse:
    """202: the instance was asked to stop; ``dropped`` names the request whose next
    run (or waiting run) the stop drops."""
    members: Dict[str, Any] = {"outcome": "stopRequested"}
    if dropped is not None:
        members["droppedRequestId"] = dropped
    return accepted(instance_id, links, members)


def _outcome_members(outcome: Outcome) -> Dict[str, Any]:
    """The members that say what a start request came to (docs/http-api.md)."""
    members: Dict[str, Any] = {"outcome": outcome.kind}
    if outcome.request_id is not None:
        members["requestId"] = outcome.request_id
    if outcome.due_at is not None:
        members["dueAt"] = outcome.due_at
    if outcome.dropped is not None:
        members["droppedRequestId"] = outcome.dropped
    if outcome.replaced is not None:
        members["replacedRequestId"] = outcome.replaced
    return members


def for_outcome(
    outcome: Outcome, instance_id: str, links: Links, reuse: Reuse
) -> func.HttpResponse:
    """The answer to a start that ended as ``outcome``."""
    if outcome.started:
        response = accepted(instance_id, links, _outcome_members(outcome))
        if outcome.replayed:
            response.headers[REPLAYED_HEADER] = "true"
        return response
    assert outcome.status is not None  # only a start has no instance to describe
    instance = describe(outcome.status, instance_id, links)
    if outcome.action is Action.BUFFER:
        return accepted(instance_id, links, {**instance, **_outcome_members(outcome)})
    if outcome.action is Action.USE_EXISTING:
        body = {**instance, **_outcome_members(outcome)}
        return json_response(200, body, {"Location": instance["statusQueryGetUri"]})
    if outcome.action is Action.REJECT_FINISHED:
        refused = problems.instance_finished(instance, reuse.value)
    else:
        refused = problems.instance_active(instance)
    return problem_response(_naming_dropped(refused, outcome.dropped))


def _naming_dropped(problem: Problem, dropped: Optional[str]) -> Problem:
    """``problem``, naming the request whose next run a replace dropped before the start
    failed (``droppedRequestId``), when one did."""
    if dropped is None:
        return problem
    return problem.with_members({"droppedRequestId": dropped})


def for_admitted(admitted: Admitted, links: Links, request_url: str) -> func.HttpResponse:
    """The answer to a start with a limit: 202 started (follow the instance) or queued
    (follow the request's URL, ``requestUri``)."""
    members: Dict[str, Any] = {"requestId": admitted.request_id, "requestUri": request_url}
    if admitted.instance_id is not None:
        response = accepted(admitted.instance_id, links, {"outcome": "started", **members})
    else:
        members.update(outcome="queued", position=admitted.position)
        response = json_response(
            202,
            members,
            {"Location": request_url, "Retry-After": str(RETRY_AFTER_STARTED)},
        )
    if admitted.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


def queued_request(
    state: RequestState, key: str, request_id: str, links: Links
) -> func.HttpResponse:
    """200: where a request of a key's queue is: ``queued`` (with its position),
    ``started`` (with its instance), or ``cancelled``."""
    body: Dict[str, Any] = {"requestId": request_id, "key": key, "state": state.state}
    if state.position is not None:
        body["position"] = state.position
    if state.instance_id is not None:
        body.update(links(state.instance_id))
        body["instanceId"] = state.instance_id
    return json_response(200, body)


def instance_status(status: InstanceStatus, instance_id: str) -> func.HttpResponse:
    """200: an instance's status as the app describes it; its output once finished."""
    document = status.to_json()
    body = _members(status, instance_id)
    body["customStatus"] = document.get("customStatus")
    if status.runtime_status in FINISHED:
        body["output"] = document.get("output")
    return json_response(200, body)


#: The app's HTTP contract, kept beside this module and served as it is.
OPENAPI_DOCUMENT = Path(__file__).with_name("openapi.yaml")


def openapi_document(route_prefix: str = "singletons", limits: bool = True) -> func.HttpResponse:
    """200: the OpenAPI document (read per request: it is small, and never stale), its
    operator paths (written under ``/singletons``) under ``route_prefix``; without the
    paths of starts with a limit when ``limits`` is False (the app serves none)."""
    text = OPENAPI_DOCUMENT.read_text(encoding="utf-8")
    if route_prefix != "singletons":
        text = re.sub(r"(?m)^  /singletons(?=[/:])", f"  /{route_prefix}", text)
    if not limits:
        # Each path is a block from its "  /" line to the next one at that depth.
        text = re.sub(r"(?ms)^  /limits/.*?(?=^  /(?!limits/))", "", text)
    return func.HttpResponse(
        body=text.encode("utf-8"),
        status_code=200,
        headers={"Content-Type": "application/yaml"},
    )


# -- failures -------------------------------------------------------------------------

_Rule = Tuple[Type[BaseException], Callable[[Any, Optional[Links]], Problem], str]


def _replace_timeout(error: ReplaceTimedOut, links: Optional[Links]) -> Problem:
    instance = describe(error.status, error.instance_id, _required(links))
    constructor = (
        problems.stop_timeout
        if error.action is Action.STOP_THEN_START
        else problems.termination_timeout
    )
    return constructor(instance, error.waited_seconds)


def _outcome_unknown(error: StartOutcomeUnknown, links: Optional[Links]) -> Problem:
    return problems.start_outcome_unknown(
        _required(links)(error.instance_id), RETRY_AFTER_UNAVAILABLE
    )


def _stop_unknown(error: StopOutcomeUnknown, links: Optional[Links]) -> Problem:
    return problems.stop_outcome_unknown(
        _required(links)(error.instance_id), RETRY_AFTER_UNAVAILABLE
    )


def _next_run_unknown(error: NextRunOutcomeUnknown, links: Optional[Links]) -> Problem:
    return problems.next_run_outcome_unknown(
        _required(links)(error.instance_id), RETRY_AFTER_UNAVAILABLE, error.members
    )


def _limit_reached(error: LimitReached, links: Optional[Links]) -> Problem:
    urls = _required(links)
    instances = [
        {"instanceId": i, "statusQueryGetUri": urls(i)["statusQueryGetUri"]}
        for i in error.instance_ids
    ]
    return problems.limit_reached(error.key, error.limit, instances)


def _required(links: Optional[Links]) -> Links:
    assert links is not None, "raised only after the links were made"
    return links


#: Every failure the request path raises, its answer, and the dependency it blames
#: ("" when none). The first matching row wins; anything else is an internal error.
FAILURES: List[_Rule] = [
    (ProblemError, lambda e, _: e.problem, ""),
    (ConfigurationError, lambda e, _: problems.problem("misconfigured", str(e)), ""),
    (ReplaceTimedOut, _replace_timeout, ""),
    (LockBusy, lambda e, _: problems.lock_busy(RETRY_AFTER_LOCK_BUSY), ""),
    (InstanceVanished, lambda e, _: problems.start_refused(e.instance_id), ""),
    (StartOutcomeUnknown, _outcome_unknown, "durable"),
    (StopOutcomeUnknown, _stop_unknown, "durable"),
    (NextRunOutcomeUnknown, _next_run_unknown, "durable"),
    (QueueFull, lambda e, _: problems.queue_full(e.key, e.bound, RETRY_AFTER_QUEUE_FULL), ""),
    (LimitReached, _limit_reached, ""),
    (KeyInUse, lambda e, _: problems.key_in_use(e.key, e.orchestrator), ""),
    (RequestCancelled, lambda e, _: problems.request_cancelled(e.key, e.request_id), ""),
    (
        KeyedStartInProgress,
        lambda e, _: problems.limited_key_in_progress(
            e.key, e.request_id, e.instance_id, RETRY_AFTER_UNAVAILABLE
        ),
        "",
    ),
    (
        QueueOutcomeUnknown,
        lambda e, _: problems.queue_outcome_unknown(
            e.key, e.request_id, RETRY_AFTER_UNAVAILABLE, e.cancel
        ),
        "storage",
    ),
    (SlotTaken, lambda e, _: problems.lock_lost(RETRY_AFTER_UNAVAILABLE), "storage"),
    (
        InstanceEnding,
        lambda e, _: problems.instance_ending(e.waited_seconds, RETRY_AFTER_LOCK_BUSY),
        "",
    ),
    (
        DurableUnavailable,
        lambda e, _: problems.durable_unavailable(
            RETRY_AFTER_UNAVAILABLE, e.sent, e.stage, e.may_have_acted
        ),
        "durable",
    ),
    (DurableFailure, lambda e, _: problems.durable_error(e.stage), "durable"),
    (
        LockUnavailable,
        lambda e, _: problems.storage_unavailable(RETRY_AFTER_UNAVAILABLE),
        "storage",
    ),
    (LockLost, lambda e, _: problems.lock_lost(RETRY_AFTER_UNAVAILABLE), "storage"),
]


def for_failure(error: BaseException, links: Optional[Links]) -> Problem:
    """The problem that answers ``error``; a dependency's failure is also logged and
    counted (``singleton.dependency.failures``) against the dependency it blames."""
    for kind, answer, dependency in FAILURES:
        if isinstance(error, kind):
            dropped = error.dropped_request_id if isinstance(error, SingletonError) else None
            problem = _naming_dropped(answer(error, links), dropped)
            if dependency:
                logger.warning("%s failure: %s", dependency, _describe(error))
                telemetry.record_failure(dependency, problem.kind)
            return problem
    # The last line of defence: never a traceback to the caller.
    logger.error("Request failed unexpectedly: %s", type(error).__name__)
    return problems.internal_error()


def _describe(error: BaseException) -> str:
    # The class and the app's own message only: library messages can hold URLs.
    own = isinstance(error, (LockUnavailable, LockLost, DurableFailure))
    return f"{type(error).__name__}{f' ({error})' if own and str(error) else ''}"
