"""SingletonApp: the guarantee as one object an app owns and passes to every function."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Callable, Mapping, Optional, Union

import azure.functions as func

from . import _answers as answers
from . import _http_limited as limited
from ._catalog import Catalog
from ._client import SingletonClient
from ._http_start import start
from ._instances import status_or_stop
from ._invocation import DEFAULT_ROUTE_PREFIX, Routes, Work, answer
from ._limit_sweep import SweepReport, handle_limit_sweep
from ._links import links_for
from ._list import list_instances
from ._next_run_store import handle as handle_next_run
from ._page import page
from ._policy import Reuse
from ._retention import RetentionReport, handle_retention_tick
from ._root import Root
from ._starter import Outcome
from ._timer_start import handle_tick


class SingletonApp:
    """The singleton guarantee for one Function App.

    Create one per app, at import time (it does no I/O), and pass it to each function.
    On first use in an event loop it makes the loop's composition root (the settings,
    read once from ``environ``; the HTTP session to the Durable API; the Blob Storage
    client; the start locks); :meth:`close` ends them.

    Parameters
    ----------
    catalog : Catalog
        The orchestrators callers may start (``Catalog.of([...])`` or
        ``Catalog.from_folders(app_root)``).
    environ : Mapping[str, str]
        Where the app settings are; the process environment by default.
    blob_options : Mapping[str, Any], optional
        More keyword arguments for the Blob Storage client.
    route_prefix : str
        Where the operator routes go, under the host's ``/api``: the page at
        ``route_prefix``, an orchestrator's list at ``route_prefix/{functionName}``, the
        contract at ``route_prefix/openapi.yaml`` (``singletons`` by default). The start,
        status and stop route is ``orchestrators/{functionName}/{instanceId}`` always.
    clock : callable
        The monotonic clock the start locks reckon their leases on (``time.monotonic``;
        a test gives one it can move on, as a paused process finds it).
    """

    def __init__(
        self,
        catalog: Catalog,
        environ: Mapping[str, str] = os.environ,
        blob_options: Optional[Mapping[str, Any]] = None,
        *,
        route_prefix: str = DEFAULT_ROUTE_PREFIX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """See the class docstring (ValueError for a route prefix it cannot take)."""
        self.catalog = catalog
        self._clock = clock
        self.routes = Routes(route_prefix)
        self._environ = environ
        self._blob_options = blob_options
        self._current: Optional[Root] = None

    def _root(self) -> Root:
        """The running event loop's composition root, made on first use (private: the
        handlers, the client and :mod:`durable_singleton.job` reach the app through it;
        tests through tests/support/app.py's ``root_of``).

        Raises ConfigurationError (answered 500 ``misconfigured``) when a setting is
        wrong; nothing is kept then, so the next call reads the settings again.
        """
        root = self._current
        if root is None or root.loop is not asyncio.get_running_loop():
            root = self._current = Root(
                self._environ, self.catalog, self._blob_options, self._clock
            )
        return root

    async def close(self) -> None:
        """Finish the background lock releases and close the running loop's session
        and clients; the next use makes them anew, reading the settings again."""
        root, self._current = self._current, None
        if root is not None and root.loop is asyncio.get_running_loop():
            await root.close()

    # -- the functions ------------------------------------------------------------------

    async def http_start(self, req: func.HttpRequest, binding: str) -> func.HttpResponse:
        """Answer ``POST /api/orchestrators/{functionName}/{instanceId}``.

        ``binding`` is the ``durableClient`` binding's JSON. Returns 202 started, 200
        existing instance used, or a problem+json answer (docs/http-api.md).
        """
        return await self._http(req, binding, "HttpStartSingle", "http", start)

    async def http_instance(self, req: func.HttpRequest, binding: str) -> func.HttpResponse:
        """Answer ``GET`` (status) or ``DELETE`` (stop) on the same route."""
        return await self._http(req, binding, "SingletonInstance", "instance", status_or_stop)

    async def http_limited_start(self, req: func.HttpRequest, binding: str) -> func.HttpResponse:
        """Answer ``POST /api/limits/{functionName}/{key}``: 202 started (in a slot of the
        key) or queued (follow ``requestUri``), or a problem+json answer (docs/http-api.md)."""
        return await self._http(req, binding, "HttpStartLimited", "limited", limited.start)

    async def http_limited_request(self, req: func.HttpRequest, binding: str) -> func.HttpResponse:
        """Answer ``GET`` (where it is) or ``DELETE`` (cancel it while it waits) on
        ``/api/limits/{functionName}/{key}/requests/{requestId}``."""
        return await self._http(req, binding, "LimitedRequest", "limited-request", limited.request)

    async def http_list(self, req: func.HttpRequest, binding: str) -> func.HttpResponse:
        """Answer ``GET /api/singletons/{functionName}``: a page of its instances
        (``?status=``, ``?top=``, ``?continuationToken=``; docs/http-api.md)."""
        return await self._http(req, binding, "SingletonList", "list", list_instances)

    async def http_page(self, req: func.HttpRequest, binding: str) -> func.HttpResponse:
        """Answer ``GET /api/singletons``: the page that shows every singleton of the app
        (docs/operate.md)."""
        return await self._http(req, binding, "SingletonsPage", "page", page)

    async def _http(
        self, req: func.HttpRequest, binding: str, source: str, trigger: str, work: Work
    ) -> func.HttpResponse:
        # One invocation (span, answer to every failure, metrics, log line) around ``work``.
        return await answer(self._root, req, binding, source, trigger, work, self.routes)

    async def timer_tick(
        self, timer: func.TimerRequest, binding: str, prefix: str = "SINGLETON_SCHEDULE"
    ) -> None:
        """Run one tick of the schedule whose app settings start with ``prefix``."""
        await handle_tick(self._root, timer, binding, prefix)

    async def retention_tick(
        self, timer: func.TimerRequest, binding: str
    ) -> Optional[RetentionReport]:
        """Run one tick of the retention timer (``SINGLETON_RETENTION_*``, off by
        default; docs/operate.md); returns what it removed, None when it did not run."""
        return await handle_retention_tick(self._root, timer, binding)

    async def limit_sweep(self, timer: func.TimerRequest, binding: str) -> Optional[SweepReport]:
        """Run one tick of SingletonLimitSweep, which keeps the queues of keys with a limit
        moving when an instance ended without passing its slot on (failed, terminated,
        purged); returns what it did, None when it could not run."""
        return await handle_limit_sweep(self._root, timer, binding)

    async def next_run(self, request: Mapping[str, Any]) -> Any:
        """Carry out one request of SingletonNextRun, the activity through which a job
        that takes next runs takes its next run (and begins a waiting one)."""
        root = self._root()
        return await handle_next_run(root.next_runs(), dict(request), root.queues())

    def openapi(self) -> func.HttpResponse:
        """200: the HTTP contract (OpenAPI 3.1, YAML), its operator paths under this
        app's route prefix."""
        return answers.openapi_document(self.routes.prefix, self.catalog.has_limits())

    # -- the client, for functions of an app's own -----------------------------------------

    def client(self, binding: str) -> SingletonClient:
        """A :class:`SingletonClient` (start, status, list, stop) through the
        ``durableClient`` binding's JSON ``binding``, in this event loop."""
        return SingletonClient(self._root(), binding)

    def answer(
        self,
        result: Union[Outcome, BaseException],
        instance_id: str,
        req: func.HttpRequest,
        binding: str,
        reuse: Optional[Reuse] = None,
    ) -> func.HttpResponse:
        """The HTTP answer HttpStartSingle gives for what :meth:`SingletonClient.start`
        returned or raised.

        ``reuse`` is the policy the start was given (the settings' default if None).
        """
        root = self._root()
        links = links_for(root.settings.management_links, req, root.durable(binding).binding)
        if isinstance(result, BaseException):
            return answers.problem_response(answers.for_failure(result, links))
        return answers.for_outcome(result, instance_id, links, reuse or root.settings.reuse)
