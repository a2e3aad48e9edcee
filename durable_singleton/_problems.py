"""RFC 9457 problem details: every non-2xx answer of the app's HTTP functions.

One constructor per kind of problem whose answer has more than a detail (:func:`problem`
makes the others). The ``type`` of each is
``urn:singleton-starter:problem:<kind>``; docs/http-api.md lists the kinds (:data:`KINDS`).
Details are the app's own sentences: never a traceback, never a library's exception text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from ._errors import NotStarted

TYPE_PREFIX = "urn:singleton-starter:problem:"
MEDIA_TYPE = "application/problem+json"

#: Every kind of problem the app answers, with its HTTP status and title.
KINDS: Dict[str, Tuple[int, str]] = {
    "invalid-instance-id": (400, "Invalid instance id"),
    "invalid-query-parameter": (400, "Invalid query parameter"),
    "conflicting-parameters": (400, "Conflicting request parameters"),
    "stop-not-supported": (400, "Orchestrator does not take a graceful Stop"),
    "next-run-not-supported": (400, "Orchestrator does not take next runs"),
    "no-limit": (400, "Orchestrator has no limit per key"),
    "invalid-key": (400, "Invalid key"),
    "invalid-body": (400, "Request body is not JSON"),
    "invalid-input": (400, "Invalid orchestrator input"),
    "invalid-idempotency-key": (400, "Invalid Idempotency-Key"),
    "unknown-orchestrator": (404, "No such orchestrator"),
    "instance-not-found": (404, "No such instance"),
    "request-not-found": (404, "No such request"),
    "instance-active": (409, "Instance already active"),
    "instance-finished": (409, "Instance id may not be reused"),
    "termination-timeout": (409, "Existing instance did not stop in time"),
    "stop-timeout": (409, "Existing instance did not stop in time"),
    "instance-not-running": (409, "Instance already ended"),
    "limit-reached": (409, "The key's limit is reached"),
    "key-in-use": (409, "The key belongs to another orchestrator"),
    "request-cancelled": (409, "The request was cancelled"),
    "request-started": (409, "The request has started"),
    "request-starting": (409, "The request is starting"),
    "idempotency-key-in-progress": (409, "Request with this Idempotency-Key in progress"),
    "idempotency-key-superseded": (409, "Idempotency-Key no longer current"),
    "body-too-large": (413, "Request body too large"),
    "idempotency-key-mismatch": (422, "Idempotency-Key used for another request"),
    "queue-full": (429, "The key's queue is full"),
    "misconfigured": (500, "App misconfigured"),
    "internal-error": (500, "Internal error"),
    "durable-error": (502, "Durable Functions API error"),
    "instance-ending": (503, "The instance is ending and takes no next run"),
    "lock-busy": (503, "The id's start lock is busy"),
    "storage-unavailable": (503, "Lock storage unavailable"),
    "lock-lost": (503, "Start lock lost"),
    "durable-unavailable": (503, "Durable Functions API unavailable"),
    "start-outcome-unknown": (503, "Start outcome unknown"),
    "stop-outcome-unknown": (503, "Stop outcome unknown"),
    "next-run-outcome-unknown": (503, "Next run outcome unknown"),
    "queue-outcome-unknown": (503, "The request may be queued"),
}


@dataclass(frozen=True)
class Problem:
    """One problem: its kind, HTTP status, words for people, and members for programs."""

    kind: str
    status: int
    title: str
    detail: str
    members: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> Dict[str, Any]:
        """Return the problem+json document as a dict."""
        document: Dict[str, Any] = {
            "type": TYPE_PREFIX + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        document.update(self.members)
        return document

    def with_members(self, members: Mapping[str, Any]) -> "Problem":
        """This problem with ``members`` added to its own."""
        return dataclasses.replace(self, members={**self.members, **members})


class ProblemError(NotStarted):
    """Raised anywhere in a request to answer with ``problem`` and stop."""

    def __init__(self, problem: Problem):
        super().__init__(problem.detail)
        self.problem = problem


def problem(
    kind: str,
    detail: str,
    members: Optional[Mapping[str, Any]] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> Problem:
    """A problem of ``kind``, with the status and title :data:`KINDS` gives it; the
    kinds whose answer is only a ``detail`` have no constructor of their own."""
    status, title = KINDS[kind]
    return Problem(kind, status, title, detail, members or {}, headers or {})


def refusal(kind: str, detail: str) -> ProblemError:
    """The error that answers with the problem ``kind`` of :func:`problem` (bad input: the
    request stops here, nothing sent)."""
    return ProblemError(problem(kind, detail))


def _retry(seconds: int) -> Dict[str, str]:
    return {"Retry-After": str(seconds)}


def unknown_orchestrator(name: str, orchestrators: Iterable[str]) -> Problem:
    """404: ``name`` is not an orchestrator function of this app."""
    known = sorted(orchestrators)
    detail = f"'{printable(name)}' is not an orchestrator function of this app. "
    detail += f"Orchestrators: {', '.join(known) or 'none'}."
    return problem("unknown-orchestrator", detail, {"orchestrators": known})


def invalid_query(name: str, allowed: Iterable[str]) -> Problem:
    """400: query parameter ``name`` holds a value outside ``allowed``."""
    choices = list(allowed)
    detail = f"Query parameter {name} must be given once, as one of: {', '.join(choices)} "
    detail += "(case-sensitive)."
    return problem("invalid-query-parameter", detail, {"parameter": name, "allowed": choices})


def invalid_number_query(name: str, low: int, high: int) -> Problem:
    """400: query parameter ``name`` is not a whole number from ``low`` to ``high``."""
    detail = f"Query parameter {name} must be given once, as a whole number from {low} to {high}."
    members = {"parameter": name, "minimum": low, "maximum": high}
    return problem("invalid-query-parameter", detail, members)


def invalid_token_query(name: str) -> Problem:
    """400: query parameter ``name`` is not a token this API handed out."""
    detail = (
        f"Query parameter {name} must be given once, as the token the previous page's "
        "answer gave; start from the first page without it."
    )
    return problem("invalid-query-parameter", detail, {"parameter": name})


def stop_not_supported(function_name: str, instead: str) -> Problem:
    """400: the orchestrator does not wait for the graceful Stop; ``instead`` names the
    request's way to terminate it."""
    detail = (
        f"Orchestrator '{printable(function_name)}' does not wait for the Stop event, so "
        f"a graceful stop would leave it running; nothing was sent. Use {instead} to end "
        "it, or make it take Stop (docs/library.md)."
    )
    return problem("stop-not-supported", detail, {"orchestrator": function_name})


