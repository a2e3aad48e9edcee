"""The guarantee as a v2 (decorator) Blueprint: the same functions as the v1 app.

The functions take the ``durableClient`` binding as its JSON string (a generic input
binding of type ``durableClient``), exactly as the v1 app's function.json declares it,
so both apps run the same code from there on.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Union

import azure.durable_functions as df
import azure.functions as func

from ._app import SingletonApp
from ._catalog import Catalog, InputRule
from ._invocation import ROUTES
from ._settings import DEFAULT_SCHEDULE_PREFIX, RETENTION_SCHEDULE

#: The route of a start, a status read and a stop (under the host's ``/api`` prefix).
INSTANCE_ROUTE = ROUTES["http"]
#: The route of an orchestrator's list of instances.
LIST_ROUTE = ROUTES["list"]
#: The route of the page that shows every singleton.
PAGE_ROUTE = ROUTES["page"]


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

    Returns
    -------
    SingletonBlueprint
        An ``azure.durable_functions.Blueprint`` whose ``singleton`` is the
        :class:`SingletonApp` its functions use (``app``, or the one made here): close
        it when a program or test that owns its event loop is done. Its functions:
        ``HttpStartSingle`` (POST), ``SingletonInstance`` (GET, DELETE),
        ``SingletonList`` (GET), ``SingletonsPage`` (GET) and ``OpenApiDocument``, every
        HTTP function at ``auth_level``, and a timer function per schedule.
    """
    if (app is None) == (orchestrators is None):
        raise TypeError("give either orchestrators or app")
    prefixes = list(schedules)
    singleton = app or SingletonApp(Catalog.of(orchestrators or (), next_runs, prefixes))
    bp = SingletonBlueprint(singleton, auth_level)

    @bp.function_name("HttpStartSingle")
    @bp.route(route=INSTANCE_ROUTE, methods=["POST"], auth_level=auth_level)
    @bp.generic_input_binding(arg_name="starter", type="durableClient")
    async def http_start(req: func.HttpRequest, starter: str) -> func.HttpResponse:
        return await singleton.http_start(req, starter)

    @bp.function_name("SingletonInstance")
    @bp.route(route=INSTANCE_ROUTE, methods=["GET", "DELETE"], auth_level=auth_level)
    @bp.generic_input_binding(arg_name="starter", type="durableClient")
    async def instance(req: func.HttpRequest, starter: str) -> func.HttpResponse:
        return await singleton.http_instance(req, starter)

    @bp.function_name("SingletonList")
    @bp.route(route=LIST_ROUTE, methods=["GET"], auth_level=auth_level)
    @bp.generic_input_binding(arg_name="starter", type="durableClient")
    async def listing(req: func.HttpRequest, starter: str) -> func.HttpResponse:
        return await singleton.http_list(req, starter)

    @bp.function_name("SingletonsPage")
    @bp.route(route=PAGE_ROUTE, methods=["GET"], auth_level=auth_level)
    @bp.generic_input_binding(arg_name="starter", type="durableClient")
    async def page(req: func.HttpRequest, starter: str) -> func.HttpResponse:
        return await singleton.http_page(req, starter)

    @bp.function_name("OpenApiDocument")
    @bp.route(route="openapi.yaml", methods=["GET"], auth_level=auth_level)
    def openapi(req: func.HttpRequest) -> func.HttpResponse:
        return singleton.openapi()

    for prefix in prefixes:
        _add_schedule(bp, singleton, prefix)
    if retention:
        _add_retention(bp, singleton)
    return bp


def _add_schedule(bp: df.Blueprint, singleton: SingletonApp, prefix: str) -> None:
    """A timer function for the schedule whose settings start with ``prefix``."""
    name = "TimerStartSingle"
    if prefix != DEFAULT_SCHEDULE_PREFIX:
        name += "_" + prefix

    @bp.function_name(name)
    @bp.timer_trigger(arg_name="timer", schedule=f"%{prefix}%", use_monitor=True)
    @bp.generic_input_binding(arg_name="starter", type="durableClient")
    async def tick(timer: func.TimerRequest, starter: str) -> None:
        await singleton.timer_tick(timer, starter, prefix)


def _add_retention(bp: df.Blueprint, singleton: SingletonApp) -> None:
    """The retention timer function."""

    @bp.function_name("SingletonRetention")
    @bp.timer_trigger(arg_name="timer", schedule=f"%{RETENTION_SCHEDULE}%", use_monitor=True)
    @bp.generic_input_binding(arg_name="starter", type="durableClient")
    async def retention_tick(timer: func.TimerRequest, starter: str) -> None:
        await singleton.retention_tick(timer, starter)
