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

from . import errors as errors
from . import job as job
from . import limits as limits
from . import runs as runs
from ._app import SingletonApp
from ._blueprint import blueprint
from ._catalog import Catalog, InputRule, InvalidInput
from ._client import SingletonClient, Stopped
from ._durable import InstanceStatus
from ._errors import NotStarted, OutcomeUnknown, SingletonError
from ._instances import StopMode
from ._policy import Action, OnConflict, Overlap, Reuse
from ._starter import Outcome
from ._stop import STOP_EVENT, stop_requested

__version__ = "5.0.0"

#: The failures by kind are in :mod:`durable_singleton.errors`; the sample job is
#: :mod:`durable_singleton.job`; a limit per key's types are :mod:`durable_singleton.limits`;
#: next runs in an orchestrator of your own, :mod:`durable_singleton.runs`.
__all__ = [
    "Action",
    "Catalog",
    "InputRule",
    "InstanceStatus",
    "InvalidInput",
    "NotStarted",
    "OnConflict",
    "Outcome",
    "OutcomeUnknown",
    "Overlap",
    "Reuse",
    "STOP_EVENT",
    "SingletonApp",
    "SingletonClient",
    "SingletonError",
    "StopMode",
    "Stopped",
    "__version__",
    "blueprint",
    "stop_requested",
]
