"""Run once more: the protocol between the starter and a job that accepts next runs.

A request with ``onConflict=bufferOne`` (or ``debounceSeconds``) for an active
instance does not start anything: the starter raises :data:`NEXT_RUN_EVENT` on the
instance, and the job keeps the request's input as its *next run* (latest wins) and
continues as new with it when the current run ends, under the same id. A debounced
start creates the instance with a run that first waits until its due time.

Each side of the protocol is here, once: the event and the ``run`` member of a
start's input the starter sends (:func:`next_run_event`, :func:`stop_event`,
:func:`start_member`); the fold of events a job applies (:class:`RunState`); and the
members of the job's custom status through which the starter learns that its input
was taken (:class:`RunView`).

Every request carries an id (``requestId`` in the answers). A job's *run* is named by
the id of the request whose input it runs, so the status shows whose input runs now
(``run``) and whose runs next (``buffered``). Events name the run they were meant
for: one that arrives after that run ended is ignored, so an event raised into a run
that ended before taking it can never make a later run take the input again.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, replace
from typing import Any, Dict, Optional

#: The event a next run is sent with.
NEXT_RUN_EVENT = "NextRun"

#: debounceSeconds and debounceMaxSeconds ranges; debounceMaxSeconds defaults to
#: this many times debounceSeconds (at most its maximum).
MIN_DEBOUNCE_SECONDS = 1
MAX_DEBOUNCE_SECONDS = 3600
MAX_DEBOUNCE_MAX_SECONDS = 86400
DEBOUNCE_MAX_FACTOR = 10


def iso(moment: datetime.datetime) -> str:
    """A UTC time as the status shows it (``...Z``)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime.datetime:
    """The time :func:`iso` wrote (always timezone-aware)."""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


@dataclass(frozen=True)
class Debounce:
    """A debounced request: its run begins ``seconds`` after the latest request, never
    later than ``max_seconds`` after the first."""

    seconds: int
    max_seconds: int

    def times(self, now: datetime.datetime) -> "tuple[str, str]":
        """When a run first asked for ``now`` is due, and its latest time."""
        return (
            iso(now + datetime.timedelta(seconds=self.seconds)),
            iso(now + datetime.timedelta(seconds=self.max_seconds)),
        )


# -- what the starter sends -------------------------------------------------------------


def next_run_event(
    request_id: str, input_: Any, run: Optional[str], due_at: Optional[str]
) -> Dict[str, Any]:
    """The data of :data:`NEXT_RUN_EVENT`: ``input_`` for the run after ``run`` (the
    run the starter saw; None when the status named none yet), due at ``due_at`` when
    the request was debounced."""
    return {"request": request_id, "input": input_, "run": run, "dueAt": due_at}


def stop_event(run: Optional[str], drop: Optional[str]) -> Dict[str, Any]:
    """The data of the ``Stop`` event the app sends: stop ``run`` (the run the app saw)
    and drop the next run of request ``drop`` (the one the app saw buffered, if any).

    A job drops only the next run the app saw: one buffered after the app read the
    status came from a later request, whose caller was told it would run.
    """
    return {"run": run, "dropRequest": drop}


def start_member(
    request_id: str, due_at: Optional[str] = None, latest_at: Optional[str] = None
) -> Dict[str, Any]:
    """The ``run`` member the starter adds to the input of a start it makes for a
    bufferOne or debounced request."""
    member: Dict[str, Any] = {"id": request_id}
    if due_at is not None:
        member.update(dueAt=due_at, latestAt=latest_at)
    return member


# -- what a job keeps ---------------------------------------------------------------


@dataclass(frozen=True)
class Buffered:
    """The input of the next run and the request it came from."""

    request: str
    input: Any

    @property
    def input_bytes(self) -> int:
        """The size of the input as JSON: what the status shows instead of the input."""
        return len(json.dumps(self.input, separators=(",", ":")).encode("utf-8"))


