"""OpenApiDocument: GET /api/openapi.yaml, the app's HTTP contract (OpenAPI 3.1).

Azure API Management imports it from this URL (docs/http-api.md).
"""

import azure.functions as func

from singleton_app import app


def main(req: func.HttpRequest) -> func.HttpResponse:
    """Return the OpenAPI document the package ships."""
    return app.openapi()
