"""Count the Blob Storage requests the app sends, through the Storage SDK's own hook."""

from __future__ import annotations

from typing import Any, Callable

from durable_singleton import _storage as storage


class RequestCounter:
    """The Storage SDK's ``raw_request_hook``: called for every HTTP request the Blob
    client sends, each retry included (the hook runs after the retry policy)."""

    def __init__(self) -> None:
        """Start at zero."""
        self.requests = 0

    def __call__(self, request: Any) -> None:
        """Count one request."""
        self.requests += 1


def count_app_requests(counter: RequestCounter) -> Callable[[], None]:
    """Make the app's storage clients report to ``counter``; return the undo.

    Only clients built afterwards count: close the shared ones first
    (``durable_singleton._storage.close_shared``).
    """
    original = storage.blob_service_client

    def counted(connection: storage.StorageConnection, **options: Any) -> Any:
        return original(connection, raw_request_hook=counter, **options)

    storage.blob_service_client = counted

    def undo() -> None:
        storage.blob_service_client = original

    return undo
