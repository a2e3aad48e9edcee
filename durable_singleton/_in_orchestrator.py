"""The next-run protocol inside an orchestrator: Stop events, a debounced run's wait, the
take at a run's end and the beginning of the next run (docs/design.md,
"Run once more (bufferOne, debounce)"). Orchestrator code is replayed, so everything here
only schedules tasks and reads history."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional

import azure.durable_functions as df
from azure.durable_functions.models.history import HistoryEventType

from ._next_run import NEXT_RUN_ACTIVITY, NEXT_RUN_RETRY, RunState, parse_time, stops
from ._stop import STOP_EVENT

#: The input member the starter sets on an orchestrator that takes next runs: which
#: request's input the run has, the task hub of its channel, and when it is due.
RUN_MEMBER = "run"


class Signals:
    """An execution's Stop events, taken as they arrive, and its calls to its channel. Every
    task the orchestrator waits on includes a wait for Stop, so the SDK hands each event to
    one of them in history order; the events not taken when an execution ends are in its
    history, and :meth:`settle` applies them (the SDK drops them at continue-as-new)."""

    def __init__(self, context: df.DurableOrchestrationContext, member: Mapping[str, Any]):
        """Read the run from the input's ``run`` member (empty: an instance the app did
        not start, which has no channel)."""
        self._context = context
        self.state = RunState(
            member.get("id") or str(context.new_uuid()),
            member.get("hub"),
            member.get("dueAt"),
            member.get("stopping") is True,
        )
        self._stop = context.wait_for_external_event(STOP_EVENT)
        self._taken = 0
        #: Called after each change, so the custom status shows it.
        self.changed: Callable[[], None] = lambda: None

    def wait(
        self, task: Any, until: Callable[[RunState], bool] = lambda _: False
    ) -> Generator[Any, Any, None]:
        """Yield until ``task`` completes or ``until`` holds, taking events meanwhile."""
        yield from self.wait_any([task], until)

    def wait_any(
        self, tasks: List[Any], until: Callable[[RunState], bool] = lambda _: False
    ) -> Generator[Any, Any, None]:
        """Yield until one of ``tasks`` completes or ``until`` holds, taking events."""
        while not any(task.is_completed for task in tasks) and not until(self.state):
            yield self._context.task_any([*tasks, self._stop])
            self._take()

    def result(self, task: Any) -> Generator[Any, Any, Any]:
        """Wait for ``task`` as :meth:`wait` does; return its result (or raise)."""
        yield from self.wait(task)
        return (yield task)

    def next_run(self, request: Dict[str, Any]) -> Generator[Any, Any, Any]:
        """Send ``request`` to SingletonNextRun for this instance's channel; return its
        answer."""
        request = {**request, "hub": self.state.hub, "instanceId": self._context.instance_id}
        task = self._context.call_activity_with_retry(NEXT_RUN_ACTIVITY, NEXT_RUN_RETRY, request)
        return (yield from self.result(task))

    def _take(self) -> None:
        if self._stop.is_completed:
            self.state = self.state.with_stop(self._stop.result)
            self._stop = self._context.wait_for_external_event(STOP_EVENT)
            self._taken += 1
            self.changed()

    def _stop_events(self) -> List[Any]:
        """The data of every Stop event in this execution's history, in order."""
        return [
            _decoded_input(event)
            for event in self._context.histories
            if event.event_type == HistoryEventType.EVENT_RAISED
            and getattr(event, "Name", None) == STOP_EVENT
        ]

    def _folded(self) -> RunState:
        state = self.state
        for data in self._stop_events()[self._taken :]:
            state = state.with_stop(data)
        return state

    def stop_pending(self) -> bool:
        """Whether an untaken event stops this run. Called only where "no" ends the execution (it
        continues as new), so a "no" is never replayed and a "yes" stays "yes": deterministic."""
        return self._folded().stopping and not self.state.stopping

    def stops_for(self, run: str) -> bool:
        """Whether a Stop in this execution's history is meant for run ``run`` (the
        one it begins): only right before the execution ends, as :meth:`settle`."""
        return any(stops(data, run) for data in self._stop_events())

    def settle(self) -> None:
        """Apply the untaken events: only right before the execution ends, so no
        replay ever sees the history beyond this point."""
        self.state = self._folded()
        self._taken = len(self._stop_events())
        self.changed()

    def dropped(self) -> None:
        """The channel says a Stop dropped the waiting run (its event may not be here
        yet): the run is stopped before it began."""
        self.state = dataclasses.replace(self.state, stopping=True)
        self.changed()

    def moved(self, due: str) -> None:
        """The waiting run's due time moved to ``due``."""
        self.state = dataclasses.replace(self.state, due_at=due)
        self.changed()


def stopping(state: RunState) -> bool:
    """Whether a Stop for the run has been taken (a :meth:`Signals.wait` condition)."""
    return state.stopping


def wait_until_due(
    context: df.DurableOrchestrationContext, signals: Signals
) -> Generator[Any, Any, Optional[Dict[str, Any]]]:
    """A debounced run waits until it is due, then asks its channel: requests meanwhile
    may have replaced its input and moved its due time (it waits again). Returns the run
    to begin now (``{"request", "input"}``), or None when a Stop ended it first."""
    due = signals.state.due_at
    while True:
        assert due is not None
        timer = context.create_timer(parse_time(due))
        yield from signals.wait(timer, until=stopping)
        if signals.state.stopping:
            if not timer.is_completed:
                timer.cancel()  # so the finished instance leaves nothing pending
            return None
        decision = yield from signals.next_run({"op": "begin"})
        if "wait" in decision:
            due = decision["wait"]
            signals.moved(due)
            continue
        if "begin" in decision:
            return dict(decision["begin"])
        signals.dropped()  # a Stop dropped the run before it began
        return None


def end_run(
    context: df.DurableOrchestrationContext, signals: Signals
) -> Generator[Any, Any, bool]:
    """The run has ended: take the id's next run and begin it (the orchestrator continues
    as new), or settle the signals; True when there was none (or no channel: an instance
    the app did not start), and the orchestrator completes with the run's output."""
    if signals.state.hub is not None:
        taken = yield from signals.next_run({"op": "take", "run": signals.state.id})
        if taken is not None:
            begin(context, signals, taken)
            return False
    signals.settle()
    return True


def begin(
    context: df.DurableOrchestrationContext, signals: Signals, run: Mapping[str, Any]
) -> None:
    """Begin run ``{"request", "input"}`` as a new execution, stopping at once if a
    Stop meant for it has arrived already."""
    signals.settle()
    member: Dict[str, Any] = {"id": run["request"], "hub": signals.state.hub}
    if signals.stops_for(run["request"]):
        member["stopping"] = True
    given = run["input"]
    # Not the app's (it validates): the run then fails clearly on its input.
    context.continue_as_new({**given, RUN_MEMBER: member} if isinstance(given, dict) else given)


def run_member(run: RunState) -> Dict[str, Any]:
    """The ``run`` member carried to the next execution of the same run."""
    member: Dict[str, Any] = {"id": run.id}
    if run.hub is not None:
        member["hub"] = run.hub
    return member


def _decoded_input(event: Any) -> Any:
    raw = getattr(event, "Input", None)
    return json.loads(raw) if isinstance(raw, str) else raw
