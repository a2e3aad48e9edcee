"""The app with telemetry configured as the Functions Python worker configures it in
Azure, for the test that checks what reaches Application Insights.

Run as ``python -m tests.support.telemetry_worker RPC_BASE_URL`` with
``APPLICATIONINSIGHTS_CONNECTION_STRING`` aimed at the loopback receiver and the app
settings in the environment. It initialises the Azure Monitor distro through the
runtime's own ``initialize_azure_monitor`` (what ``PYTHON_APPLICATIONINSIGHTS_ENABLE_
TELEMETRY=true`` does), then sends two starts of one id at once (one starts, the
other waits for its lock and is refused), a start of ``tel-stuck`` (the test made it a
stuck Pending instance), and a start while storage is down, each with a function key in
its URL; flushes, and prints the status codes, sorted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any, List

from azure_functions_runtime_v1.otel import initialize_azure_monitor


async def requests(rpc_base_url: str) -> List[int]:
    """The three requests, through the v1 app's SingletonApp."""
    from singleton_app import app
    from tests.support.durable_double import starter_binding
    from tests.support.requests import start_request

    starter = starter_binding(rpc_base_url)

    def request(instance_id: str) -> Any:
        return start_request("SingletonOrchestrator", instance_id, query="code=FUNCTIONKEY1")

    racing = await asyncio.gather(*[app.http_start(request("tel-job"), starter) for _ in "ab"])
    codes = [response.status_code for response in racing]
    codes.append((await app.http_start(request("tel-stuck"), starter)).status_code)
    await app.close()
    # Storage down: a connection string aimed at a port where nothing listens.
    os.environ["AzureWebJobsStorage"] = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    codes.append((await app.http_start(request("tel-outage"), starter)).status_code)
    await app.close()
    return sorted(codes)


def flush() -> None:
    """Export everything now: spans, metrics, logs."""
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        provider.force_flush()  # type: ignore[attr-defined]
    get_logger_provider().force_flush()  # type: ignore[attr-defined]


if __name__ == "__main__":
    # The level host.json gives the app's logs (default: Information).
    logging.getLogger().setLevel(logging.INFO)
    initialize_azure_monitor()
    result = asyncio.run(requests(sys.argv[1]))
    flush()
    print(json.dumps(result))
