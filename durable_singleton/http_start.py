"""HttpStartSingle's request: validate, start as guarded, answer, log, trace.

Every answer, errors included, is an HTTP response: nothing escapes
:func:`handle_start_request`.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import azure.functions as func

from . import answers, telemetry
from .catalog import orchestrator_names
from .durable import DurableApi
from .links import Links, links_for
from .settings import load_settings
from .starter import start_singleton
from .validation import parse_start_request

logger = logging.getLogger("durable_singleton.starter")


async def handle_start_request(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Answer one HttpStartSingle request.

    Parameters
    ----------
    req : func.HttpRequest
        The request, with route parameters ``functionName`` and ``instanceId``.
    starter : str
        The ``durableClient`` binding's JSON.

    Returns
    -------
    func.HttpResponse
        202 started, 200 existing instance used, or a problem+json answer.
    """
    began = time.perf_counter()
    instance_id = req.route_params.get("instanceId", "")
    function_name = req.route_params.get("functionName", "")
    links: Optional[Links] = None
    problem_kind: Optional[str] = None
    with telemetry.request("http", loggable(instance_id), loggable(function_name)) as span:
        try:
            settings = load_settings()
            request = parse_start_request(req, settings, orchestrator_names())
            durable = DurableApi(starter, settings.durable_timeout_seconds)
            links = links_for(settings.management_links, req, durable.client)
            outcome = await start_singleton(request, durable, settings)
            response = answers.for_outcome(outcome, request.instance_id, links, request.reuse)
            decision = outcome.action.value
        except Exception as error:
            problem, dependency = answers.for_failure(error, links)
            if dependency:
                telemetry.record_failure(dependency, problem.kind)
            response, decision, problem_kind = (
                answers.problem_response(problem),
                problem.kind,
                problem.kind,
            )
        telemetry.record_decision(span, "http", decision, response.status_code, problem_kind)
    log_decision(
        "HttpStartSingle", instance_id, function_name, decision, response.status_code, began
    )
    return response


def log_decision(
    source: str,
    instance_id: str,
    function_name: str,
    decision: str,
    status: int,
    began: float,
    extra: str = "",
) -> None:
    """The one log line per request or tick, headed by ``source`` (the function); it
    names no URL and no key. ``extra`` ends it (`` trigger=timer``, `` method=GET``)."""
    logger.info(
        "%s instance=%s function=%s decision=%s status=%d duration_ms=%.1f%s",
        source,
        loggable(instance_id),
        loggable(function_name),
        decision,
        status,
        (time.perf_counter() - began) * 1000,
        extra,
    )


def loggable(value: object, limit: int = 120) -> str:
    """Route values as a log may show them: bounded, printable, no line breaks."""
    text = str(value)[:limit]
    return text.encode("unicode_escape").decode("ascii") or "-"
