"""Run once more: the protocol between the starter and a job that accepts next runs
(docs/design.md, "Run once more (bufferOne, debounce)"). Every decision on an id's
:class:`Channel` is a pure function here, applied by the starter and the activity alike to
the channel as read; the job's side of Stop events is :class:`RunState`."""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Optional, Tuple, Union

import azure.durable_functions as df

#: The activity through which a job takes its next run and begins a waiting run.
NEXT_RUN_ACTIVITY = "SingletonNextRun"
#: How an orchestrator calls :data:`NEXT_RUN_ACTIVITY`: its requests are safe to retry (a
#: retried take or begin answers as the first did), and a storage outage must not fail
#: the orchestrator.
NEXT_RUN_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=1000, max_number_of_attempts=6
)

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


# -- the channel -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A request's input, to run after the current run (or to begin now)."""

    request: str
    input: Any


@dataclass(frozen=True)
class Channel:
    """The next-run document of one id.

    ``run``: the request whose run the instance runs (or waits to begin); ``input``: its input
    while it waits and after a take (a retried take returns it again); ``due_at``/``latest_at``:
    set while the run waits (debounced); ``next``: the run after it; ``after``: the run the
    current one was taken from; ``ended``: the instance takes nothing more; ``stopped``: a Stop
    was decided for the current run; ``began``: the waiting run was begun by op ``begin``;
    ``starting``: opened for a start not yet confirmed, so it takes no request; ``writes``: the
    ids of the latest writes, to tell whether a write whose answer was lost landed (not part
    of what the channel says)."""

    run: str
    input: Any = None
    due_at: Optional[str] = None
    latest_at: Optional[str] = None
    next: Optional[Pending] = None
    after: Optional[str] = None
    ended: bool = False
    stopped: bool = False
    starting: bool = False
    began: bool = False
    writes: Tuple[str, ...] = field(default=(), compare=False)

    @property
    def waiting(self) -> bool:
        """Whether the run has not begun yet (it waits until ``due_at``)."""
        return self.due_at is not None

    def with_writes(self, writes: Tuple[str, ...]) -> "Channel":
        """This document with the ids ``writes`` as its latest writes' (the store's)."""
        return replace(self, writes=writes)

    def to_json(self) -> bytes:
        """The document as stored."""
        return json.dumps(asdict(self), separators=(",", ":")).encode("utf-8")

    @classmethod
    def of_json(cls, data: bytes) -> "Channel":
        """Read a stored document back (ValueError when it is not one)."""
        document = json.loads(data)
        if not isinstance(document, dict) or not isinstance(document.get("run"), str):
            raise ValueError("not a next-run channel")
        pending = document.get("next")
        fields = {k: v for k, v in document.items() if k in cls.__dataclass_fields__}
        fields["next"] = Pending(**pending) if isinstance(pending, dict) else None
        fields["writes"] = tuple(document.get("writes") or ())
        return cls(**fields)


@dataclass(frozen=True)
class Offered:
    """What a bufferOne or debounced request did to an open channel."""

    channel: Channel
    #: ``buffered`` (it is the next run) or ``debounced`` (it is the waiting run).
    kind: str
    #: When the waiting run is due now (debounced only).
    due_at: Optional[str]
    #: The request whose input this one replaced (latest wins), if any.
    replaced: Optional[str]


def shown_run(custom_status: Any) -> Optional[str]:
    """The run a job's custom status shows (:meth:`RunState.status`), if any."""
    run = custom_status.get("run") if isinstance(custom_status, dict) else None
    return run if isinstance(run, str) else None


def takes_requests(channel: Optional[Channel], shown: Optional[str]) -> bool:
    """Whether a request may become the next (or waiting) run in ``channel``, for an
    instance whose status shows run ``shown``: the channel is open, and its instance is
    known to exist (confirmed, or that very run is shown active)."""
    if channel is None or channel.ended:
        return False
    return not channel.starting or shown == channel.run


def confirmed(channel: Optional[Channel], run: str) -> Optional[Channel]:
    """The channel once the start of run ``run`` is known to have created the instance
    (None: nothing to write)."""
    if channel is None or not channel.starting or channel.run != run:
        return None
    return replace(channel, starting=False)


