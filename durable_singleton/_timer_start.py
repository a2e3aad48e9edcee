"""A timer tick of a scheduled singleton: check the schedule's settings, start as
guarded, log one line (HttpStartSingle's format, headed TimerStartSingle). A past-due tick
starts at most one run, like any other."""

from __future__ import annotations

import logging
from typing import Optional, Tuple

import azure.functions as func
from opentelemetry.trace import Span

from ._invocation import RootFactory, Told, enveloped, loggable
from ._links import host_links
from ._policy import Action
from ._problems import Problem, ProblemError
from ._request import StartRequest, checked_start
from ._root import Root
from ._settings import ConfigurationError, Schedule, load_schedule
from ._starter import Outcome, start_singleton

logger = logging.getLogger("durable_singleton.timer")

#: Decision words of a tick that starts nothing on purpose.
SKIPPED = "skipped"
DISABLED = "schedule-disabled"


async def handle_tick(
    make_root: RootFactory, timer: func.TimerRequest, starter: str, prefix: str
) -> None:
    """Run one tick (``past_due`` for a catch-up) of the schedule whose settings start
    with ``prefix`` (``SINGLETON_SCHEDULE`` for the first one)."""

    async def tick(told: Told, span: Span) -> None:
        span.set_attribute("singleton.schedule", prefix)
        root = make_root()
        schedule = load_schedule(prefix, root.environ)
        if not schedule.enabled:
            told.decision = DISABLED
            return
        # Checked before anything names them: a value that breaks a rule (a connection
        # string in the wrong setting) never reaches a log or span.
        request = schedule_request(schedule, root)
        told.instance_id, told.function_name = request.instance_id, request.function_name
        span.set_attribute("singleton.instance_id", loggable(request.instance_id))
        span.set_attribute("singleton.function_name", loggable(request.function_name))
        durable = root.durable(starter)
        told.links = host_links(durable.binding)
        outcome = await start_singleton(request, durable, root)
        told.decision, told.status = _decision(outcome)
        _name_dropped(told, outcome.dropped)

    def failed(problem: Problem) -> None:
        if problem.kind == "misconfigured":
            logger.error("Schedule %s starts nothing: %s", prefix, problem.detail)
        _name_dropped(told, problem.members.get("droppedRequestId"))

    past_due = str(timer.past_due).lower()
    told = Told(extra=f" trigger=timer schedule={loggable(prefix)} past_due={past_due}")
    await enveloped("timer", "TimerStartSingle", tick, told, on_problem=failed)


def _name_dropped(told: Told, dropped: Optional[str]) -> None:
    """A next run the tick's replace dropped is named on its line: no caller hears of it."""
    if dropped is not None:
        told.extra += f" dropped={dropped}"


#: The setting of a schedule that each problem of its start request is about.
_SETTING_OF = {
    "unknown-orchestrator": "ORCHESTRATOR",
    "invalid-instance-id": "INSTANCE_ID",
    "invalid-body": "INPUT",
    "body-too-large": "INPUT",
    "invalid-input": "INPUT",
}


def schedule_request(schedule: Schedule, root: Root) -> StartRequest:
    """The start a tick makes, checked by the one constructor every start goes through
    (:func:`~durable_singleton._request.checked_start`).

    Raises ConfigurationError naming the setting that breaks a rule, never its value.
    """
    try:
        return checked_start(
            root.catalog,
            root.settings,
            schedule.orchestrator,
            schedule.instance_id,
            raw=schedule.input_json.encode("utf-8"),
            on_conflict=schedule.overlap.on_conflict,
            reuse=schedule.reuse,
        )
    except ProblemError as error:
        # The title names the rule; the detail may repeat the value, so it stays out.
        setting = _SETTING_OF.get(error.problem.kind, "OVERLAP")
        raise ConfigurationError(
            f"App setting {schedule.prefix}_{setting} is not valid: {error.problem.title}."
        ) from None


def _decision(outcome: Outcome) -> Tuple[str, int]:
    """A tick's decision word and the status an HTTP start would have had."""
    if outcome.started or outcome.action is Action.BUFFER:
        return outcome.action.value, 202
    if outcome.action is Action.REJECT_ACTIVE:
        return SKIPPED, 409
    return outcome.action.value, 409
