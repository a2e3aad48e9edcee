"""A loopback stand-in for Application Insights' ingestion endpoint.

The Azure Monitor exporter posts its envelopes to ``<IngestionEndpoint>/v2.1/track`` (a
JSON array, or JSON lines; gzip when it says so); this keeps every envelope and answers
as the service does, each item accepted.
"""

from __future__ import annotations

import gzip
import json
from typing import Any, Dict, List, Optional

from aiohttp import web

from tests.support.loop_thread import LoopThread


class IngestionReceiver:
    """Receives envelopes on ``http://127.0.0.1:{port}/``."""

    def __init__(self) -> None:
        """Nothing received yet."""
        self.envelopes: List[Dict[str, Any]] = []
        self.port = 0
        self._serving = LoopThread("ingestion")
        self._runner: Optional[web.AppRunner] = None

    @property
    def connection_string(self) -> str:
        """An Application Insights connection string aimed at this receiver."""
        return (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint=http://127.0.0.1:{self.port}/"
        )

    def start(self) -> "IngestionReceiver":
        """Serve from a background thread."""
        self._serving.start(self._open)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            self._serving.stop(self._runner.cleanup)

    def of_type(self, base_type: str) -> List[Dict[str, Any]]:
        """The envelopes whose ``data.baseType`` is ``base_type`` (RequestData, ...)."""
        return [e for e in self.envelopes if e.get("data", {}).get("baseType") == base_type]

    async def _open(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes([web.post("/{tail:.*}", self._track)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _track(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8").strip()
        items = (
            json.loads(text)
            if text.startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
        self.envelopes.extend(items)
        return web.json_response(
            {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        )
