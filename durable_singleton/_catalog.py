"""Which orchestrators an app lets callers start, and each one's input rule.

A v2 app names its orchestrators when it registers the Blueprint
(:meth:`Catalog.of`). A function.json app is read from its folders
(:meth:`Catalog.from_folders`): a folder with a function.json whose bindings include an
``orchestrationTrigger`` is an orchestrator, so a new orchestrator folder becomes
startable without a code change, and its module may declare ``input_rule``.

An input rule is a function that raises :class:`InvalidInput` for an input its
orchestrator cannot run with; the starter checks every input with it before
anything starts.

An orchestrator *takes next runs* (``onConflict=bufferOne``, ``debounceSeconds``) when
it handles the ``NextRun`` event and shows what it took in its custom status, as
SingletonOrchestrator does (durable_singleton._next_run). It opts in: a v2 app names
it in ``next_runs``; a function.json app's module declares ``accepts_next_run = True``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Union

from ._settings import RETENTION_SCHEDULE

#: An orchestrator's input check: returns (anything) when the input is fine.
InputRule = Callable[[Any], object]


class InvalidInput(ValueError):
    """An orchestrator input breaks its orchestrator's rule; the message says which."""


class Catalog:
    """The startable orchestrators of one app, by function name."""

    def __init__(
        self,
        names: Iterable[str],
        rules: Optional[Mapping[str, InputRule]] = None,
        find_rule: Optional[Callable[[str], Optional[InputRule]]] = None,
        next_runs: Union[Iterable[str], Callable[[str], bool]] = (),
        schedules: Iterable[str] = (),
    ) -> None:
        """Allow ``names``; check inputs with ``rules`` (by name), or with the rule
        ``find_rule`` returns for a name (asked once per name, when first needed).
        ``next_runs`` names the orchestrators that take next runs, or tells for a name
        (asked once per name). ``schedules``: the app settings prefixes of the app's
        scheduled singletons (the overview page shows each)."""
        self.names: FrozenSet[str] = frozenset(names)
        self.schedules: List[str] = list(dict.fromkeys(schedules))
        self._rules: Dict[str, Optional[InputRule]] = dict(rules or {})
        self._find_rule = find_rule
        if callable(next_runs):
            self._takes_next_run: Callable[[str], bool] = next_runs
            self._next_runs: Dict[str, bool] = {}
        else:
            taking = frozenset(next_runs)
            self._takes_next_run = lambda _: False
            self._next_runs = {name: name in taking for name in self.names}

    @classmethod
    def of(
        cls,
        orchestrators: Union[Iterable[str], Mapping[str, Optional[InputRule]]],
        next_runs: Iterable[str] = (),
        schedules: Iterable[str] = (),
    ) -> "Catalog":
        """A catalog of the names given; a mapping also gives each name's input rule
        (None for none). ``next_runs``: those of them that take next runs;
        ``schedules``: the settings prefixes of the app's schedules."""
        if isinstance(orchestrators, Mapping):
            rules = {name: rule for name, rule in orchestrators.items() if rule is not None}
            return cls(orchestrators.keys(), rules, next_runs=next_runs, schedules=schedules)
        return cls(orchestrators, next_runs=next_runs, schedules=schedules)

    @classmethod
    def from_folders(cls, app_root: Path) -> "Catalog":
        """The orchestrators of the function.json app at ``app_root``.

        The folders are read once, here: they do not change while the app runs. Each
        orchestrator's module is imported (by its folder's name) only when its input
        is first checked, for the ``input_rule`` it may declare.
        """
        names = set()
        schedules = []
        for definition in sorted(app_root.glob("*/function.json")):
            try:
                config = json.loads(definition.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # the host refuses such a function too; it is not startable
            if not isinstance(config, dict) or config.get("disabled", False):
                continue
            bindings = [b for b in config.get("bindings", []) if isinstance(b, dict)]
            triggers = {b.get("type") for b in bindings}
            if "orchestrationTrigger" in triggers:
                names.add(definition.parent.name)
            prefix = _schedule_prefix(bindings)
            if prefix is not None:
                schedules.append(prefix)
        return cls(
            names,
            find_rule=_module_rule,
            next_runs=_module_takes_next_run,
            schedules=schedules,
        )

    def rule(self, function_name: str) -> Optional[InputRule]:
        """The input rule of ``function_name`` (one of :attr:`names`), if it has one."""
        if function_name not in self._rules:
            if function_name not in self.names or self._find_rule is None:
                return None
            self._rules[function_name] = self._find_rule(function_name)
        return self._rules[function_name]

    def accepts_next_run(self, function_name: str) -> bool:
        """Whether ``function_name`` (one of :attr:`names`) takes next runs."""
        if function_name not in self._next_runs:
            taking = function_name in self.names and self._takes_next_run(function_name)
            self._next_runs[function_name] = taking
        return self._next_runs[function_name]


def _schedule_prefix(bindings: List[Dict[str, Any]]) -> Optional[str]:
    """The settings prefix of a scheduled singleton's folder (a timer whose schedule is
    ``%PREFIX%`` beside a ``durableClient`` binding), or None for any other function."""
    types = {b.get("type") for b in bindings}
    if "durableClient" not in types or _uses_setting(bindings, RETENTION_SCHEDULE):
        return None
    for binding in bindings:
        schedule = binding.get("schedule")
        if binding.get("type") == "timerTrigger" and isinstance(schedule, str):
            if len(schedule) > 2 and schedule.startswith("%") and schedule.endswith("%"):
                return schedule[1:-1]
    return None


def _uses_setting(bindings: List[Dict[str, Any]], setting: str) -> bool:
    return any(b.get("schedule") == f"%{setting}%" for b in bindings)


def _module_takes_next_run(function_name: str) -> bool:
    """Whether a function folder's module declares ``accepts_next_run = True``."""
    return getattr(importlib.import_module(function_name), "accepts_next_run", False) is True


def _module_rule(function_name: str) -> Optional[InputRule]:
    """The ``input_rule`` a function folder's module declares, if any."""
    rule: Optional[InputRule] = getattr(importlib.import_module(function_name), "input_rule", None)
    return rule
