"""The v1 app under test: its folder and its one SingletonApp."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from durable_singleton import SingletonApp
from durable_singleton import _settings as app_settings
from durable_singleton._root import Root
from singleton_app import app
from tests.support.azurite import Azurite

#: The function.json app's root: host.json and the function folders.
APP_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["APP_ROOT", "app", "change_setting", "fresh_app_settings", "root_of", "settled"]


def root_of(singleton: SingletonApp) -> Root:
    """The composition root ``singleton`` uses in this event loop: the tests' one door to
    the private parts (locks, channels, settings) their assertions look at."""
    return singleton._root()


async def settled(singleton: SingletonApp) -> None:
    """Wait until the lock releases ``singleton`` handed to the background are done (what
    ``close()`` waits for, without closing)."""
    await singleton._root().wait_for_background()


async def change_setting(monkeypatch: Any, name: str, value: str) -> None:
    """Change an app setting mid-test as Azure does: the app starts again (a new
    composition root) and reads its settings anew."""
    monkeypatch.setenv(name, value)
    await app.close()


def fresh_app_settings(monkeypatch: pytest.MonkeyPatch, azurite: Azurite) -> str:
    """Set the app settings a fresh app has, storage on ``azurite`` with a lock container
    of its own; return the container's name."""
    for name in app_settings.APP_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for suffix in ("", "__blobServiceUri", "__accountName", "__credential", "__clientId"):
        monkeypatch.delenv(app_settings.STORAGE_CONNECTION + suffix, raising=False)
    monkeypatch.setenv(app_settings.STORAGE_CONNECTION, azurite.connection_string)
    container = f"locks-{uuid.uuid4().hex[:16]}"
    monkeypatch.setenv("SINGLETON_LOCK_CONTAINER", container)
    return container