@dataclass(frozen=True)
class RunState:
    """A job's run and its next run, as events change them.

    ``waiting``: the run has not begun (it waits until ``due_at``, debounced); a next
    run then replaces its input instead of being buffered. ``stopping``: a Stop for
    this run arrived. Pure: the job and the tests apply the same transitions.
    """

    id: str
    input: Any = None
    due_at: Optional[str] = None
    latest_at: Optional[str] = None
    buffered: Optional[Buffered] = None
    stopping: bool = False
    #: The request whose next run the last Stop dropped.
    dropped: Optional[str] = None

    @property
    def waiting(self) -> bool:
        """Whether the run is still waiting for its due time."""
        return self.due_at is not None

    def with_next(self, data: Any) -> "RunState":
        """Apply a :data:`NEXT_RUN_EVENT`'s data."""
        data = _decoded(data)
        if not isinstance(data, dict) or not isinstance(data.get("request"), str):
            return self  # not the app's event: nothing to run
        request = data["request"]
        target = data.get("run")
        if request == self.id or (target is not None and target != self.id):
            # Its input runs now already, or it was meant for a run that has ended.
            return self
        if self.waiting and not self.stopping:
            # Not begun yet: the latest input is the one the run begins with, and a
            # debounced request pushes the beginning back (never past latestAt). Once a
            # Stop has dropped the waiting run, a later input is the next run instead.
            due = self.due_at
            asked = data.get("dueAt")
            if isinstance(asked, str) and self.latest_at is not None:
                due = iso(min(parse_time(asked), parse_time(self.latest_at)))
            return replace(self, id=request, input=data.get("input"), due_at=due)
        return replace(self, buffered=Buffered(request, data.get("input")))

    def with_stop(self, data: Any) -> "RunState":
        """Apply a ``Stop`` event's data.

        The app's Stop (:func:`stop_event`) stops the run it saw, and drops the next
        run it saw; any other data (a Stop raised by hand) stops the run and drops
        whatever is buffered.
        """
        data = _decoded(data)
        if not isinstance(data, dict) or "run" not in data:
            return replace(self, stopping=True, buffered=None, dropped=self._buffered_request())
        drop = data.get("dropRequest")
        target = data.get("run")
        if target is not None and self.id not in (target, drop):
            # The run it was meant for has ended, or (waiting) a newer input replaced
            # the one it saw: the run now is a later request's, told it would run.
            return self
        state = replace(self, stopping=True)
        if drop is not None and self._buffered_request() == drop:
            state = replace(state, buffered=None, dropped=drop)
        elif drop is not None and self.waiting and self.id == drop:
            state = replace(state, dropped=drop)  # the waiting run never begins
        return state

    def _buffered_request(self) -> Optional[str]:
        return self.buffered.request if self.buffered is not None else None

    def status(self) -> Dict[str, Any]:
        """The members the job's custom status shows about its runs."""
        buffered = self.buffered
        return {
            "run": self.id,
            "dueAt": self.due_at,
            "buffered": (
                None
                if buffered is None
                else {"request": buffered.request, "inputBytes": buffered.input_bytes}
            ),
            "dropped": self.dropped,
        }


# -- what the starter reads back -------------------------------------------------------


@dataclass(frozen=True)
class RunView:
    """The run members of a job's custom status, as the starter reads them."""

    run: Optional[str]
    due_at: Optional[str]
    buffered: Optional[str]
    dropped: Optional[str] = None
    #: Whether the job shows that a Stop reached its run.
    stopping: bool = False

    @classmethod
    def of(cls, custom_status: Any) -> "RunView":
        """Read them from a custom status (anything: a job may not have set one yet)."""
        if not isinstance(custom_status, dict):
            return cls(None, None, None)
        buffered = custom_status.get("buffered")
        return cls(
            _text(custom_status.get("run")),
            _text(custom_status.get("dueAt")),
            _text(buffered.get("request")) if isinstance(buffered, dict) else None,
            _text(custom_status.get("dropped")),
            custom_status.get("stopping") is True,
        )

    def took(self, request_id: str) -> bool:
        """Whether the job has taken ``request_id``'s input, as this run or the next,
        and no Stop has dropped it."""
        return request_id in (self.run, self.buffered) and request_id != self.dropped

    def really_dropped(self, planned: Optional[str], finished: bool) -> Optional[str]:
        """``planned`` when this status, read after a Stop or terminate that meant to
        drop ``planned`` (the next run, or the waiting run, an earlier status showed),
        shows it was dropped; otherwise None.

        The job says so (``dropped``), or the instance has ended with it still next or
        still waiting. The end may have reached the instance after it began that run
        (the switch to a next run needs no lock): then the run is stopped, not dropped,
        and this is None.
        """
        if planned is None:
            return None
        if self.dropped == planned:
            return planned
        never_began = self.buffered == planned or (self.run == planned and self.due_at is not None)
        return planned if finished and never_began else None


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _decoded(data: Any) -> Any:
    """Event data sent as a JSON string holding JSON (as the Durable SDK's
    ``raise_event`` encodes it) is read as the JSON it holds."""
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data
