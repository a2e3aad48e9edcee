"""The v1 app's HTTP functions served on loopback, routed as the Functions host routes
them: each function folder's httpTrigger ``route`` and ``methods`` under ``/api``, at the
function key (``code`` query parameter or ``x-functions-key`` header; 401 without it),
each invocation given the ``durableClient`` binding aimed at the Durable double.

For tests that need a real HTTP client, such as the browser test of the overview page.
"""

from __future__ import annotations

import json
from typing import Awaitable, Callable, Dict, Optional

import azure.functions as func
from aiohttp import web

from durable_singleton import Catalog, SingletonApp
from tests.support.app import APP_ROOT
from tests.support.loop_thread import LoopThread

Handler = Callable[[SingletonApp, func.HttpRequest, str], Awaitable[func.HttpResponse]]

#: What each HTTP function folder's ``main`` calls on the app's SingletonApp.
HANDLERS: Dict[str, Handler] = {
    "HttpStartSingle": lambda app, req, starter: app.http_start(req, starter),
    "SingletonInstance": lambda app, req, starter: app.http_instance(req, starter),
    "SingletonList": lambda app, req, starter: app.http_list(req, starter),
    "SingletonsPage": lambda app, req, starter: app.http_page(req, starter),
    "HttpStartLimited": lambda app, req, starter: app.http_limited_start(req, starter),
    "LimitedRequest": lambda app, req, starter: app.http_limited_request(req, starter),
}


class WebFront:
    """The app on ``http://127.0.0.1:{port}/api/...``, on a loop thread of its own."""

    def __init__(self, starter: str, key: str) -> None:
        """Give every invocation the binding JSON ``starter``; accept function key ``key``."""
        self.starter = starter
        self.key = key
        self.app = SingletonApp(Catalog.from_folders(APP_ROOT))
        self.port = 0
        self._serving = LoopThread("web-front")
        self._runner: Optional[web.AppRunner] = None

    @property
    def origin(self) -> str:
        """Where it serves."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "WebFront":
        """Serve every HTTP function of the app's folders."""
        self._serving.start(self._open)
        return self

    def stop(self) -> None:
        """Close the app's clients and stop serving."""
        if self._runner is not None:
            runner = self._runner

            async def closing() -> None:
                await self.app.close()
                await runner.cleanup()

            self._serving.stop(closing)

    async def _open(self) -> None:
        routes = []
        for definition in sorted(APP_ROOT.glob("*/function.json")):
            name = definition.parent.name
            for binding in json.loads(definition.read_text())["bindings"]:
                if binding["type"] == "httpTrigger" and name in HANDLERS:
                    for method in binding["methods"]:
                        path = "/api/" + binding["route"]
                        routes.append(web.route(method.upper(), path, self._handler(name)))
        application = web.Application()
        application.add_routes(routes)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def _handler(self, function: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            given = request.query.get("code") or request.headers.get("x-functions-key")
            if given != self.key:
                return web.Response(status=401)
            req = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                body=await request.read(),
                headers=dict(request.headers),
                params=dict(request.query),
                route_params=dict(request.match_info),
            )
            answer = await HANDLERS[function](self.app, req, self.starter)
            headers = dict(answer.headers)
            headers.pop("Content-Length", None)
            return web.Response(status=answer.status_code, body=answer.get_body(), headers=headers)

        return handle
