"""The guarantee as a v2 (decorator) Blueprint: the same functions as the v1 app.

The functions take the ``durableClient`` binding as its JSON string (a generic input
binding of type ``durableClient``), exactly as the v1 app's function.json declares it,
so both apps run the same code from there on.
"""

from __future__ import annotations

import functools
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

import azure.durable_functions as df
import azure.functions as func

from ._app import SingletonApp
from ._catalog import Catalog, InputRule
from ._invocation import (
    DEFAULT_ROUTE_PREFIX,
    INSTANCE_ROUTE,
    LIMITED_REQUEST_ROUTE,
    LIMITED_ROUTE,
)
from ._limit_sweep import LIMIT_SWEEP_SCHEDULE
from ._next_run import NEXT_RUN_ACTIVITY
from ._settings import DEFAULT_SCHEDULE_PREFIX, RETENTION_SCHEDULE

#: The HTTP functions a Blueprint may leave out (``leave_out``): all but the start.
OPTIONAL_FUNCTIONS = ("SingletonInstance", "SingletonList", "SingletonsPage", "OpenApiDocument")

#: What an HTTP function hands its request and its ``durableClient`` binding to.
Handler = Callable[[func.HttpRequest, str], Awaitable[func.HttpResponse]]


class SingletonBlueprint(df.Blueprint):  # type: ignore[misc]
    """A Blueprint of the guarantee's functions, and the :class:`SingletonApp` behind them
    (``singleton``): to start, read and stop from code, and to close."""

    def __init__(self, singleton: SingletonApp, auth_level: func.AuthLevel):
        """Functions served by ``singleton``; HTTP ones at ``auth_level`` by default."""
        super().__init__(http_auth_level=auth_level)
        self.singleton = singleton


