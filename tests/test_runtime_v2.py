"""The v2 layer: the example decorator app (examples/v2) under the v2 Python runtime.

``azure-functions-runtime`` (Python 3.13+) indexes ``function_app.py``, finds the
functions the app declares and the ones durable_singleton's Blueprint registers, and
converts the host's messages into their arguments, as under ``func start``;
tests/support/functions_host.py plays the host. Skipped where the runtime cannot be
installed (Python before 3.13).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List

import pytest
from azure.durable_functions.models.actions.ActionType import ActionType

pytest.importorskip("azure_functions_runtime", reason="the v2 runtime needs Python 3.13+")

from tests.support.app import APP_ROOT  # noqa: E402
from tests.support.contract import check_answer  # noqa: E402
from tests.support.durable_double import DurableDouble  # noqa: E402
from tests.support.functions_host import FunctionsHost, HttpAnswer  # noqa: E402
from tests.support.history import History  # noqa: E402
from tests.support.job_driver import flattened  # noqa: E402

pytestmark = pytest.mark.runtime

EXAMPLE = APP_ROOT / "examples" / "v2"
ORIGIN = "http://localhost:7071"
ORCHESTRATOR = "nightly_import"


@pytest.fixture(scope="module")
async def host() -> Iterator[FunctionsHost]:
    """The v2 runtime, initialised on the example app, its functions indexed."""
    functions_host = FunctionsHost(EXAMPLE, model="v2")
    response = await functions_host.init()
    assert functions_host.succeeded(response), functions_host.failure(response)
    assert functions_host.succeeded(await functions_host.index())
    yield functions_host
    import function_app  # imported by the runtime when it indexed the app

    await function_app.singleton.close()


@pytest.fixture
def example_double(durable: DurableDouble) -> DurableDouble:
    """The Durable double, running the example's orchestrator."""
    durable.orchestrators = {ORCHESTRATOR}
    return durable


async def call(
    host: FunctionsHost,
    function: str,
    method: str,
    starter: str,
    instance_id: str,
    body: bytes = b"",
    query: str = "",
) -> HttpAnswer:
    """One HTTP request on the instance route, through the runtime."""
    url = f"{ORIGIN}/api/orchestrators/{ORCHESTRATOR}/{instance_id}" + (
        f"?{query}" if query else ""
    )
    request = host.http(
        method,
        url,
        {"Content-Type": "application/json"},
        {"functionName": ORCHESTRATOR, "instanceId": instance_id},
        body,
    )
    response = await host.invoke(
        function, {"req": request, "starter": host.durable_client(starter)}
    )
    assert host.succeeded(response), host.failure(response)
    answer = host.http_answer(response)
    check_answer(method, answer.status, answer.headers, answer.body)  # the same contract
    return answer


async def test_the_runtime_indexes_the_apps_functions_and_the_blueprints(host) -> None:
    assert set(host.function_ids) == {
        ORCHESTRATOR,
        "import_file",
        "HttpStartSingle",
        "SingletonInstance",
        "SingletonList",
        "SingletonsPage",
        "OpenApiDocument",
        "start_import",
        "export_tables",
        "export_table",
        "SingletonNextRun",
        "HttpStartLimited",
        "LimitedRequest",
        "SingletonLimitSweep",
    }


async def test_a_function_of_the_apps_own_starts_through_the_client(
    host, example_double, app_env
) -> None:
    """examples/v2's start_import: its own route, SingletonClient.start and answer()."""
    starter = example_double.starter()

    async def post(day: str) -> HttpAnswer:
        url = f"{ORIGIN}/api/imports/{day}"
        request = host.http("POST", url, {}, {"day": day}, b"")
        response = await host.invoke(
            "start_import", {"req": request, "starter": host.durable_client(starter)}
        )
        assert host.succeeded(response), host.failure(response)
        return host.http_answer(response)

    started = await post("2026-12-03")
    assert started.status == 202 and started.json()["outcome"] == "started"
    assert example_double.instances["import-2026-12-03"].input == ["2026-12-03.csv"]
    again = await post("2026-12-03")
    assert (again.status, again.kind()) == (409, "instance-active")
    bad = await post("no/such")
    assert (bad.status, bad.kind()) == (400, "invalid-instance-id")
    assert example_double.accepted_starts == [(ORCHESTRATOR, "import-2026-12-03")]


async def test_a_start_a_conflict_a_status_and_a_stop(host, example_double, app_env) -> None:
    starter = example_double.starter()
    started = await call(host, "HttpStartSingle", "POST", starter, "v2-job", b'["a.csv"]')
    assert started.status == 202
    assert example_double.instances["v2-job"].input == ["a.csv"]
    conflict = await call(host, "HttpStartSingle", "POST", starter, "v2-job", b'["b.csv"]')
    assert (conflict.status, conflict.kind()) == (409, "instance-active")
    status = await call(host, "SingletonInstance", "GET", starter, "v2-job")
    assert (status.status, status.json()["runtimeStatus"]) == (200, "Running")
    stop = await call(
        host, "SingletonInstance", "DELETE", starter, "v2-job", query="mode=terminate"
    )
    assert stop.status == 202
    assert [i for i, _ in example_double.terminations] == ["v2-job"]
    assert example_double.accepted_starts == [(ORCHESTRATOR, "v2-job")]


