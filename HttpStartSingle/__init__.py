"""HttpStartSingle: POST /api/orchestrators/{functionName}/{instanceId}.

Starts the orchestrator under that instance id only when no instance with the id is
active (durable_singleton's guarded start); this module only binds it.
"""

import azure.functions as func

from singleton_app import app


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Answer a start request: 202 started, 200 existing used, or problem+json."""
    return await app.http_start(req, starter)
