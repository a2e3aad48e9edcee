"""The v1 app under test: its folder and its one SingletonApp."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from singleton_app import app

#: The function.json app's root: host.json and the function folders.
APP_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["APP_ROOT", "app", "change_setting"]


async def change_setting(monkeypatch: Any, name: str, value: str) -> None:
    """Change an app setting mid-test as Azure does: the app starts again (a new
    composition root) and reads its settings anew."""
    monkeypatch.setenv(name, value)
    await app.close()
