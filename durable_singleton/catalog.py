"""Which functions of this app are orchestrators, read from their function.json files.

A folder at the app root with a function.json whose bindings include an
``orchestrationTrigger`` is an orchestrator, so a new orchestrator folder becomes
startable through HttpStartSingle without a code change.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import FrozenSet

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
