"""One app instance's retention tick, for the test that runs two at once.

Run as ``python -m tests.support.retention_worker RPC_BASE_URL START_AT DAYS_AHEAD`` with
the app settings (storage connection, containers, SINGLETON_RETENTION_*) in the
environment. At wall-clock START_AT it runs one tick reckoned DAYS_AHEAD days from now,
and prints what it removed as JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import sys
import time
from typing import Any, Dict

from durable_singleton._retention import run_retention
from durable_singleton._settings import load_retention
from singleton_app import app
from tests.support.app import root_of
from tests.support.durable_double import starter_binding


async def tick(rpc_base_url: str, start_at: float, days_ahead: float) -> Dict[str, Any]:
    """One retention tick of this process's app, from ``start_at``."""
    root = root_of(app)
    durable = root.durable(starter_binding(rpc_base_url))
    now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days_ahead)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    try:
        report = await run_retention(root, durable, load_retention(root.environ), now)
    finally:
        await app.close()
    return dataclasses.asdict(report)


if __name__ == "__main__":
    url, moment, ahead = sys.argv[1:4]
    print(json.dumps(asyncio.run(tick(url, float(moment), float(ahead)))))