def next_run_not_supported(function_name: str) -> Problem:
    """400: the orchestrator does not take next runs (bufferOne, debounce)."""
    detail = (
        f"Orchestrator '{printable(function_name)}' does not take a next run, so "
        "onConflict=bufferOne and debounceSeconds cannot be used with it; nothing was "
        "started or sent. SingletonOrchestrator takes them (docs/jobs.md)."
    )
    return problem("next-run-not-supported", detail, {"orchestrator": function_name})


def no_limit(function_name: str) -> Problem:
    """400: a start with a key for an orchestrator that has no limit per key."""
    detail = (
        f"Orchestrator '{printable(function_name)}' has no limit per key, so it is started "
        "under an instance id of the caller's (a singleton); nothing was started or queued."
    )
    return problem("no-limit", detail, {"orchestrator": function_name})


def queue_full(key: str, bound: int, retry_after: int) -> Problem:
    """429: the key's queue holds ``bound`` requests; nothing was queued."""
    detail = (
        f"{bound} requests already wait for a slot of key '{printable(key)}' "
        "(SINGLETON_QUEUE_BOUND); nothing was started or queued. Retry after Retry-After "
        "seconds."
    )
    return problem("queue-full", detail, {"key": key, "bound": bound}, _retry(retry_after))


def limit_reached(key: str, limit: int, instances: Iterable[Mapping[str, Any]]) -> Problem:
    """409 (``onFull=reject``): every slot of the key is busy; nothing was queued."""
    detail = (
        f"Key '{printable(key)}' has {limit} instances active (its limit), or requests "
        "waiting for a slot, and onFull=reject was asked; nothing was started or queued."
    )
    members = {"key": key, "limit": limit, "instances": list(instances)}
    return problem("limit-reached", detail, members)


def key_in_use(key: str, orchestrator: str) -> Problem:
    """409: the key's slots run another orchestrator."""
    detail = (
        f"Key '{printable(key)}' is used with orchestrator '{printable(orchestrator)}' "
        "(its slots are instance ids of the task hub); nothing was started or queued."
    )
    return problem("key-in-use", detail, {"key": key, "orchestrator": orchestrator})


def request_cancelled(key: str, request_id: str) -> Problem:
    """409: the Idempotency-Key's request was cancelled since."""
    detail = (
        "The request this Idempotency-Key was first used for was cancelled before it "
        "started; nothing was started or queued. Use a new key for a new request."
    )
    return problem("request-cancelled", detail, {"key": key, "requestId": request_id})


