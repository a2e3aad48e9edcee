"""One invocation of an HTTP function: its settings and clients, its answer, its span,
metrics and log line. The functions' own modules say only what the request does.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional, Tuple

import azure.functions as func
from opentelemetry.trace import Span

from . import _answers as answers
from . import _telemetry as telemetry
from ._durable import DurableClient
from ._links import Links, links_for
from ._problems import Problem, printable
from ._root import Root
from ._settings import Settings

logger = logging.getLogger("durable_singleton._starter")

#: The route of a start, a status read and a stop, under the host's ``/api`` prefix: the
#: product's contract, whichever app serves it.
INSTANCE_ROUTE = "orchestrators/{functionName}/{instanceId}"
#: A start with a limit per key, and the URL its request is followed at.
LIMITED_ROUTE = "limits/{functionName}/{key}"
LIMITED_REQUEST_ROUTE = "limits/{functionName}/{key}/requests/{requestId}"
#: Where the operator routes (list, page, contract) go unless an app says otherwise.
DEFAULT_ROUTE_PREFIX = "singletons"
_PREFIX = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
#: First segments a prefix must not take: the Durable starters' routes
#: (``orchestrators/{functionName}`` in the templates and samples), and the host's own.
_TAKEN = {"orchestrators", "runtime", "admin", "limits"}


@dataclass(frozen=True)
class Routes:
    """The route template of each HTTP function, under the host's ``/api`` prefix.

    The start, status and stop route is :data:`INSTANCE_ROUTE`; the operator routes
    live under ``prefix``: the page at ``prefix``, an orchestrator's list at
    ``prefix/{functionName}``, the contract at ``prefix/openapi.yaml``. None of them
    overlaps ``orchestrators/{functionName}``, where the Durable quickstarts put their
    own starters (the host refuses one of two overlapping routes).
    """

    prefix: str = DEFAULT_ROUTE_PREFIX

    def __post_init__(self) -> None:
        """Refuse a prefix that is not a plain path or overlaps a starter's route."""
        if not _PREFIX.fullmatch(self.prefix) or self.prefix.split("/")[0].lower() in _TAKEN:
            raise ValueError(
                f"route_prefix {self.prefix!r}: one or more path segments of letters, digits, "
                "- and _, not starting with orchestrators, limits, runtime or admin"
            )

    @property
    def list(self) -> str:
        """An orchestrator's list of instances."""
        return f"{self.prefix}/{{functionName}}"

    @property
    def page(self) -> str:
        """The page that shows every singleton."""
        return self.prefix

    @property
    def contract(self) -> str:
        """The OpenAPI document."""
        return f"{self.prefix}/openapi.yaml"

    def template(self, trigger: str) -> str:
        """The route template of the HTTP function ``trigger`` names."""
        routes = {
            "list": self.list,
            "page": self.page,
            "limited": LIMITED_ROUTE,
            "limited-request": LIMITED_REQUEST_ROUTE,
        }
        return routes.get(trigger, INSTANCE_ROUTE)

    def instance_paths(self, request_path: str, route: str) -> str:
        """The path under which this app's instances are (``/api/orchestrators/``), from
        the path of a request to ``route`` filled in (the host's own route prefix is the
        part before it: ``/api`` unless host.json says otherwise)."""
        path = request_path.rstrip("/")
        tail = "/" + route
        base = path[: -len(tail)] if path.endswith(tail) else "/api"
        return f"{base}/{INSTANCE_ROUTE.split('{', 1)[0]}"


@dataclass(frozen=True)
class Invocation:
    """What a request's work gets: the request, the composition root, the Durable API
    client and the URLs for answers."""

    req: func.HttpRequest
    root: Root
    durable: DurableClient
    links: Links
    #: The app's routes.
    routes: Routes

    @property
    def settings(self) -> Settings:
        """The app settings."""
        return self.root.settings


#: A request's work: its answer and the decision word for the log line and metrics.
Work = Callable[[Invocation], Awaitable[Tuple[func.HttpResponse, str]]]

#: Gives the running loop's composition root, making it on first use.
RootFactory = Callable[[], Root]


@dataclass
class Told:
    """What one invocation (a request or a timer tick) tells of itself: its span's
    decision and status, its metric, its log line. The work fills it in as it goes."""

    decision: str = ""
    status: int = 0
    problem_kind: Optional[str] = None
    instance_id: str = ""
    function_name: str = ""
    #: Ends the log line (`` trigger=timer``, `` method=GET``).
    extra: str = ""
    #: The URLs a failure's problem may name, once known.
    links: Optional[Links] = None
    #: The problem a failure was answered with.
    problem: Optional[Problem] = None

    def failed(self, problem: Problem) -> None:
        """The work failed: it is answered with ``problem``."""
        self.problem = problem
        self.decision = self.problem_kind = problem.kind
        self.status = problem.status


async def enveloped(
    trigger: str,
    source: str,
    work: Callable[[Told, Span], Awaitable[None]],
    told: Told,
    method: Optional[str] = None,
    route: Optional[str] = None,
    on_problem: Callable[[Problem], None] = lambda problem: None,
) -> Told:
    """Run ``work`` as one invocation: inside one span (``trigger``; HTTP ``method`` and
    ``route`` when given), every failure answered with its problem (nothing escapes;
    ``on_problem`` sees it), then its decision counted and one log line headed by
    ``source`` (the function's name). Returns ``told``, as the work left it."""
    began = time.perf_counter()
    with telemetry.request(
        trigger, loggable(told.instance_id), loggable(told.function_name), method, route
    ) as span:
        try:
            await work(told, span)
        except Exception as error:
            told.failed(answers.for_failure(error, told.links))
            assert told.problem is not None
            on_problem(told.problem)
        telemetry.record_decision(span, trigger, told.decision, told.status, told.problem_kind)
    log_decision(
        source,
        told.instance_id,
        told.function_name,
        told.decision,
        told.status,
        began,
        told.extra,
    )
    return told


async def answer(
    make_root: RootFactory,
    req: func.HttpRequest,
    starter: str,
    source: str,
    trigger: str,
    work: Work,
    routes: Routes,
) -> func.HttpResponse:
    """Run ``work`` for ``req`` as one invocation (:func:`enveloped`); answer every
    failure with its problem. ``source`` heads the log line (the function's name);
    ``trigger`` names the span, and its route among the app's ``routes`` the span's
    ``http.route``.
    """
    method = req.method.upper()
    response: Optional[func.HttpResponse] = None

    async def run(told: Told, span: Span) -> None:
        nonlocal response
        root = make_root()
        durable = root.durable(starter)
        told.links = links_for(root.settings.management_links, req, durable.binding)
        response, told.decision = await work(Invocation(req, root, durable, told.links, routes))
        # A refusal the policy decided (409) is an answer, not a failure: its kind is
        # read back from the answer, for the span and metrics.
        told.problem_kind = answers.problem_kind_of(response)
        told.status = response.status_code

    told = Told(
        instance_id=req.route_params.get("instanceId", ""),
        function_name=req.route_params.get("functionName", ""),
        extra="" if method == "POST" else f" method={loggable(method)}",
    )
    route = "/api/" + routes.template(trigger)
    await enveloped(trigger, source, run, told, method, route)
    if told.problem is not None or response is None:
        assert told.problem is not None
        return answers.problem_response(told.problem)
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