def blueprint(
    orchestrators: Union[Iterable[str], Mapping[str, Optional[InputRule]], None] = None,
    *,
    app: Optional[SingletonApp] = None,
    schedules: Iterable[str] = (),
    next_runs: Iterable[str] = (),
    retention: bool = False,
    auth_level: func.AuthLevel = func.AuthLevel.FUNCTION,
    route_prefix: Optional[str] = None,
    leave_out: Iterable[str] = (),
    stops: Iterable[str] = (),
    limits: Mapping[str, int] = {},
) -> SingletonBlueprint:
    """The Blueprint a v2 app registers with ``app.register_functions(...)``.

    Parameters
    ----------
    orchestrators : iterable of str, or mapping of str to input rule
        The names of the app's orchestrator functions callers may start, optionally
        each with an input rule (a function that raises :class:`InvalidInput`).
    app : SingletonApp, optional
        The app's :class:`SingletonApp`, for one made by the caller (to share it with
        functions of its own, or to close it); one is made from ``orchestrators``
        when not given. Give one or the other.
    schedules : iterable of str
        App setting prefixes of scheduled singletons, each its own timer function
        (``SINGLETON_SCHEDULE`` is the first; see docs/jobs.md). None by default.
    next_runs : iterable of str
        Those of ``orchestrators`` that take next runs (``onConflict=bufferOne``,
        ``debounceSeconds``): ones that run :func:`run_job`, or follow its protocol.
        With any, the Blueprint adds the activity ``SingletonNextRun`` they call.
    retention : bool
        Add the retention timer ``SingletonRetention`` (its schedule in app setting
        ``SINGLETON_RETENTION_SCHEDULE``, which must then be set; it acts only with
        ``SINGLETON_RETENTION_ENABLED=true``; docs/operate.md). Off by default.
    auth_level : azure.functions.AuthLevel
        The key every HTTP function of the Blueprint needs, set on each function so that
        the app's ``http_auth_level`` (a quickstart's ``ANONYMOUS``) does not apply:
        ``FUNCTION`` by default. ``ANONYMOUS`` lets anyone who can reach the app start,
        stop, terminate and read jobs: only behind a gateway that authenticates callers
        (docs/library.md).
    route_prefix : str, optional
        Where the operator routes go (the page, ``{prefix}/{functionName}`` the list,
        ``{prefix}/openapi.yaml`` the contract): ``singletons`` unless given here or to
        the ``app`` (give it to one of them). The start, status and stop route is
        ``orchestrators/{functionName}/{instanceId}`` always.
    leave_out : iterable of str
        Functions of :data:`OPTIONAL_FUNCTIONS` not to add (the start is always added).
    stops : iterable of str
        Those of ``orchestrators`` that take a graceful Stop (they wait for it:
        :func:`stop_requested`); those in ``next_runs`` do. Every other is offered
        terminate only: a Stop for it is refused (400 ``stop-not-supported``).
    limits : mapping of str to int
        Those of ``orchestrators`` (in ``next_runs``) with a limit per key, and N for
        each (1 to 100). With any, the Blueprint adds ``HttpStartLimited`` (POST
        ``limits/{functionName}/{key}``), ``LimitedRequest`` (GET, DELETE
        ``limits/{functionName}/{key}/requests/{requestId}``) and the timer
        ``SingletonLimitSweep`` (every 30 s).

    Returns
    -------
    SingletonBlueprint
        An ``azure.durable_functions.Blueprint`` whose ``singleton`` is the
        :class:`SingletonApp` its functions use (``app``, or the one made here): close
        it when a program or test that owns its event loop is done. Its functions:
        ``HttpStartSingle`` (POST), ``SingletonInstance`` (GET, DELETE),
        ``SingletonList`` (GET), ``SingletonsPage`` (GET) and ``OpenApiDocument``, every
        HTTP function at ``auth_level``, a timer function per schedule, and
        ``SingletonNextRun`` when an orchestrator takes next runs.
    """
    if (app is None) == (orchestrators is None):
        raise TypeError("give either orchestrators or app")
    if app is not None and route_prefix is not None:
        raise TypeError("give route_prefix to the SingletonApp")
    prefixes = list(schedules)
    singleton = app or SingletonApp(
        Catalog.of(orchestrators or (), next_runs, prefixes, stops, limits),
        route_prefix=DEFAULT_ROUTE_PREFIX if route_prefix is None else route_prefix,
    )
    routes = singleton.routes
    bp = SingletonBlueprint(singleton, auth_level)
    left_out = set(leave_out)
    if not left_out <= set(OPTIONAL_FUNCTIONS):
        raise ValueError(f"leave_out takes {', '.join(OPTIONAL_FUNCTIONS)}")
    catalog = singleton.catalog
    handlers: Dict[str, Tuple[str, List[str], Handler]] = {
        "HttpStartSingle": (INSTANCE_ROUTE, ["POST"], singleton.http_start),
        "SingletonInstance": (INSTANCE_ROUTE, ["GET", "DELETE"], singleton.http_instance),
        "SingletonList": (routes.list, ["GET"], singleton.http_list),
        "SingletonsPage": (routes.page, ["GET"], singleton.http_page),
    }
    if catalog.has_limits():
        handlers["HttpStartLimited"] = (LIMITED_ROUTE, ["POST"], singleton.http_limited_start)
        handlers["LimitedRequest"] = (
            LIMITED_REQUEST_ROUTE,
            ["GET", "DELETE"],
            singleton.http_limited_request,
        )
        _add_timer(bp, "SingletonLimitSweep", LIMIT_SWEEP_SCHEDULE, singleton.limit_sweep, False)
    for name, (route, methods, handler) in handlers.items():
        if name not in left_out:
            _add_http(bp, name, route, methods, handler, auth_level)
    if "OpenApiDocument" not in left_out:

        @bp.function_name("OpenApiDocument")
        @bp.route(route=routes.contract, methods=["GET"], auth_level=auth_level)
        def openapi(req: func.HttpRequest) -> func.HttpResponse:
            return singleton.openapi()

    if any(catalog.accepts_next_run(name) for name in catalog.names):
        _add_next_run(bp, singleton)
    for prefix in prefixes:
        name = "TimerStartSingle"
        if prefix != DEFAULT_SCHEDULE_PREFIX:
            name += "_" + prefix
        _add_timer(bp, name, f"%{prefix}%", functools.partial(singleton.timer_tick, prefix=prefix))
    if retention:
        _add_timer(bp, "SingletonRetention", f"%{RETENTION_SCHEDULE}%", singleton.retention_tick)
    return bp


def _add_http(
    bp: df.Blueprint,
    name: str,
    route: str,
    methods: List[str],
    handler: Handler,
    auth_level: func.AuthLevel,
) -> None:
    """An HTTP function ``name`` that hands its request and the ``durableClient`` binding
    to ``handler``."""

    @bp.function_name(name)
    @bp.route(route=route, methods=methods, auth_level=auth_level)
    @bp.generic_input_binding(arg_name="starter", type="durableClient")
    async def http(req: func.HttpRequest, starter: str) -> func.HttpResponse:
        return await handler(req, starter)


def _add_next_run(bp: df.Blueprint, singleton: SingletonApp) -> None:
    """SingletonNextRun, the activity through which those orchestrators take next runs."""

    @bp.function_name(NEXT_RUN_ACTIVITY)
    @bp.activity_trigger(input_name="request")
    async def next_run(request: Dict[str, Any]) -> Any:
        return await singleton.next_run(request)


def _add_timer(
    bp: df.Blueprint,
    name: str,
    schedule: str,
    handler: Callable[[func.TimerRequest, str], Awaitable[Any]],
    use_monitor: bool = True,
) -> None:
    """A timer function ``name`` on ``schedule`` that hands its tick and the
    ``durableClient`` binding to ``handler``."""

    @bp.function_name(name)
    @bp.timer_trigger(arg_name="timer", schedule=schedule, use_monitor=use_monitor)
    @bp.generic_input_binding(arg_name="starter", type="durableClient")
    async def tick(timer: func.TimerRequest, starter: str) -> None:
        await handler(timer, starter)