def limited_key_in_progress(
    key: str, request_id: str, instance_id: str, retry_after: int
) -> Problem:
    """409: the Idempotency-Key's request was given a slot and its start there is not
    known to have landed."""
    detail = (
        f"The request this Idempotency-Key was first used for was given slot "
        f"'{printable(instance_id)}', and its start there is not known to have landed: it "
        "may still be under way, or its answer was lost before it was sent. Nothing was "
        "started now. Retry after the number of seconds in Retry-After: once the slot is "
        "settled the retry gets that request's answer, or, if it never started, starts it."
    )
    members = {"key": key, "requestId": request_id, "instanceId": instance_id}
    return problem("idempotency-key-in-progress", detail, members, _retry(retry_after))


def limited_key_mismatch(key: str) -> Problem:
    """422: the Idempotency-Key was first used for another start of the key."""
    detail = (
        f"This Idempotency-Key was first used for a different start for key "
        f"'{printable(key)}' (another orchestrator, body or onFull); nothing was started or "
        "queued. Use a new key for a new request."
    )
    return problem("idempotency-key-mismatch", detail, {"key": key})


def request_not_found(key: str, request_id: str) -> Problem:
    """404: the key's queue knows no such request."""
    detail = (
        f"The queue of key '{printable(key)}' knows no request '{printable(request_id)}' "
        "(never queued here, or long forgotten)."
    )
    return problem("request-not-found", detail, {"key": key, "requestId": request_id})


def request_started(instance: Mapping[str, Any], request_id: str, starting: bool) -> Problem:
    """409: a DELETE of a request that has started already (``starting``: its own start
    in its slot is not known to have landed yet)."""
    if not starting:
        detail = (
            "The request left the queue and started (or ran) before the cancel; nothing was "
            "cancelled. Stop its instance to end it."
        )
    else:
        detail = (
            "The request was given a slot for its own start, which is not known to have "
            "landed yet; a request given a slot is not cancelled, and nothing was. Read its "
            "request URL: once settled it says started (stop its instance to end it), or it "
            "is unknown (it never started)."
        )
    members = {**instance, "requestId": request_id}
    kind = "request-starting" if starting else "request-started"
    return problem(kind, detail, members, _location(instance))


def queue_outcome_unknown(key: str, request_id: str, retry_after: int, cancel: bool) -> Problem:
    """503: the write to the key's queue lost its answer; the request may be queued (or,
    for a ``cancel``, cancelled)."""
    may = "be cancelled, or still queued (or started)" if cancel else "be queued (or started)"
    detail = (
        "The write to the key's queue lost its answer and it cannot be told whether it "
        f"landed: the request may {may}. Read its request URL before asking again."
    )
    members = {"key": key, "requestId": request_id}
    found = problem("queue-outcome-unknown", detail, members, _retry(retry_after))
    return dataclasses.replace(found, title="The request may be cancelled") if cancel else found


def next_run_outcome_unknown(
    links: Mapping[str, Any], retry_after: int, members: Mapping[str, str]
) -> Problem:
    """503: a write to the id's next-run channel was sent and its answer lost;
    ``members`` name the request and what the write, if it landed, replaced or dropped
    (``requestId``, ``replacedRequestId``, ``droppedRequestId``)."""
    found = _outcome_unknown(
        "next-run-outcome-unknown",
        f"A change to the next run of instance '{links['id']}' was sent to storage, but "
        "its answer was lost: this request's input may run next, or not (for a stop: the "
        "next run may have been dropped, or not). If it landed, it replaced (or dropped) "
        "the request named. Check statusQueryGetUri.",
        links,
        retry_after,
    )
    return found.with_members(members)


def body_too_large(limit: int) -> Problem:
    """413: the body is longer than the configured limit."""
    detail = f"The request body must be at most {limit} bytes."
    return problem("body-too-large", detail, {"limitBytes": limit})


#: The detail of each 409 about an existing instance: a template filled from the
#: instance's members and the constructor's own values.
_ABOUT_INSTANCE = {
    "instance-active": (
        "An instance with id '{instanceId}' is {runtimeStatus}; nothing was started. "
        "Follow statusQueryGetUri, or stop it with terminatePostUri."
    ),
    "instance-finished": (
        "An instance with id '{instanceId}' ended {runtimeStatus} and reuse={reuse} does not "
        "start it again; nothing was started."
    ),
    "termination-timeout": (
        "Termination of instance '{instanceId}' was requested but it was still "
        "{runtimeStatus} after {waited} s; nothing was started. Retry once it has ended."
    ),
    "stop-timeout": (
        "Stop was sent to instance '{instanceId}' but it was still {runtimeStatus} after "
        "{waited} s; nothing was started. The Stop stays requested: retry once it has ended. "
        "An orchestrator that does not handle Stop never ends this way; use "
        "onConflict=terminateExisting for it."
    ),
    "instance-not-running": (
        "Instance '{instanceId}' ended {runtimeStatus}; there is nothing to stop."
    ),
}