async def test_bad_input_is_refused_by_the_apps_own_rule(host, example_double, app_env) -> None:
    starter = example_double.starter()
    answer = await call(host, "HttpStartSingle", "POST", starter, "v2-bad", b'{"not": "a list"}')
    assert (answer.status, answer.kind()) == (400, "invalid-input")
    assert "array of file names" in answer.json()["detail"]
    bad_id = await call(host, "HttpStartSingle", "POST", starter, "@bad")
    assert (bad_id.status, bad_id.kind()) == (400, "invalid-instance-id")
    assert sum(example_double.calls.values()) == 0


async def test_an_orchestration_episode_and_an_activity_call(host) -> None:
    context = History(["a.csv"], "v2-job").context()
    response = await host.invoke(ORCHESTRATOR, {"context": host.orchestration_context(context)})
    assert host.succeeded(response), host.failure(response)
    [[action]] = host.return_value(response)["actions"]
    assert (action["functionName"], json.loads(action["input"])) == ("import_file", "a.csv")
    response = await host.invoke("import_file", {"name": host.json("a.csv")})
    assert host.succeeded(response), host.failure(response)
    assert host.return_value(response) == "imported a.csv"


async def test_the_contract_is_served(host) -> None:
    request = host.http("GET", f"{ORIGIN}/api/singletons/openapi.yaml", {}, {})
    response = await host.invoke("OpenApiDocument", {"req": request})
    assert host.succeeded(response), host.failure(response)
    answer = host.http_answer(response)
    assert answer.status == 200 and answer.body.startswith(b"openapi: 3.1")


EXPORT = "export_tables"  # the example's orchestrator with a limit of 2 per key


def calls_of(state: Dict[str, Any]) -> List[Any]:
    """(function, input) of each activity an orchestrator episode scheduled."""
    actions = flattened(state["actions"][0]) if state["actions"] else []
    return [(a["functionName"], json.loads(a["input"])) for a in actions if "functionName" in a]


async def test_an_orchestrator_of_the_apps_own_with_a_limit_passes_its_slot_on(
    host, durable, app_env
) -> None:
    """examples/v2's export_tables (``runs.takes_next_runs``, a limit of 2): two starts
    take the key's slots, the third waits; the first slot's run, episode by episode in the
    runtime, ends by taking the third through SingletonNextRun and continues with it."""
    durable.orchestrators = {EXPORT}
    durable.use_storage(os.environ["AzureWebJobsStorage"], app_env)
    starter = host.durable_client(durable.starter())
    answers = []
    for n in range(3):
        request = host.http(
            "POST",
            f"{ORIGIN}/api/limits/{EXPORT}/acme",
            {"Content-Type": "application/json"},
            {"functionName": EXPORT, "key": "acme"},
            json.dumps({"tables": [f"t{n}"]}).encode(),
        )
        response = await host.invoke("HttpStartLimited", {"req": request, "starter": starter})
        assert host.succeeded(response), host.failure(response)
        answer = host.http_answer(response)
        check_answer(
            "POST", answer.status, answer.headers, answer.body, "/limits/{functionName}/{key}"
        )
        answers.append(answer.json())
    assert [a["outcome"] for a in answers] == ["started", "started", "queued"]

    first = durable.instances["acme~0"].input
    history = History(first, "acme~0")
    response = await host.invoke(
        EXPORT, {"context": host.orchestration_context(history.context())}
    )
    assert host.succeeded(response), host.failure(response)
    state = host.return_value(response)
    assert calls_of(state) == [("export_table", "t0")]  # the caller's input, not the app's member
    assert state["customStatus"]["run"] == first["run"]["id"]  # the app sees the run began

    sequence = history.scheduled("export_table")
    history.new_episode().completed(sequence, "exported t0")
    response = await host.invoke(
        EXPORT, {"context": host.orchestration_context(history.context())}
    )
    activity, take = calls_of(host.return_value(response))[-1]  # after the dump: the take
    assert activity == "SingletonNextRun" and take["op"] == "take"

    response = await host.invoke("SingletonNextRun", {"request": host.json(take)})
    assert host.succeeded(response), host.failure(response)
    taken = host.return_value(response)
    assert taken == {"request": answers[2]["requestId"], "input": {"tables": ["t2"]}}

    sequence = history.scheduled("SingletonNextRun")
    history.new_episode().completed(sequence, taken)
    response = await host.invoke(
        EXPORT, {"context": host.orchestration_context(history.context())}
    )
    actions = flattened(host.return_value(response)["actions"][0])
    [continued] = [a for a in actions if a["actionType"] == ActionType.CONTINUE_AS_NEW]
    assert json.loads(continued["input"]) == {
        "tables": ["t2"],
        "run": {"id": answers[2]["requestId"], "hub": first["run"]["hub"]},
    }


