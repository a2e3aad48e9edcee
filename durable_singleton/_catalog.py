"""Which functions of this app are orchestrators, read from their function.json files.

A folder at the app root with a function.json whose bindings include an
``orchestrationTrigger`` is an orchestrator, so a new orchestrator folder becomes
startable through HttpStartSingle without a code change. An orchestrator's module may
declare ``input_rule``, a function that raises :class:`InvalidInput` for an input it
cannot run with; the starter checks every input with it before anything starts.
"""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path
from typing import Any, Callable, FrozenSet, Optional

#: An orchestrator's input check: returns (anything) when the input is fine.
InputRule = Callable[[Any], object]


class InvalidInput(ValueError):
    """An orchestrator input breaks its orchestrator's rule; the message says which."""


#: The Function App's root: the folder holding host.json and the function folders.
APP_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=None)
def orchestrator_names(app_root: Path = APP_ROOT) -> FrozenSet[str]:
    """Return the names of the orchestrator functions under ``app_root``.

    The files do not change while the app runs, so the answer is read once.

    Parameters
    ----------
    app_root : Path
        The Function App's root folder.

    Returns
    -------
    FrozenSet[str]
        Folder names whose function.json declares an ``orchestrationTrigger`` and is
        not disabled.
    """
    names = set()
    for definition in app_root.glob("*/function.json"):
        try:
            config = json.loads(definition.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # the host refuses such a function too; it is not startable
        bindings = config.get("bindings", []) if isinstance(config, dict) else []
        triggers = {b.get("type") for b in bindings if isinstance(b, dict)}
        if "orchestrationTrigger" in triggers and not config.get("disabled", False):
            names.add(definition.parent.name)
    return frozenset(names)


@functools.lru_cache(maxsize=None)
def input_rule(function_name: str) -> Optional[InputRule]:
    """The ``input_rule`` the orchestrator's module declares, if any.

    ``function_name`` must be one of :func:`orchestrator_names`: only the app's own
    function folders are imported.
    """
    if function_name not in orchestrator_names():
        return None
    return getattr(importlib.import_module(function_name), "input_rule", None)
