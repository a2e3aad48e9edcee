"""The graceful Stop, as an orchestrator takes it: the external event :data:`STOP_EVENT`,
which the app raises only on orchestrators that say they wait for it (``stops``)."""

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
