"""HttpStartSingle: POST /api/orchestrators/{functionName}/{instanceId}.

Starts the orchestrator under that instance id only when no instance with the id is
active. The work happens in :mod:`durable_singleton._starter`; this module only binds it.
"""

import azure.functions as func

from durable_singleton._http_start import handle_start_request


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Answer a start request: 202 started, 200 existing used, or problem+json."""
    return await handle_start_request(req, starter)
