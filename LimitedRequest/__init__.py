"""LimitedRequest: GET or DELETE /api/limits/{functionName}/{key}/requests/{requestId}.

Where a start with a limit is (queued at its position, started, cancelled), and its
cancel while it waits; this module only binds it.
"""

import azure.functions as func

from singleton_app import app


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Answer 200 with the request's state, or problem+json."""
    return await app.http_limited_request(req, starter)
