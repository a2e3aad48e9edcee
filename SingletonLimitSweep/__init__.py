"""SingletonLimitSweep: every 30 s, keeps the queues of keys with a limit moving.

A slot whose instance ended without passing it on (failed, terminated, purged) is freed
and the key's next request started in it (docs/jobs.md, "A limit per key").
"""

import azure.functions as func

from singleton_app import app


async def main(timer: func.TimerRequest, starter: str) -> None:
    """Run one tick of the sweep."""
    await app.limit_sweep(timer, starter)