def instance_active(instance: Mapping[str, Any]) -> Problem:
    """409: an instance with the id is active; ``instance`` describes it (and says how
    to recover when it is stuck)."""
    return _about(instance, "instance-active")


def instance_finished(instance: Mapping[str, Any], reuse: str) -> Problem:
    """409: the id belongs to a finished instance and ``reuse`` forbids reusing it."""
    return _about(instance, "instance-finished", reuse=reuse)


def termination_timeout(instance: Mapping[str, Any], waited_seconds: float) -> Problem:
    """409: ``onConflict=terminateExisting`` asked the old instance to stop; it did not in time."""
    return _about(instance, "termination-timeout", waited=f"{waited_seconds:g}")


def stop_timeout(instance: Mapping[str, Any], waited_seconds: float) -> Problem:
    """409: ``onConflict=stopExisting`` sent the old instance Stop; it did not end in time."""
    return _about(instance, "stop-timeout", waited=f"{waited_seconds:g}")


def instance_not_running(instance: Mapping[str, Any]) -> Problem:
    """409: a stop was asked of an instance that has already ended."""
    return _about(instance, "instance-not-running")


def instance_not_found(instance_id: str, function_name: str) -> Problem:
    """404: no instance of ``function_name`` has the id."""
    detail = f"No instance of {printable(function_name)} has the id '{printable(instance_id)}'."
    return problem("instance-not-found", detail, {"instanceId": instance_id})


def start_refused(instance_id: str) -> Problem:
    """409: the runtime refused the start as a duplicate, but the instance could not be read."""
    detail = (
        f"The Durable runtime refused to start '{instance_id}' because an instance with that "
        "id is active; nothing was started."
    )
    return problem("instance-active", detail, {"instanceId": instance_id})


def idempotency_key_mismatch(instance_id: str) -> Problem:
    """422: the key was first used with a different request."""
    detail = (
        f"This Idempotency-Key was first used for a different start of '{instance_id}' "
        "(another orchestrator, body or policy); nothing was started. Use a new key for a "
        "new request."
    )
    return problem("idempotency-key-mismatch", detail, {"instanceId": instance_id})


def idempotency_key_in_progress(instance_id: str, retry_after: int) -> Problem:
    """409: the first request with the key may still be starting the instance."""
    detail = (
        f"The first request with this Idempotency-Key is still starting '{instance_id}', "
        "or its start may still land; nothing was started. Retry after the number of "
        "seconds in Retry-After: the retry gets that request's answer."
    )
    members = {"instanceId": instance_id}
    return problem("idempotency-key-in-progress", detail, members, _retry(retry_after))


def idempotency_key_superseded(instance_id: str) -> Problem:
    """409: a later start (or next run) of the id came after the key's, or the key's
    instance was purged."""
    detail = (
        f"A later request started '{instance_id}' (or gave it its next run) after the "
        "request that first used this Idempotency-Key, or the instance that request "
        "started was purged, so its answer cannot be given again; nothing was started. "
        "Read the instance's status, and use a new key to start again."
    )
    return problem("idempotency-key-superseded", detail, {"instanceId": instance_id})


def instance_ending(waited_seconds: float, retry_after: int) -> Problem:
    """503: the active instance takes no next run and did not end in time."""
    detail = (
        "The active instance is ending its run (or was not started through this app) "
        f"and did not end within {waited_seconds:g} s; nothing was buffered or started. "
        "Retry after the number of seconds in Retry-After."
    )
    return problem("instance-ending", detail, {}, _retry(retry_after))


def lock_busy(retry_after: int) -> Problem:
    """503: another holder of the id's lock kept it longer than this caller may wait."""
    detail = (
        "The id's start lock is held by something else (another start, stop or terminate "
        "of this id, or the app's own clean-up) that did not let it go in time; nothing "
        "was started. Retry after the number of seconds in Retry-After."
    )
    return problem("lock-busy", detail, {}, _retry(retry_after))


def storage_unavailable(retry_after: int) -> Problem:
    """503: the storage account that holds the locks failed, or did not answer in time."""
    detail = (
        "The storage account that holds the start locks could not be used (it refused the "
        "request, could not be reached, or did not answer in time: the log names the "
        "error); nothing was started."
    )
    return problem("storage-unavailable", detail, {}, _retry(retry_after))


