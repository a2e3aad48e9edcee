"""The runtime layer: the app loaded and invoked by the Functions Python runtime itself.

``azure-functions-runtime-v1`` (Python 3.13+) loads each function from its
function.json and converts the host's messages into ``main``'s arguments, as under
``func start`` and in Azure; tests/support/functions_host.py plays the host. Skipped
where that runtime cannot be installed (Python before 3.13).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from typing import Iterator, Set

import pytest

pytest.importorskip("azure_functions_runtime_v1", reason="the runtime needs Python 3.13+")

from durable_singleton._settings import STORAGE_CONNECTION  # noqa: E402
from tests.support.app import APP_ROOT, change_setting  # noqa: E402
from tests.support.azurite import connection_string, free_port  # noqa: E402
from tests.support.contract import LIST_PATH, check_answer  # noqa: E402
from tests.support.durable_double import SYSTEM_KEY, starter_binding  # noqa: E402
from tests.support.functions_host import FunctionsHost, HttpAnswer  # noqa: E402
from tests.support.history import History  # noqa: E402

pytestmark = pytest.mark.runtime

FUNCTIONS = sorted(p.parent.name for p in APP_ROOT.glob("*/function.json"))
ORIGIN = "http://localhost:7071"


@pytest.fixture(scope="session")
async def host() -> Iterator[FunctionsHost]:
    """The runtime, initialised, with every function of the app loaded."""
    functions_host = FunctionsHost(APP_ROOT)
    assert functions_host.succeeded(await functions_host.init())
    for name in FUNCTIONS:
        response = await functions_host.load(name)
        assert functions_host.succeeded(response), functions_host.failure(response)
    yield functions_host


async def post(
    host: FunctionsHost,
    starter: str,
    instance_id: str,
    body: bytes = b"",
    query: str = "",
    function_name: str = "SingletonOrchestrator",
) -> HttpAnswer:
    """POST /api/orchestrators/{functionName}/{instanceId} through the runtime."""
    url = f"{ORIGIN}/api/orchestrators/{function_name}/{instance_id}" + (
        f"?{query}" if query else ""
    )
    request = host.http(
        "POST",
        url,
        {"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"},
        {"functionName": function_name, "instanceId": instance_id},
        body,
    )
    response = await host.invoke(
        "HttpStartSingle", {"req": request, "starter": host.durable_client(starter)}
    )
    assert host.succeeded(response), host.failure(response)
    answer = host.http_answer(response)
    check_answer("POST", answer.status, answer.headers, answer.body)  # the contract holds
    return answer


async def test_every_function_loads(host) -> None:
    assert set(host.function_ids) == set(FUNCTIONS)
    assert len(FUNCTIONS) == 14


async def test_the_page_through_the_runtime(host, durable, app_env) -> None:
    request = host.http("GET", f"{ORIGIN}/api/singletons?refresh=2", {}, {}, b"")
    response = await host.invoke(
        "SingletonsPage", {"req": request, "starter": host.durable_client(durable.starter())}
    )
    assert host.succeeded(response), host.failure(response)
    answer = host.http_answer(response)
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert b'"refreshSeconds": 2' in answer.body


async def test_a_list_through_the_runtime(host, durable, app_env) -> None:
    durable.put("rt-listed", "Running")
    url = f"{ORIGIN}/api/singletons/SingletonOrchestrator?status=Running&top=5"
    request = host.http("GET", url, {}, {"functionName": "SingletonOrchestrator"}, b"")
    response = await host.invoke(
        "SingletonList", {"req": request, "starter": host.durable_client(durable.starter())}
    )
    assert host.succeeded(response), host.failure(response)
    answer = host.http_answer(response)
    check_answer("GET", answer.status, answer.headers, answer.body, LIST_PATH)
    assert [i["instanceId"] for i in answer.json()["instances"]] == ["rt-listed"]


async def test_a_start_through_the_runtime(host, durable, app_env) -> None:
    answer = await post(host, durable.starter(), "rt-start", b'{"items": [1, 2]}')
    assert answer.status == 202
    assert answer.headers["location"] == answer.json()["statusQueryGetUri"]
    assert durable.instances["rt-start"].input["items"] == [1, 2]


async def test_a_start_with_a_limit_through_the_runtime(host, durable, app_env) -> None:
    durable.use_storage(os.environ[STORAGE_CONNECTION], app_env)
    answers = []
    for n in range(4):  # SingletonOrchestrator's limit: 3 per key
        url = f"{ORIGIN}/api/limits/SingletonOrchestrator/rt-tenant"
        request = host.http(
            "POST",
            url,
            {"Content-Type": "application/json"},
            {"functionName": "SingletonOrchestrator", "key": "rt-tenant"},
            json.dumps({"items": [n]}).encode(),
        )
        response = await host.invoke(
            "HttpStartLimited", {"req": request, "starter": host.durable_client(durable.starter())}
        )
        assert host.succeeded(response), host.failure(response)
        answer = host.http_answer(response)
        check_answer(
            "POST", answer.status, answer.headers, answer.body, "/limits/{functionName}/{key}"
        )
        answers.append(answer.json())
    assert [a["outcome"] for a in answers] == ["started", "started", "started", "queued"]
    assert sorted(i for i in durable.active_instances() if i.startswith("rt-tenant~")) == [
        "rt-tenant~0",
        "rt-tenant~1",
        "rt-tenant~2",
    ]


async def test_a_conflict_through_the_runtime(host, durable, app_env) -> None:
    durable.put("rt-busy", "Running")
    answer = await post(host, durable.starter(), "rt-busy")
    assert (answer.status, answer.kind()) == (409, "instance-active")
    assert answer.headers["content-type"] == "application/problem+json"


async def test_bad_input_through_the_runtime(host, durable, app_env) -> None:
    bad_id = await post(host, durable.starter(), "@bad")
    assert (bad_id.status, bad_id.kind()) == (400, "invalid-instance-id")
    bad_body = await post(host, durable.starter(), "rt-body", b'{"items": [1e400]}')
    assert (bad_body.status, bad_body.kind()) == (400, "invalid-body")
    # The host joins repeated query values with ","; the app still sees both.
    repeated = await post(
        host, durable.starter(), "rt-q", query="onConflict=reject&onConflict=useExisting"
    )
    assert (repeated.status, repeated.kind()) == (400, "invalid-query-parameter")
    assert durable.accepted_starts == []


async def test_outages_through_the_runtime(host, durable, app_env, monkeypatch) -> None:
    dead_durable = starter_binding(f"http://127.0.0.1:{free_port()}/durabletask/")
    answer = await post(host, dead_durable, "rt-down")
    assert (answer.status, answer.kind()) == (503, "durable-unavailable")
    assert answer.headers["retry-after"]
    await change_setting(monkeypatch, "AzureWebJobsStorage", connection_string(free_port()))
    answer = await post(host, durable.starter(), "rt-storage-down")
    assert (answer.status, answer.kind()) == (503, "storage-unavailable")


async def test_the_orchestrator_through_the_runtime(host) -> None:
    context = History({"items": ["a"]}).context()
    response = await host.invoke(
        "SingletonOrchestrator", {"context": host.orchestration_context(context)}
    )
    assert host.succeeded(response), host.failure(response)
    state = host.return_value(response)  # the runtime hands it back as JSON
    [when_any] = state["actions"][0]
    call, stop = when_any["compoundActions"]
    assert json.loads(call["input"]) == {"item": "a", "index": 0}
    assert stop["externalEventName"] == "Stop"


async def test_the_next_run_activity_through_the_runtime(host, app_env) -> None:
    """A run's end takes its next run from the channel (none here: the channel closes)."""
    take = {"op": "take", "hub": "RuntimeHub", "instanceId": "rt-next", "run": "r-1"}
    response = await host.invoke("SingletonNextRun", {"request": host.json(take)})
    assert host.succeeded(response), host.failure(response)
    assert host.return_value(response) is None
    again = await host.invoke("SingletonNextRun", {"request": host.json(take)})
    assert host.succeeded(again) and host.return_value(again) is None  # a retry: the same


