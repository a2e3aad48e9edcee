"""HttpStartLimited and LimitedRequest: starts with a limit per key over HTTP, and the
URL a queued request is followed (and cancelled) at. Validation and the rules are the
library's (durable_singleton._request, durable_singleton._limited); this module reads the
request and picks the answer."""

from __future__ import annotations

from typing import Tuple

import azure.functions as func

from . import _answers as answers
from . import _problems as problems
from ._invocation import Invocation
from ._limited import cancel_request, request_state, start_limited
from ._policy import OnFull
from ._problems import ProblemError
from ._request import check_function_name, checked_limited_start
from ._validation import read_choice, read_idempotency_key

#: Where a queued request is followed, under its key's start URL.
REQUESTS_SEGMENT = "requests"


async def start(call: Invocation) -> Tuple[func.HttpResponse, str]:
    """Answer ``POST /api/limits/{functionName}/{key}``: 202 started or queued, or a
    problem+json answer (429 queue-full, 409 limit-reached with ``onFull=reject``)."""
    req = call.req
    function_name = req.route_params.get("functionName", "")
    key = req.route_params.get("key", "")
    start = checked_limited_start(
        call.root.catalog,
        call.settings,
        function_name,
        key,
        raw=req.get_body() or b"",
        on_full=read_choice(req, "onFull", OnFull, OnFull.QUEUE),
        idempotency_key=read_idempotency_key(req),
    )
    admitted = await start_limited(start, call.durable, call.root)
    url = f"{_path_url(req)}/{REQUESTS_SEGMENT}/{admitted.request_id}"
    decision = "replayed" if admitted.replayed else ("started" if admitted.started else "queued")
    return answers.for_admitted(admitted, call.links, url), decision


async def request(call: Invocation) -> Tuple[func.HttpResponse, str]:
    """Answer ``GET`` (where it is) or ``DELETE`` (cancel it while it waits) on
    ``/api/limits/{functionName}/{key}/requests/{requestId}``."""
    req = call.req
    check_function_name(req.route_params.get("functionName", ""), call.root.catalog.names)
    key = req.route_params.get("key", "")
    request_id = req.route_params.get("requestId", "")
    hub = call.durable.task_hub
    if req.method.upper() == "DELETE":
        state = await cancel_request(call.root, hub, key, request_id)
    else:
        state = await request_state(call.root, hub, key, request_id)
    if state is None:
        raise ProblemError(problems.request_not_found(key, request_id))
    if req.method.upper() == "DELETE" and state.instance_id is not None:
        instance = {"instanceId": state.instance_id, **call.links(state.instance_id)}
        starting = state.state == "starting"
        raise ProblemError(problems.request_started(instance, request_id, starting))
    decision = "cancelled" if req.method.upper() == "DELETE" else f"request-{state.state}"
    return answers.queued_request(state, key, request_id, call.links), decision


def _path_url(req: func.HttpRequest) -> str:
    """The request's URL without its query (the host puts the whole URL in ``req.url``)."""
    return str(req.url).split("?", 1)[0].rstrip("/")
