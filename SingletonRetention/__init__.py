"""SingletonRetention: the opt-in cleanup timer.

Off unless SINGLETON_RETENTION_ENABLED=true. Each tick, bounded in calls and time,
purges finished instances of this app's orchestrators older than
SINGLETON_RETENTION_DAYS, deletes the staged item blobs of jobs no longer running and
the lock blobs of ids unused that long (docs/operate.md, "Retention"). The schedule is
the NCRONTAB expression in SINGLETON_RETENTION_SCHEDULE.
"""

import azure.functions as func

from singleton_app import app


async def main(timer: func.TimerRequest, starter: str) -> None:
    """Run one retention tick."""
    await app.retention_tick(timer, starter)