async def test_the_activity_round_trips_its_input(host) -> None:
    work = {"item": {"name": "x", "n": [1, 2.5, None, True]}, "index": 3}
    response = await host.invoke("SingletonActivity", {"work": host.json(work)})
    assert host.succeeded(response), host.failure(response)
    assert host.return_value(response) == {"index": 3, "item": work["item"], "status": "processed"}


async def test_a_timer_tick_through_the_runtime(
    host, durable, app_env, monkeypatch, caplog
) -> None:
    """The host sends the timer as JSON (TimerInfo: Schedule, ScheduleStatus, IsPastDue)."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("SINGLETON_SCHEDULE_ENABLED", "true")
    monkeypatch.setenv("SINGLETON_SCHEDULE_INSTANCE_ID", "rt-timer")
    timer = host.json(
        {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {"Last": "2026-01-05T03:00:00Z", "Next": "2026-01-05T03:15:00Z"},
            "IsPastDue": True,
        }
    )
    response = await host.invoke(
        "TimerStartSingle", {"timer": timer, "starter": host.durable_client(durable.starter())}
    )
    assert host.succeeded(response), host.failure(response)
    assert durable.accepted_starts == [("SingletonOrchestrator", "rt-timer")]
    [line] = [r.getMessage() for r in caplog.records if "trigger=timer" in r.getMessage()]
    assert "decision=started" in line and "past_due=true" in line


async def test_one_log_line_per_request_and_no_key_anywhere(
    host, durable, app_env, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    await post(host, durable.starter(), "rt-log")
    await post(host, durable.starter(), "rt-log")
    lines = [r for r in caplog.records if r.getMessage().startswith("HttpStartSingle ")]
    assert len(lines) == 2
    assert "decision=started" in lines[0].getMessage()
    assert "decision=rejected-active" in lines[1].getMessage()
    assert not [r for r in caplog.records if SYSTEM_KEY in r.getMessage()]


# -- the app's own modules win under the runtime's sys.path order ------------------------


def _installed_top_level_names() -> Set[str]:
    names: Set[str] = set()
    for distribution in metadata.distributions():
        top_level = distribution.read_text("top_level.txt")
        if top_level:
            names.update(line.strip() for line in top_level.splitlines() if line.strip())
        for path in distribution.files or []:
            if path.parts and path.parts[0].endswith(".py"):
                names.add(path.parts[0][:-3])
            elif len(path.parts) > 1 and path.parts[1] == "__init__.py":
                names.add(path.parts[0])
    return names


def test_no_installed_distribution_provides_an_app_module() -> None:
    """The runtime appends the app root to sys.path, so an installed module of the same
    name would win over the app's: none of the app's top-level names may be taken."""
    app_names = {"durable_singleton", "singleton_app", *FUNCTIONS}
    assert not app_names & _installed_top_level_names()


def test_the_runtime_imports_the_apps_own_package() -> None:
    script = textwrap.dedent(f"""
        import importlib.util  # the worker has it imported before it loads functions
        import sys
        root = {str(APP_ROOT)!r}
        sys.path[:] = [p for p in sys.path if p not in ("", root)]
        from azure_functions_runtime_v1 import loader
        loader.install()
        sys.path.append(root)  # what the worker does with the app root
        loader.load_function("HttpStartSingle", root + "/HttpStartSingle",
                             root + "/HttpStartSingle/__init__.py", "main")
        print(sys.modules["durable_singleton"].__file__)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip().startswith(str(APP_ROOT / "durable_singleton"))
