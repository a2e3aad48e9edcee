"""A v2 app under the v2 Python runtime in a process of its own, for tests that need
the runtime's module-level state to themselves (it indexes one app per process).

Run as ``python -m tests.support.quickstart_worker APP_DIR RPC_BASE_URL ORCHESTRATOR
STARTER``, with the app settings in the environment. The host's part is played by
tests/support/functions_host.py: the runtime indexes the app, the host's route check
takes the functions in name order. Then one guarded start
(``POST /api/orchestrators/ORCHESTRATOR/qs-job`` through ``HttpStartSingle``) and one
call of the app's own starter function STARTER
(``POST /api/orchestrators/ORCHESTRATOR``). Prints one JSON document: ``functions``
(indexed and admitted), ``refused`` (name: the host's reason), ``auth`` (each HTTP
function's ``authLevel``), ``guarded`` and ``own`` (each call's status code).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Dict

from tests.support.durable_double import starter_binding
from tests.support.functions_host import FunctionsHost

ORIGIN = "http://localhost:7071"


async def post(
    host: FunctionsHost,
    function: str,
    path: str,
    route: Dict[str, str],
    binding: str,
    starter: str,
) -> int:
    """One POST through the runtime; its status code."""
    request = host.http("POST", f"{ORIGIN}/api/{path}", {}, route)
    response = await host.invoke(function, {"req": request, binding: host.durable_client(starter)})
    assert host.succeeded(response), host.failure(response)
    return host.http_answer(response).status


async def main(app_dir: str, rpc_base_url: str, orchestrator: str, own: str) -> Dict[str, Any]:
    """Index the app, call both starters, and say what happened."""
    host = FunctionsHost(Path(app_dir), model="v2")
    assert host.succeeded(await host.init())
    assert host.succeeded(await host.index())
    auth = {}
    for name, bindings in host.raw_bindings.items():
        for text in bindings:
            document = json.loads(text)
            if document["type"] == "httpTrigger":
                auth[name] = document.get("authLevel")
    starter = starter_binding(rpc_base_url)
    route = {"functionName": orchestrator, "instanceId": "qs-job"}
    guarded = await post(
        host, "HttpStartSingle", f"orchestrators/{orchestrator}/qs-job", route, "starter", starter
    )
    mine = await post(
        host,
        own,
        f"orchestrators/{orchestrator}",
        {"functionName": orchestrator},
        "client",
        starter,
    )
    return {
        "functions": sorted(host.function_ids),
        "refused": host.refused,
        "auth": auth,
        "guarded": guarded,
        "own": mine,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:5]))))
