"""HttpStartLimited: POST /api/limits/{functionName}/{key}.

Starts the orchestrator for the key while fewer than its limit of the key's instances
are active, else queues the request (durable_singleton's limit per key); this module
only binds it.
"""

import azure.functions as func

from singleton_app import app


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Answer a start with a limit: 202 started or queued, or problem+json."""
    return await app.http_limited_start(req, starter)
