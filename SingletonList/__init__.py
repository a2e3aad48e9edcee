"""SingletonList: GET /api/orchestrators/{functionName}.

A caller with the function key lists the orchestrator's instances, paged, without the
Durable extension's system key (durable_singleton); this module only binds it.
"""

import azure.functions as func

from singleton_app import app


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Answer a page of the orchestrator's instances (``?status=``, ``?top=``,
    ``?continuationToken=``)."""
    return await app.http_list(req, starter)