async def test_a_slot_terminated_in_the_app_passes_to_the_queued_request(
    host, durable, app_env
) -> None:
    """In the v2 runtime: DELETE mode=terminate on a slot of export_tables (a limit of 2)
    while a request waits; once the instance has ended, the waiting request starts in that
    slot without the sweep timer."""
    import function_app

    from tests.support.app import settled

    durable.orchestrators = {EXPORT}
    durable.use_storage(os.environ["AzureWebJobsStorage"], app_env)
    starter = host.durable_client(durable.starter())

    async def invoke(function: str, method: str, path: str, params: Dict[str, str]) -> Any:
        body = b'{"tables": ["t"]}' if method == "POST" else b""
        request = host.http(
            method, f"{ORIGIN}/api/{path}", {"Content-Type": "application/json"}, params, body
        )
        response = await host.invoke(function, {"req": request, "starter": starter})
        assert host.succeeded(response), host.failure(response)
        return host.http_answer(response)

    limited = {"functionName": EXPORT, "key": "globex"}
    answers = [
        (await invoke("HttpStartLimited", "POST", f"limits/{EXPORT}/globex", limited)).json()
        for _ in range(3)
    ]
    assert [a["outcome"] for a in answers] == ["started", "started", "queued"]
    slot = {"functionName": EXPORT, "instanceId": "globex~0"}
    path = f"orchestrators/{EXPORT}/globex~0?mode=terminate"
    stop = await invoke("SingletonInstance", "DELETE", path, slot)
    assert stop.status == 202
    await settled(function_app.singleton)  # the pass-on, after the answer
    assert durable.instances["globex~0"].input["run"]["id"] == answers[2]["requestId"]
    assert [i for _, i in durable.accepted_starts].count("globex~0") == 2


async def test_the_example_app_answers_faults_as_the_library_promises(
    host, example_double, azurite, app_env, monkeypatch
) -> None:
    """Under the v2 runtime, faults made by the fault proxy reach the example app as they
    reach ours: a terminate whose answer is lost is 503 stop-outcome-unknown (and was
    carried out); a start whose answer is lost is answered from the status (202, started
    once); storage that hangs is a 503 storage-unavailable with Retry-After within the
    storage time limit, nothing started; once storage answers again, the start is made."""
    import time

    import function_app

    from tests.support.azurite import connection_string
    from tests.support.durable_double import starter_binding
    from tests.support.fault_proxy import FaultProxy
    from tests.support.waiting import until

    durable_proxy = FaultProxy(example_double.port).start()
    storage_proxy = FaultProxy(azurite.port).start()
    monkeypatch.setenv("AzureWebJobsStorage", connection_string(storage_proxy.port))
    monkeypatch.setenv("SINGLETON_STORAGE_TIMEOUT_SECONDS", "1")
    await function_app.singleton.close()  # a setting change starts the app again, as on Azure
    starter = starter_binding(f"http://127.0.0.1:{durable_proxy.port}/durabletask/")
    try:
        first = await call(host, "HttpStartSingle", "POST", starter, "v2-stop", b'["s.csv"]')
        assert first.status == 202
        durable_proxy.set("cut_responses", match=b"POST /durabletask/instances/v2-stop/terminate")
        stop = await call(
            host, "SingletonInstance", "DELETE", starter, "v2-stop", query="mode=terminate"
        )
        assert (stop.status, stop.kind()) == (503, "stop-outcome-unknown")
        await until(lambda: example_double.instances["v2-stop"].status == "Terminated")
        durable_proxy.set("cut_responses", match=b"POST /durabletask/orchestrators/", times=1)
        lost = await call(host, "HttpStartSingle", "POST", starter, "v2-lost", b'["a.csv"]')
        assert lost.status == 202 and lost.json()["id"] == "v2-lost"
        storage_proxy.set("stall")
        began = time.monotonic()
        hung = await call(host, "HttpStartSingle", "POST", starter, "v2-hung", b'["b.csv"]')
        waited = time.monotonic() - began
        assert (hung.status, hung.kind()) == (503, "storage-unavailable")
        assert {name.lower() for name in hung.headers} >= {"retry-after"}
        assert [i for _, i in example_double.accepted_starts] == ["v2-stop", "v2-lost"]
        storage_proxy.set("pass")
        again = await call(host, "HttpStartSingle", "POST", starter, "v2-hung", b'["b.csv"]')
        assert again.status == 202
    finally:
        await function_app.singleton.close()
        storage_proxy.stop()
        durable_proxy.stop()
    assert durable_proxy.faults == 2 and storage_proxy.faults >= 1  # the faults were made
    assert waited < 4  # the 1 s storage limit, and the runtime's own overhead
    assert [i for _, i in example_double.accepted_starts] == ["v2-stop", "v2-lost", "v2-hung"]
