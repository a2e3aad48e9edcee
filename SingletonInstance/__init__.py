"""SingletonInstance: GET and DELETE /api/orchestrators/{functionName}/{instanceId}.

A caller with the function key reads its instance's status or stops it, without the
Durable extension's system key. The work happens in
:mod:`durable_singleton._instances`; this module only binds it.
"""

import azure.functions as func

from durable_singleton._instances import handle_instance_request


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Answer a status read (GET) or a stop (DELETE, ``?mode=terminate`` to terminate)."""
    return await handle_instance_request(req, starter)
