"""Every failure durable_singleton raises, by kind.

Each is a :class:`SingletonError` and exactly one of :class:`NotStarted` (nothing was
started or handed over: retry as it is) and :class:`OutcomeUnknown` (it may have
started: read the instance's status before retrying). A caller acts on those two,
which the package's top level exports too; the kinds beneath them say why, and each
is answered over HTTP as docs/http-api.md's table says. :class:`InvalidInput` is the one
an input rule raises; :class:`Problem` is what a :class:`ProblemError` carries.
"""

from ._catalog import InvalidInput
from ._durable import (
    DurableFailure,
    DurableUnavailable,
    StartOutcomeUnknown,
    StopOutcomeUnknown,
)
from ._errors import NotStarted, OutcomeUnknown, SingletonError
from ._handover import NextRunOutcomeUnknown
from ._limited import (
    KeyedStartInProgress,
    KeyInUse,
    LimitReached,
    QueueFull,
    QueueOutcomeUnknown,
    RequestCancelled,
    SlotTaken,
)
from ._lock import LockLost, LockUnavailable
from ._problems import Problem, ProblemError
from ._settings import ConfigurationError
from ._starter import (
    InstanceEnding,
    InstanceVanished,
    LockBusy,
    ReplaceTimedOut,
)

__all__ = [
    "ConfigurationError",
    "DurableFailure",
    "DurableUnavailable",
    "InstanceEnding",
    "InstanceVanished",
    "InvalidInput",
    "KeyedStartInProgress",
    "KeyInUse",
    "LimitReached",
    "LockBusy",
    "LockLost",
    "LockUnavailable",
    "NextRunOutcomeUnknown",
    "NotStarted",
    "OutcomeUnknown",
    "Problem",
    "ProblemError",
    "QueueFull",
    "QueueOutcomeUnknown",
    "ReplaceTimedOut",
    "RequestCancelled",
    "SingletonError",
    "SlotTaken",
    "StartOutcomeUnknown",
    "StopOutcomeUnknown",
]
