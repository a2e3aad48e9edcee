"""One door for every call under a lease: the Durable client's calls that can start or
end an instance take only a limit that :meth:`HeldLock.fence` proved, and nothing else
makes one (the behaviour of the fence itself is tested in tests/test_faults.py and
tests/test_lock.py)."""

from __future__ import annotations

import ast
import typing
from pathlib import Path
from typing import Optional

import pytest

import durable_singleton
from durable_singleton._durable import DurableClient
from durable_singleton._lock import Fenced

PACKAGE = Path(durable_singleton.__file__).parent


@pytest.mark.parametrize("method", ["start", "terminate", "purge"])
def test_a_call_that_starts_or_ends_an_instance_takes_only_a_fenced_limit(method: str) -> None:
    hints = typing.get_type_hints(getattr(DurableClient, method))
    assert hints["limit"] is Fenced


def test_an_event_is_sent_within_a_fenced_limit_or_explicitly_outside_any_lease() -> None:
    assert typing.get_type_hints(DurableClient.raise_event)["limit"] == Optional[Fenced]


def test_only_the_fence_makes_a_fenced_limit() -> None:
    makers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Fenced"
                ):
                    makers.append(f"{path.relative_to(PACKAGE)}:{function.name}")
    assert makers == ["_lock.py:fence"]
