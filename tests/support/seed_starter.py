"""The usual check-then-start starter (the Durable Functions singleton sample), as a baseline.

Its logic is kept: read the status, start if there is no instance or it ended
(Completed, Failed, Terminated), else 409. Two of its bugs are fixed so it can be
measured fairly: the status test (``get_status`` never returns None; an unknown id
gives a falsy status) and the input (the raw body bytes are not JSON-serializable, so
it is decoded first). It has no lock: racing callers can all be told "started".
"""

from __future__ import annotations

import json

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions import OrchestrationRuntimeStatus as Status

RESTARTABLE = (Status.Completed, Status.Failed, Status.Terminated)


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Start the orchestrator unless an instance with the id exists and has not ended."""
    client = df.DurableOrchestrationClient(starter)
    instance_id = req.route_params["instanceId"]
    function_name = req.route_params["functionName"]

    existing = await client.get_status(instance_id)
    if not existing or existing.runtime_status in RESTARTABLE:
        body = req.get_body()
        await client.start_new(function_name, instance_id, json.loads(body) if body else None)
        return client.create_check_status_response(req, instance_id)
    return func.HttpResponse(
        f"An instance with ID '{instance_id}' already exists.", status_code=409
    )
