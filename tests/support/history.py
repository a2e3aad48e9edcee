"""Orchestration histories as the Durable extension sends them to an orchestrator.

``SingletonOrchestrator.main`` takes the JSON the host passes (history, input,
instance id, schema version); these helpers write such JSON so tests drive the
orchestrator through the SDK's real replay engine.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Dict, List

from azure.durable_functions.models.history import HistoryEventType

ORCHESTRATOR = "SingletonOrchestrator"
START = datetime.datetime(2026, 1, 5, 3, 0, 0, tzinfo=datetime.timezone.utc)

# The history event types, from the SDK's own enum (they are the extension's numbers).
EXECUTION_STARTED = HistoryEventType.EXECUTION_STARTED
TASK_SCHEDULED = HistoryEventType.TASK_SCHEDULED
TASK_COMPLETED = HistoryEventType.TASK_COMPLETED
TASK_FAILED = HistoryEventType.TASK_FAILED
TIMER_CREATED = HistoryEventType.TIMER_CREATED
TIMER_FIRED = HistoryEventType.TIMER_FIRED
ORCHESTRATOR_STARTED = HistoryEventType.ORCHESTRATOR_STARTED
ORCHESTRATOR_COMPLETED = HistoryEventType.ORCHESTRATOR_COMPLETED
EVENT_RAISED = HistoryEventType.EVENT_RAISED


def iso(moment: datetime.datetime) -> str:
    """The extension's timestamp format."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class History:
    """A growing history, one episode at a time.

    Each episode opens with OrchestratorStarted (whose timestamp is the
    orchestrator's ``current_utc_datetime``) and the test closes it by adding what
    happened since the last one. Sequence numbers of scheduled tasks and timers
    count up from 0 in scheduling order, as the SDK numbers them.
    """

    def __init__(
        self, input_: Any, instance_id: str = "nightly-import", now: datetime.datetime = START
    ):
        """Begin with the first episode: OrchestratorStarted and ExecutionStarted."""
        self.instance_id = instance_id
        self.input = input_
        self.now = now
        self.events: List[Dict[str, Any]] = []
        self._next_sequence = 0
        self._add(ORCHESTRATOR_STARTED)
        self._add(
            EXECUTION_STARTED,
            Name=ORCHESTRATOR,
            Version="",
            Input=None if input_ is None else json.dumps(input_),
        )

    def _add(self, event_type: int, event_id: int = -1, **fields: Any) -> None:
        self.events.append(
            {
                "EventType": event_type,
                "EventId": event_id,
                "IsPlayed": False,
                "Timestamp": iso(self.now),
                **fields,
            }
        )

    def new_episode(self, seconds_later: float = 1.0) -> "History":
        """Close the running episode and open the next one, ``seconds_later``."""
        self._add(ORCHESTRATOR_COMPLETED)
        for event in self.events:
            event["IsPlayed"] = True
        self.now += datetime.timedelta(seconds=seconds_later)
        self._add(ORCHESTRATOR_STARTED)
        return self

    def scheduled(self, activity: str) -> int:
        """Record that the orchestrator scheduled ``activity``; return its sequence number."""
        sequence = self._take_sequence()
        self._add(TASK_SCHEDULED, sequence, Name=activity)
        return sequence

    def completed(self, sequence: int, result: Any) -> "History":
        """Record that task ``sequence`` returned ``result``."""
        self._add(TASK_COMPLETED, TaskScheduledId=sequence, Result=json.dumps(result))
        return self

    def failed(self, sequence: int, reason: str) -> "History":
        """Record that task ``sequence`` failed."""
        self._add(TASK_FAILED, TaskScheduledId=sequence, Reason=reason, Details="")
        return self

    def timer_created(self, fire_at: datetime.datetime) -> int:
        """Record a durable timer; return its sequence number."""
        sequence = self._take_sequence()
        self._add(TIMER_CREATED, sequence, FireAt=iso(fire_at))
        return sequence

    def timer_fired(self, sequence: int, fire_at: datetime.datetime) -> "History":
        """Record that timer ``sequence`` fired."""
        self._add(TIMER_FIRED, TimerId=sequence, FireAt=iso(fire_at))
        return self

    def event_raised(self, name: str, data: Any = None) -> "History":
        """Record an external event (``sendEventPostUri``)."""
        self._add(EVENT_RAISED, Name=name, Input=json.dumps(data))
        return self

    def _take_sequence(self) -> int:
        sequence = self._next_sequence
        self._next_sequence += 1
        return sequence

    def context(self) -> str:
        """The orchestration trigger's JSON, as the host passes it to ``main``."""
        return json.dumps(
            {
                "history": self.events,
                "input": None if self.input is None else json.dumps(self.input),
                "instanceId": self.instance_id,
                "isReplaying": False,
                "parentInstanceId": None,
                "upperSchemaVersion": 2,
                "maximumShortTimerDuration": "6.00:00:00",
                "longRunningTimerIntervalDuration": "3.00:00:00",
            }
        )