def offer(channel: Channel, request: str, input_: Any, asked_due: Optional[str]) -> Offered:
    """A request's input for an instance whose channel takes requests (the write confirms
    the channel): it replaces a waiting run's input (a debounced request moving its due time
    to ``asked_due``, never past ``latest_at``), or else becomes the next run."""
    assert not channel.ended
    channel = replace(channel, starting=False)
    if channel.waiting and not channel.stopped:
        due = channel.due_at
        if asked_due is not None and channel.latest_at is not None:
            due = iso(min(parse_time(asked_due), parse_time(channel.latest_at)))
        changed = replace(channel, run=request, input=input_, due_at=due)
        return Offered(changed, "debounced", due, channel.run)
    replaced = channel.next.request if channel.next is not None else None
    return Offered(replace(channel, next=Pending(request, input_)), "buffered", None, replaced)


def take(channel: Optional[Channel], run: str) -> Tuple[Optional[Channel], Optional[Pending]]:
    """Run ``run`` has ended: the channel to write (None: nothing) and the run to begin next
    (None: the instance ends). A retried take finds its own write and answers the same."""
    if channel is not None:
        if channel.ended and channel.run == run:
            return None, None
        if channel.after == run and not channel.ended:
            return None, Pending(channel.run, channel.input)
        following = channel.next
        if following is not None:
            return Channel(following.request, following.input, after=run), following
    return Channel(run, ended=True), None


@dataclass(frozen=True)
class Wait:
    """The waiting run is not due yet: wait until ``due_at`` and look again."""

    due_at: str


#: What a waiting run's instance does when its timer fires: begin the run, wait again,
#: or end (None: a Stop dropped the run before it began).
Begin = Union[Pending, Wait, None]


def begin(channel: Optional[Channel], now: datetime.datetime) -> Tuple[Optional[Channel], Begin]:
    """The waiting run's timer fired at ``now``: the channel to write and what to do."""
    if channel is None or channel.ended:
        return None, None
    if not channel.waiting:
        return None, Pending(channel.run, channel.input)  # a retried begin
    if channel.stopped:
        return None, None
    assert channel.due_at is not None
    if parse_time(channel.due_at) > now:
        return None, Wait(channel.due_at)
    began = replace(channel, due_at=None, latest_at=None, starting=False, began=True)
    return began, Pending(channel.run, channel.input)


@dataclass(frozen=True)
class Stopped:
    """What a Stop decided: the run it stops and the request whose run it dropped;
    ``moved``: the instance took its next run before the Stop was decided, so the Stop
    is for that run (``run``), which must be sent one of its own."""

    run: Optional[str]
    dropped: Optional[str]
    moved: bool = False


def stop(channel: Optional[Channel]) -> Tuple[Optional[Channel], Stopped]:
    """A graceful Stop: stop the current run, and drop the next run (or the waiting
    run, which then never begins). A request after it becomes the next run again."""
    if channel is None or channel.ended:
        return None, Stopped(channel.run if channel else None, None)
    if channel.waiting and not channel.stopped:
        return replace(channel, stopped=True), Stopped(channel.run, channel.run)
    if channel.next is not None:
        dropped = channel.next.request
        return replace(channel, stopped=True, next=None), Stopped(channel.run, dropped)
    return (None if channel.stopped else replace(channel, stopped=True)), Stopped(
        channel.run, None
    )


def drop_waiting(channel: Optional[Channel]) -> Tuple[Optional[Channel], Optional[Stopped]]:
    """A graceful Stop while the run waits: drop it (the channel to write, and what the
    Stop decided); None when the run no longer waits (it began, or a Stop already
    dropped it), and the Stop is decided as for a running run (:func:`stop_run`)."""
    if channel is None or channel.ended or not channel.waiting or channel.stopped:
        return None, None
    return stop(channel)


def stop_run(channel: Optional[Channel], run: Optional[str]) -> Tuple[Optional[Channel], Stopped]:
    """:func:`stop`, once a Stop for ``run`` (the channel's run when it was read) has
    been sent: unless the instance took its next run since (it has begun: it is
    stopped, not dropped). A waiting run's instance takes every Stop, so while the run
    waits any input replacing it is the one dropped."""
    if channel is not None and not channel.ended and not channel.waiting and channel.run != run:
        return None, Stopped(channel.run, None, moved=True)
    return stop(channel)


