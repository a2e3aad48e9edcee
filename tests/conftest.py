"""Fixtures: Azurite and the Durable double for the session, clean app settings per test."""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable, Iterator, Optional

import azure.functions as func
import pytest
from hypothesis import settings as hypothesis_settings

from durable_singleton import SingletonApp
from durable_singleton import _settings as app_settings
from tests.support.app import app, fresh_app_settings
from tests.support.azurite import Azurite
from tests.support.blob_counter import RequestCounter, counted_app
from tests.support.clients import close_app_clients
from tests.support.contract import LIST_PATH, check_response
from tests.support.durable_double import DurableDouble
from tests.support.report import LINES
from tests.support.requests import instance_request, list_request, start_request

# Contract tests run real HTTP per example; keep hypothesis' budgets to that.
hypothesis_settings.register_profile("app", deadline=None, max_examples=60)
hypothesis_settings.load_profile("app")

StartCall = Callable[..., Awaitable[func.HttpResponse]]


@pytest.fixture(scope="session", autouse=True)
async def close_clients_at_the_end() -> Any:
    """Close the shared HTTP clients, the app's and the Durable SDK's, after the session."""
    yield
    await close_app_clients()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """An Azurite Blob service of this test session's own, on a free port."""
    emulator = Azurite().start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def durable_server() -> Iterator[DurableDouble]:
    """The Durable API double, serving for the whole session."""
    double = DurableDouble().start()
    yield double
    double.stop()


@pytest.fixture
def durable(durable_server: DurableDouble) -> DurableDouble:
    """The Durable double, emptied and with default behaviour."""
    durable_server.reset()
    return durable_server


@pytest.fixture
async def app_env(monkeypatch: pytest.MonkeyPatch, azurite: Azurite) -> Any:
    """App settings as a fresh app has them, storage on the test Azurite.

    Each test gets its own lock container, so no lock outlives its test. Yields the
    container's name. The app reads its settings once per composition root: the
    root is closed afterwards, so the next test's settings are read anew.
    """
    container = fresh_app_settings(monkeypatch, azurite)
    await app.close()
    yield container
    await app.close()


@pytest.fixture
async def blob_requests(app_env: str) -> Any:
    """Count the Blob Storage requests of the app under test (``app_under_test``)."""
    counter = RequestCounter()
    counter.app = counted_app(app, counter)
    yield counter
    await counter.app.close()


@pytest.fixture
def app_under_test(request: pytest.FixtureRequest) -> SingletonApp:
    """The v1 app's SingletonApp, or its request-counting twin for tests that count."""
    if "blob_requests" in request.fixturenames:
        counted: SingletonApp = request.getfixturevalue("blob_requests").app
        return counted
    return app


@pytest.fixture
def start(durable: DurableDouble, app_env: str, app_under_test: SingletonApp) -> StartCall:
    """Call HttpStartSingle as the host does (``main`` is ``app.http_start``), against
    the double."""
    durable.use_storage(os.environ[app_settings.STORAGE_CONNECTION], app_env)

    async def call(
        instance_id: str,
        body: Any = None,
        query: str = "",
        function_name: str = "SingletonOrchestrator",
        raw_body: Optional[bytes] = None,
        starter: Optional[str] = None,
        key: Optional[str] = None,
    ) -> func.HttpResponse:
        headers = {} if key is None else {"Idempotency-Key": key}
        request = start_request(function_name, instance_id, body, query, raw_body, headers)
        response = await app_under_test.http_start(request, starter or durable.starter())
        return check_response("POST", response)  # every answer must match the contract

    return call


@pytest.fixture
def instance(durable: DurableDouble, app_env: str, app_under_test: SingletonApp) -> StartCall:
    """Call SingletonInstance (GET or DELETE) as the host does."""
    durable.use_storage(os.environ[app_settings.STORAGE_CONNECTION], app_env)

    async def call(
        method: str,
        instance_id: str,
        query: str = "",
        function_name: str = "SingletonOrchestrator",
        starter: Optional[str] = None,
    ) -> func.HttpResponse:
        request = instance_request(method, function_name, instance_id, query)
        response = await app_under_test.http_instance(request, starter or durable.starter())
        return check_response(method, response)

    return call


@pytest.fixture
def listing(durable: DurableDouble, app_env: str, app_under_test: SingletonApp) -> StartCall:
    """Call SingletonList (GET /api/singletons/{functionName}) as the host does."""

    async def call(
        query: str = "", function_name: str = "SingletonOrchestrator"
    ) -> func.HttpResponse:
        request = list_request(function_name, query)
        response = await app_under_test.http_list(request, durable.starter())
        return check_response("GET", response, LIST_PATH)

    return call


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, hand this worker's report lines to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["singleton_report"] = list(LINES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """Under pytest-xdist, collect a finished worker's report lines."""
    LINES.extend(getattr(node, "workeroutput", {}).get("singleton_report", []))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the race tests reported (see tests/support/report.py)."""
    if LINES:
        terminalreporter.section("singleton race report")
        for line in LINES:
            terminalreporter.write_line(line)
