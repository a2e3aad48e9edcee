"""Shutting down the HTTP clients the app shares across requests."""
from __future__ import annotations

from azure.durable_functions.models.utils import http_utils

from singleton.lock import wait_for_releases
from singleton.storage import close_shared


async def close_app_clients() -> None:
    """Finish background lease releases, then close the app's storage client and the
    Durable SDK's module-level session (the SDK offers no public close)."""
    await wait_for_releases()
    await close_shared()
    await http_utils._close_session()
