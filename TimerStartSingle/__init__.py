"""TimerStartSingle: a scheduled singleton, started on each tick of a timer.

The schedule is the NCRONTAB expression in app setting SINGLETON_SCHEDULE; what it
starts, and what it does when the previous run is still active, are the other
SINGLETON_SCHEDULE_* settings, described in docs/jobs.md,
"Scheduled singletons (TimerStartSingle)". Every tick goes through the same guarded
start as HttpStartSingle.

For a second schedule, copy this folder, and in the copy set the prefix below and the
``%...%`` in function.json to a name of its own.
"""

import azure.functions as func

from singleton_app import app

SETTINGS_PREFIX = "SINGLETON_SCHEDULE"


async def main(timer: func.TimerRequest, starter: str) -> None:
    """Start the scheduled orchestrator unless the overlap policy says otherwise."""
    await app.timer_tick(timer, starter, SETTINGS_PREFIX)
