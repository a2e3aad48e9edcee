"""Which orchestrators an app lets callers start, and what each takes.

A v2 app names them when it registers the Blueprint (:meth:`Catalog.of`); a function.json
app is read from its folders (:meth:`Catalog.from_folders`: a folder whose function.json
has an ``orchestrationTrigger`` binding), whose modules may declare ``input_rule``,
``accepts_next_run``, ``accepts_stop`` and ``concurrency_limit``. docs/library.md says what
each opt-in means: an input rule raises :class:`InvalidInput` for an input the orchestrator
cannot run with; an orchestrator that takes next runs takes Stop too; one with a limit per
key must take next runs (its instances pass their slot on as they take one)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Union

from ._limit import MAX_LIMIT, MIN_LIMIT
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
        stops: Union[Iterable[str], Callable[[str], bool]] = (),
        limits: Union[Mapping[str, int], Callable[[str], Optional[int]]] = {},
    ) -> None:
        """Allow ``names``; check inputs with ``rules`` (by name), or with the rule
        ``find_rule`` returns for a name (asked once per name, when first needed).
        ``next_runs`` names the orchestrators that take next runs, and ``stops`` those
        that take a graceful Stop, or each tells for a name (asked once per name).
        ``schedules``: the app settings prefixes of the app's scheduled singletons (the
        overview page shows each). ``limits``: the limit per key of the orchestrators that
        have one (a mapping, or a function asked once per name); ValueError for a limit out
        of range or on an orchestrator that does not take next runs."""
        self.names: FrozenSet[str] = frozenset(names)
        self.schedules: List[str] = list(dict.fromkeys(schedules))
        self._rules: Dict[str, Optional[InputRule]] = dict(rules or {})
        self._find_rule = find_rule
        self._next_runs = _OptIn(self.names, next_runs)
        self._stops = _OptIn(self.names, stops)
        self._limits: Dict[str, Optional[int]] = {}
        self._find_limit: Callable[[str], Optional[int]] = (
            limits if callable(limits) else dict(limits).get
        )
        if not callable(limits):
            for name in limits:
                self.limit(name)  # checked now: a wrong limit is the app's mistake

    @classmethod
    def of(
        cls,
        orchestrators: Union[Iterable[str], Mapping[str, Optional[InputRule]]],
        next_runs: Iterable[str] = (),
        schedules: Iterable[str] = (),
        stops: Iterable[str] = (),
        limits: Mapping[str, int] = {},
    ) -> "Catalog":
        """A catalog of the names given; a mapping also gives each name's input rule
        (None for none). ``next_runs``: those of them that take next runs; ``stops``:
        those that take a graceful Stop; ``schedules``: the settings prefixes of the
        app's schedules; ``limits``: the limit per key of those that have one."""
        options: Dict[str, Any] = {
            "next_runs": next_runs,
            "schedules": schedules,
            "stops": stops,
            "limits": limits,
        }
        if isinstance(orchestrators, Mapping):
            rules = {name: rule for name, rule in orchestrators.items() if rule is not None}
            return cls(orchestrators.keys(), rules, **options)
        return cls(orchestrators, **options)

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
            next_runs=_module_says("accepts_next_run"),
            schedules=schedules,
            stops=_module_says("accepts_stop"),
            limits=_module_limit,
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
        return self._next_runs(function_name)

    def limit(self, function_name: str) -> Optional[int]:
        """The limit per key of ``function_name`` (one of :attr:`names`), None when it has
        none (its starts are singletons)."""
        if function_name not in self._limits:
            found = self._find_limit(function_name) if function_name in self.names else None
            if found is not None:
                _check_limit(function_name, found, self.accepts_next_run(function_name))
            self._limits[function_name] = found
        return self._limits[function_name]

    def has_limits(self) -> bool:
        """Whether any of the orchestrators has a limit per key."""
        return any(self.limit(name) is not None for name in self.names)

    def accepts_stop(self, function_name: str) -> bool:
        """Whether ``function_name`` (one of :attr:`names`) takes a graceful Stop (one
        that takes next runs does)."""
        return self._stops(function_name) or self.accepts_next_run(function_name)


class _OptIn:
    """Which orchestrators opted in to a protocol: the names given, or what a function
    tells for a name (asked once per name)."""

    def __init__(
        self, names: FrozenSet[str], given: Union[Iterable[str], Callable[[str], bool]]
    ) -> None:
        self._names = names
        if callable(given):
            self._ask: Callable[[str], bool] = given
            self._known: Dict[str, bool] = {}
        else:
            taking = frozenset(given)
            self._ask = lambda _: False
            self._known = {n: n in taking for n in names}

    def __call__(self, function_name: str) -> bool:
        if function_name not in self._known:
            self._known[function_name] = function_name in self._names and self._ask(function_name)
        return self._known[function_name]


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


def _module_says(flag: str) -> Callable[[str], bool]:
    """Whether a function folder's module declares ``flag = True``."""

    def says(function_name: str) -> bool:
        return getattr(importlib.import_module(function_name), flag, False) is True

    return says


def _module_rule(function_name: str) -> Optional[InputRule]:
    """The ``input_rule`` a function folder's module declares, if any."""
    rule: Optional[InputRule] = getattr(importlib.import_module(function_name), "input_rule", None)
    return rule


def _module_limit(function_name: str) -> Optional[int]:
    """The ``concurrency_limit`` a function folder's module declares, if any."""
    found = getattr(importlib.import_module(function_name), "concurrency_limit", None)
    return found if isinstance(found, int) else None


def _check_limit(function_name: str, limit: Any, takes_next_runs: bool) -> None:
    whole = isinstance(limit, int) and not isinstance(limit, bool)
    if not whole or not MIN_LIMIT <= limit <= MAX_LIMIT:
        raise ValueError(
            f"The limit of {function_name} must be a whole number from {MIN_LIMIT} to {MAX_LIMIT}"
        )
    if not takes_next_runs:
        raise ValueError(
            f"{function_name} has a limit but does not take next runs: its instances could "
            "not pass their slot on to the queue"
        )
