"""SingletonsPage: GET /api/singletons.

One HTML page that shows every singleton of the app, with Stop and Terminate; it calls
the app's own API with the function key it was opened with (durable_singleton); this
module only binds it.
"""

import azure.functions as func

from singleton_app import app


async def main(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Answer the page (``?refresh=`` seconds between its reads of the lists)."""
    return await app.http_page(req, starter)