@dataclass(frozen=True)
class Closed:
    """What a close (before a terminate) removed: ``dropped``, the next (or waiting)
    run; ``handed``, the run the channel had handed to the instance (taken, or begun
    after its wait), which the instance may still end without beginning."""

    dropped: Optional[str]
    handed: Optional[str] = None

    def after_end(self, shown: Optional[str]) -> Optional[str]:
        """The request the terminate dropped, once the ended instance's status shows run
        ``shown``: the run it removed, or else the run handed to the instance when the
        instance ended in another run (it never began it)."""
        if self.dropped is not None:
            return self.dropped
        if self.handed is not None and shown is not None and shown != self.handed:
            return self.handed
        return None


def close(channel: Optional[Channel]) -> Tuple[Optional[Channel], Closed]:
    """Before a terminate: the channel takes nothing more (requests wait for the instance
    to end, then start), and its next (or waiting) run is dropped: the channel to write
    and what it removed."""
    if channel is None or channel.ended:
        return None, Closed(None)
    if channel.waiting and not channel.stopped:
        dropped: Optional[str] = channel.run
    else:
        dropped = channel.next.request if channel.next is not None else None
    handed_over = not channel.waiting and (channel.after is not None or channel.began)
    closed = Closed(dropped, channel.run if handed_over else None)
    return replace(channel, ended=True, next=None), closed


def opened(
    previous: Optional[Channel],
    run: str,
    input_: Any = None,
    due_at: Optional[str] = None,
    latest_at: Optional[str] = None,
) -> Channel:
    """The channel of an instance the app starts with run ``run``, ``starting`` until
    confirmed. A next run the previous instance never took (it failed, or was terminated
    outside the app) stays the next run, after this one."""
    waiting_input = input_ if due_at is not None else None
    carried = previous.next if previous is not None else None
    return Channel(run, waiting_input, due_at, latest_at, next=carried, starting=True)


# -- what the starter puts in a start's input, and in a Stop --------------------------------


def start_member(
    run: str, hub: str, due_at: Optional[str] = None, latest_at: Optional[str] = None
) -> Dict[str, Any]:
    """The ``run`` member the starter adds to the input of a start of an orchestrator
    that takes next runs: the run's id, the task hub (the channel's name has it), and
    when a debounced run is due."""
    member: Dict[str, Any] = {"id": run, "hub": hub}
    if due_at is not None:
        member.update(dueAt=due_at, latestAt=latest_at)
    return member


def stop_event(run: Optional[str]) -> Dict[str, Any]:
    """The data of the ``Stop`` event the app sends: stop run ``run``."""
    return {"run": run}


# -- the job's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunState:
    """A job's run as Stop events change it, pure so the job and the tests apply the same
    transitions: ``waiting`` until ``due_at`` (debounced), ``stopping`` once a Stop for it
    arrived."""

    id: str
    hub: Optional[str] = None
    due_at: Optional[str] = None
    stopping: bool = False

    @property
    def waiting(self) -> bool:
        """Whether the run is still waiting for its due time."""
        return self.due_at is not None

    def with_stop(self, data: Any) -> "RunState":
        """Apply a ``Stop`` event's data: the app's (:func:`stop_event`) names the run it
        stops, and one meant for another run is ignored; a Stop raised by hand (any
        other data) stops the run. A waiting run is the first of its instance, so every
        Stop is for it."""
        if self.waiting or stops(data, self.id):
            return replace(self, stopping=True)
        return self

    def status(self) -> Dict[str, Any]:
        """The members the job's custom status shows about its run."""
        return {"run": self.id, "dueAt": self.due_at}


def stops(data: Any, run: str) -> bool:
    """Whether a ``Stop`` event with ``data`` stops run ``run``."""
    data = _decoded(data)
    if not isinstance(data, dict) or data.get("run") is None:
        return True
    return bool(data["run"] == run)


def _decoded(data: Any) -> Any:
    """Event data sent as a JSON string holding JSON (as the Durable SDK's
    ``raise_event`` encodes it) is read as the JSON it holds."""
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data
