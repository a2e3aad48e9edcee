"""One invocation of an HTTP function: its settings and clients, its answer, its span,
metrics and log line. The functions' own modules say only what the request does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional, Tuple

import azure.functions as func

from . import _answers as answers
from . import _telemetry as telemetry
from ._durable import DurableClient
from ._links import Links, links_for
from ._problems import printable
from ._root import Root
from ._settings import Settings

logger = logging.getLogger("durable_singleton._starter")

#: The route template of each HTTP trigger, under the host's ``/api`` prefix: the v2
#: Blueprint registers them, the spans name them.
ROUTES = {
    "http": "orchestrators/{functionName}/{instanceId}",
    "instance": "orchestrators/{functionName}/{instanceId}",
    "list": "orchestrators/{functionName}",
    "page": "singletons",
}


@dataclass(frozen=True)
class Invocation:
    """What a request's work gets: the request, the composition root, the Durable API
    client and the URLs for answers."""

    req: func.HttpRequest
    root: Root
    durable: DurableClient
    links: Links

    @property
    def settings(self) -> Settings:
        """The app settings."""
        return self.root.settings


#: A request's work: its answer and the decision word for the log line and metrics.
Work = Callable[[Invocation], Awaitable[Tuple[func.HttpResponse, str]]]

#: Gives the running loop's composition root, making it on first use.
RootFactory = Callable[[], Root]


async def answer(
    make_root: RootFactory,
    req: func.HttpRequest,
    starter: str,
    source: str,
    trigger: str,
    work: Work,
) -> func.HttpResponse:
    """Run ``work`` for ``req``; answer every failure with its problem (nothing escapes).

    ``source`` heads the log line (the function's name); ``trigger`` names the span.
    """
    began = time.perf_counter()
    instance_id = req.route_params.get("instanceId", "")
    function_name = req.route_params.get("functionName", "")
    links: Optional[Links] = None
    problem_kind: Optional[str] = None
    method = req.method.upper()
    route = "/api/" + ROUTES[trigger]
    with telemetry.request(
        trigger, loggable(instance_id), loggable(function_name), method, route
    ) as span:
        try:
            root = make_root()
            durable = root.durable(starter)
            links = links_for(root.settings.management_links, req, durable.binding)
            response, decision = await work(Invocation(req, root, durable, links))
            # A refusal the policy decided (409) is an answer, not a failure: its kind
            # is read back from the answer, for the span and metrics.
            problem_kind = answers.problem_kind_of(response)
        except Exception as error:
            problem = answers.for_failure(error, links)
            response = answers.problem_response(problem)
            decision = problem_kind = problem.kind
        telemetry.record_decision(span, trigger, decision, response.status_code, problem_kind)
    extra = "" if method == "POST" else f" method={loggable(method)}"
    log_decision(source, instance_id, function_name, decision, response.status_code, began, extra)
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
        "%s instance=%s function=%s decision=%s status=%d duration_ms=%.1f%s%s",
        source,
        loggable(instance_id),
        loggable(function_name),
        decision,
        status,
        (time.perf_counter() - began) * 1000,
        telemetry.stuck_note(),
        extra,
    )


def loggable(value: object) -> str:
    """A route value as the log line shows it: escaped (:func:`problems.printable`),
    ``-`` when empty."""
    return printable(str(value)) or "-"