def lock_lost(retry_after: int) -> Problem:
    """503: the start lock's lease could not be kept, so the start was not attempted."""
    detail = (
        "The lease on this id's start lock could not be proven held for the next call "
        "(storage did not renew it in time, or this request's hold on the id ended "
        "while it was paused); nothing was started."
    )
    return problem("lock-lost", detail, {}, _retry(retry_after))


def start_outcome_unknown(links: Mapping[str, Any], retry_after: int) -> Problem:
    """503: the start was sent but its answer was lost; it may have happened."""
    return _outcome_unknown(
        "start-outcome-unknown",
        f"The start of instance '{links['id']}' was sent to the Durable Functions API but "
        "its answer was lost, and the instance's status does not show it yet: it may have "
        "started. Check statusQueryGetUri; a retry after Retry-After seconds is answered "
        "409 if it did.",
        links,
        retry_after,
    )


def _outcome_unknown(
    kind: str, detail: str, links: Mapping[str, Any], retry_after: int
) -> Problem:
    """A 503 for something sent whose outcome the app does not know: it points at the
    instance's status and says when to ask again."""
    status_url = links["statusQueryGetUri"]
    members = {"instanceId": links["id"], "statusQueryGetUri": status_url}
    return problem(kind, detail, members, {**_retry(retry_after), "Location": status_url})


def durable_unavailable(retry_after: int, sent: bool, stage: str, acted: bool) -> Problem:
    """503: the Durable Functions API could not be reached, or (``sent``) did not answer
    a request that reached it while at ``stage``, which may have been carried out
    (``acted``); no start was sent."""
    if not sent:
        what = "could not be reached"
    else:
        what = f"did not answer in time while {stage}"
        what += ", which may have been carried out" if acted else ""
    detail = f"The Durable Functions API {what}; nothing was started."
    return problem("durable-unavailable", detail, {}, _retry(retry_after))


def stop_outcome_unknown(links: Mapping[str, Any], retry_after: int) -> Problem:
    """503: a Stop or terminate was sent but its answer was lost; it may have happened."""
    return _outcome_unknown(
        "stop-outcome-unknown",
        f"The Stop (or terminate) of instance '{links['id']}' was sent to the Durable "
        "Functions API but its answer was lost: it may have been carried out. Check "
        "statusQueryGetUri before asking again; a DELETE of an instance that has ended is "
        "answered 409.",
        links,
        retry_after,
    )


def durable_error(stage: str) -> Problem:
    """502: the Durable Functions API answered with an error the app did not expect."""
    detail = (
        f"The Durable Functions API answered with an unexpected error while {stage}. "
        "Check the instance's status before retrying."
    )
    return problem("durable-error", detail)


def internal_error() -> Problem:
    """500: a fault in the app itself."""
    detail = "The request failed inside the app; nothing is known to have started."
    return problem("internal-error", detail)


def _about(instance: Mapping[str, Any], kind: str, **values: str) -> Problem:
    """A 409 about an existing instance: repeats its description, points at it; for a
    stuck instance the detail adds what it means and how to recover."""
    detail = _ABOUT_INSTANCE[kind].format(**{**instance, **values})
    if instance.get("stuck") and kind in _STUCK_ADVICE:
        detail += " " + _STUCK_ADVICE[kind].format(**instance)
    return problem(kind, detail, instance, _location(instance))


#: What the 409s add about a stuck instance (Pending longer than
#: SINGLETON_STUCK_PENDING_SECONDS): it may never run, and the way out.
_STUCK_ADVICE = {
    "instance-active": (
        "It has been Pending for {pendingSeconds} s and is likely stuck: it may never run, "
        "and it holds the id until it ends. To recover, retry with "
        "onConflict=terminateExisting (see docs/operate.md, Stuck instances)."
    ),
    "termination-timeout": (
        "It has been Pending for {pendingSeconds} s and is stuck; this version of the "
        "Durable extension may not end a Pending instance on terminate: see docs/operate.md, "
        "Stuck instances, for what to do instead."
    ),
}


def _location(instance: Mapping[str, Any]) -> Dict[str, str]:
    """``Location`` points at the described instance's status URL."""
    url = instance.get("statusQueryGetUri")
    return {"Location": url} if url else {}


def printable(value: str, limit: int = 120) -> str:
    """Caller input as an answer or a log may echo it: at most ``limit`` characters,
    each outside printable ASCII (line breaks included) as its Python escape."""
    return value[:limit].encode("unicode_escape").decode("ascii")
