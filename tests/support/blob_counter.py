"""Count the Blob Storage requests the app sends, through the Storage SDK's own hook."""

from __future__ import annotations

from typing import Any, Optional

from durable_singleton import SingletonApp


class RequestCounter:
    """The Storage SDK's ``raw_request_hook``: called for every HTTP request the Blob
    client sends, each retry included (the hook runs after the retry policy)."""

    def __init__(self) -> None:
        """Start at zero."""
        self.requests = 0
        #: The app whose requests are counted, when a test made one.
        self.app: Optional[SingletonApp] = None

    def __call__(self, request: Any) -> None:
        """Count one request."""
        self.requests += 1


def counted_app(app: SingletonApp, counter: RequestCounter) -> SingletonApp:
    """A SingletonApp like ``app`` (same orchestrators and settings) whose Blob Storage
    client reports every request to ``counter``."""
    return SingletonApp(app.catalog, blob_options={"raw_request_hook": counter})
