"""Shutting down the HTTP clients the app shares across requests."""

from __future__ import annotations

from azure.durable_functions.models.utils import http_utils

from durable_singleton._durable_transport import close_sessions
from durable_singleton._storage import close_shared


async def close_app_clients() -> None:
    """Finish background lease releases, then close the app's storage client and the
    Durable SDK's module-level session (the SDK offers no public close)."""
    await close_shared()
    await close_sessions()
    await http_utils._close_session()
