"""OpenApiDocument: GET /api/openapi.yaml, the app's HTTP contract (OpenAPI 3.1).

Azure API Management imports it from this URL (README, "HTTP API").
"""

import azure.functions as func

from durable_singleton._answers import openapi_document


def main(req: func.HttpRequest) -> func.HttpResponse:
    """Return the OpenAPI document as it is kept in the repository."""
    return openapi_document()
