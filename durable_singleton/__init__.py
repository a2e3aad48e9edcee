"""durable_singleton: start a Durable Functions orchestration only when no instance
with its id is active, and tell every caller truthfully what happened.

The public API is what this module exports; every ``_``-prefixed module behind it may
change without notice. docs/library.md documents it.

A v2 (decorator) app registers the Blueprint::

    import azure.durable_functions as df
    import durable_singleton

    app = df.DFApp()
    app.register_functions(durable_singleton.blueprint(["my_orchestrator"]))

A function.json (v1) app makes one :class:`SingletonApp` and passes it to its functions.
"""

from ._app import SingletonApp
from ._blueprint import blueprint
from ._catalog import Catalog, InputRule, InvalidInput
from ._durable import DurableFailure, DurableUnavailable, InstanceStatus, StartOutcomeUnknown
from ._errors import NotStarted, OutcomeUnknown, SingletonError
from ._instances import StopMode
from ._job import parse_job_input, run_job
from ._lock import LockLost, LockUnavailable
from ._policy import Action, OnConflict, Overlap, Reuse
from ._problems import Problem, ProblemError
from ._settings import ConfigurationError
from ._starter import (
    InstanceEnding,
    InstanceVanished,
    LockBusy,
    NextRunOutcomeUnknown,
    Outcome,
    ReplaceTimedOut,
)
from ._stop import STOP_EVENT, stop_requested

__version__ = "5.0.0"

__all__ = [
    "Action",
    "Catalog",
    "ConfigurationError",
    "DurableFailure",
    "DurableUnavailable",
    "InputRule",
    "InstanceEnding",
    "InstanceStatus",
    "InstanceVanished",
    "InvalidInput",
    "LockBusy",
    "LockLost",
    "LockUnavailable",
    "NotStarted",
    "NextRunOutcomeUnknown",
    "OnConflict",
    "Outcome",
    "OutcomeUnknown",
    "Overlap",
    "Problem",
    "ProblemError",
    "ReplaceTimedOut",
    "STOP_EVENT",
    "Reuse",
    "SingletonApp",
    "SingletonError",
    "StartOutcomeUnknown",
    "StopMode",
    "__version__",
    "blueprint",
    "parse_job_input",
    "run_job",
    "stop_requested",
]
