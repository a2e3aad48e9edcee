"""The graceful Stop, as an orchestrator takes it.

The app asks an instance to stop gracefully (``DELETE`` without ``mode``,
``onConflict=stopExisting``, a schedule's ``cancelOther``) by raising the external event
:data:`STOP_EVENT` on it; its data is a JSON object, which only the next-run protocol
reads (durable_singleton._next_run). An orchestrator takes the Stop when it waits for that
event beside its work and ends when it comes; the app offers it only to orchestrators that
say they do (``stops`` in the catalog), since a Stop that nothing reads leaves the instance
running.
"""

from __future__ import annotations

from typing import Any

#: The external event of a graceful stop.
STOP_EVENT = "Stop"


def stop_requested(context: Any) -> Any:
    """The task that completes when the app asks this instance to stop gracefully.

    Make it once, before the work, and wait for it beside each piece of work; when it is
    the one that completed, finish what must be finished and return::

        stop = durable_singleton.stop_requested(context)
        for item in context.get_input():
            work = context.call_activity("work", item)
            if (yield context.task_any([work, stop])) is stop:
                return "stopped"

    It is ``context.wait_for_external_event(STOP_EVENT)``.
    """
    return context.wait_for_external_event(STOP_EVENT)
