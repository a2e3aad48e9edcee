"""SingletonInstance: GET and DELETE /api/orchestrators/{functionName}/{instanceId}.

A caller with the function key reads its instance's status or stops it, without the
Durable extension's system key (durable_singleton); this module only binds it.
"""

import azure.functions as func

from singleton_app import app


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Answer a status read (GET) or a stop (DELETE, ``?mode=terminate`` to terminate)."""
    return await app.http_instance(req, starter)
