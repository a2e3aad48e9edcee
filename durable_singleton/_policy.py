"""Every rule of the singleton guarantee, as pure functions.

The starter reads the instance's status, asks :func:`decide` what to do, and carries
the answer out. Nothing here talks to the Durable runtime or to storage.
"""

from __future__ import annotations

import enum
from typing import Optional

from azure.durable_functions import OrchestrationRuntimeStatus as Status

#: An instance in one of these states holds its id: a second start would run the job
#: twice at once.
ACTIVE = frozenset({Status.Pending, Status.Running, Status.ContinuedAsNew, Status.Suspended})

#: An instance in one of these states has ended; the Durable runtime lets a new
#: execution reuse the id.
FINISHED = frozenset({Status.Completed, Status.Failed, Status.Terminated, Status.Canceled})

#: Finished, but not successfully: what ``reuse=allowDuplicateFailedOnly`` restarts.
UNSUCCESSFUL = frozenset({Status.Failed, Status.Terminated, Status.Canceled})


def is_stuck(pending_seconds: Optional[float], stuck_after: Optional[float]) -> bool:
    """Whether an instance Pending for ``pending_seconds`` (None: not Pending) is stuck: for at
    least ``stuck_after`` seconds. It still holds its id; the app only says so
    (docs/operate.md)."""
    return (
        pending_seconds is not None
        and stuck_after is not None
        and (pending_seconds >= stuck_after)
    )


class OnConflict(str, enum.Enum):
    """What to do when an instance with the id is active (query ``onConflict``)."""

    REJECT = "reject"
    USE_EXISTING = "useExisting"
    TERMINATE_EXISTING = "terminateExisting"
    STOP_EXISTING = "stopExisting"
    #: The request's input becomes the active instance's next run (latest wins).
    BUFFER_ONE = "bufferOne"


class Overlap(str, enum.Enum):
    """What a scheduled tick does when the previous run is still active (named after
    Temporal's schedule overlap policies)."""

    SKIP = "skip"
    CANCEL_OTHER = "cancelOther"
    TERMINATE_OTHER = "terminateOther"
    BUFFER_ONE = "bufferOne"

    @property
    def on_conflict(self) -> "OnConflict":
        """The starter's policy that carries this overlap policy out."""
        return {
            Overlap.SKIP: OnConflict.REJECT,
            Overlap.CANCEL_OTHER: OnConflict.STOP_EXISTING,
            Overlap.TERMINATE_OTHER: OnConflict.TERMINATE_EXISTING,
            Overlap.BUFFER_ONE: OnConflict.BUFFER_ONE,
        }[self]


class Reuse(str, enum.Enum):
    """Whether a finished instance's id may be started again (query ``reuse``)."""

    ALLOW_DUPLICATE = "allowDuplicate"
    ALLOW_DUPLICATE_FAILED_ONLY = "allowDuplicateFailedOnly"
    REJECT_DUPLICATE = "rejectDuplicate"


class OnFull(str, enum.Enum):
    """What a start with a limit per key does when the key's slots are all busy (query
    ``onFull``): wait in the key's queue, or be refused."""

    QUEUE = "queue"
    REJECT = "reject"


class Action(str, enum.Enum):
    """What the starter does; the value is the word the request log line uses."""

    START = "started"
    REJECT_ACTIVE = "rejected-active"
    USE_EXISTING = "used-existing"
    TERMINATE_THEN_START = "replaced-existing"
    STOP_THEN_START = "stopped-existing"
    REJECT_FINISHED = "rejected-finished"
    #: The request's input was handed to the active instance as its next run.
    BUFFER = "buffered"

    @property
    def starts(self) -> bool:
        """Whether carrying this action out starts an instance."""
        return self is Action.START or self in REPLACES

    @property
    def takes_lock(self) -> bool:
        """Whether carrying this action out may take the id's lock: a start, and a next
        run, which takes it only when the instance's run has ended without it (the
        request then starts the run itself)."""
        return self.starts or self is Action.BUFFER


#: Actions that end the active instance before starting a new one. ``terminate`` does
#: not stop an activity already running, so the old instance's work may overlap the
#: new one's first item; ``Stop`` lets the job finish its item and complete first.
REPLACES = frozenset({Action.TERMINATE_THEN_START, Action.STOP_THEN_START})


def decide(status: Optional[Status], on_conflict: OnConflict, reuse: Reuse) -> Action:
    """The action the starter must carry out for a start request, given the runtime
    status of the instance with the id (None: no instance has it)."""
    if status is None:
        return Action.START
    if status in ACTIVE:
        return {
            OnConflict.REJECT: Action.REJECT_ACTIVE,
            OnConflict.USE_EXISTING: Action.USE_EXISTING,
            OnConflict.TERMINATE_EXISTING: Action.TERMINATE_THEN_START,
            OnConflict.STOP_EXISTING: Action.STOP_THEN_START,
            OnConflict.BUFFER_ONE: Action.BUFFER,
        }[on_conflict]
    if reuse is Reuse.ALLOW_DUPLICATE:
        return Action.START
    if reuse is Reuse.ALLOW_DUPLICATE_FAILED_ONLY and status in UNSUCCESSFUL:
        return Action.START
    return Action.REJECT_FINISHED


def must_recheck_under_lock(action: Action, on_conflict: OnConflict, reuse: Reuse) -> bool:
    """Whether the starter must read the status again once it holds the lock.

    Between the first status read and taking the lock, another caller may have
    started (and even finished) an instance with the id. The lock serializes every
    start this app makes for the id, and host.json keeps the Durable extension's own
    duplicate refusal on (``overridableExistingInstanceStates: NonRunningStates``):
    with starts serialized, the extension's check sees the previous start's instance
    and refuses a start over an active one. That refusal is exactly
    :func:`decide`'s answer when the caller asked for ``reuse=allowDuplicate`` and an
    ``onConflict`` that does not start anything (``reject`` or ``useExisting``): every
    finished state or no instance means start, every active state means do not. So in
    that case, the default one, the second read buys nothing and is skipped.

    Every other combination needs the fresh status: ``terminateExisting`` and
    ``stopExisting`` must know what they replace, and the other ``reuse`` choices
    tell finished states apart, which the extension does not (it overwrites any
    finished instance).

    ``action`` is the decision taken on the status read before the lock.
    """
    return not (
        action is Action.START
        and reuse is Reuse.ALLOW_DUPLICATE
        and on_conflict in (OnConflict.REJECT, OnConflict.USE_EXISTING)
    )
