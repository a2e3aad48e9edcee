"""Shutting down the HTTP clients the app shares across requests."""

from __future__ import annotations

from azure.durable_functions.models.utils import http_utils

from tests.support.app import app


async def close_app_clients() -> None:
    """Finish background lease releases, then close the app's session and storage client
    and the Durable SDK's module-level session (the check-then-start starter of the
    benchmark uses the SDK's client; the SDK offers no public close)."""
    await app.close()
    await http_utils._close_session()
