"""SingletonInstance: a caller's status read and stop, with only the function key."""

from __future__ import annotations

import pytest
from azure.durable_functions import OrchestrationRuntimeStatus as Status

from durable_singleton._policy import ACTIVE, FINISHED
from tests.support.answers import body, problem
from tests.support.durable_double import SYSTEM_KEY


@pytest.mark.parametrize("status", sorted(s.value for s in Status))
async def test_get_describes_the_instance_in_every_status(instance, durable, status) -> None:
    durable.put("job", status)
    durable.instances["job"].custom_status = {"processed": 3}
    durable.instances["job"].output = {"processed": 5}
    response = await instance("GET", "job")
    assert response.status_code == 200
    document = body(response)
    assert (document["instanceId"], document["name"], document["runtimeStatus"]) == (
        "job",
        "SingletonOrchestrator",
        status,
    )
    assert document["customStatus"] == {"processed": 3}
    assert {"createdTime", "lastUpdatedTime"} <= set(document)
    finished = Status(status) in FINISHED
    assert ("output" in document) is finished
    if finished:
        assert document["output"] == {"processed": 5}
    assert SYSTEM_KEY not in response.get_body().decode()


async def test_get_of_an_unknown_id_is_404(instance, durable) -> None:
    document = problem(await instance("GET", "nobody"), 404, "instance-not-found")
    assert document["instanceId"] == "nobody"


async def test_get_of_another_orchestrators_instance_is_404(instance, durable) -> None:
    durable.put("job", "Running", name="OtherOrchestrator")
    problem(await instance("GET", "job"), 404, "instance-not-found")


@pytest.mark.parametrize("bad", ["@x", "a b", "..", "x" * 101])
async def test_bad_ids_are_400_and_reach_nothing(instance, durable, bad) -> None:
    problem(await instance("GET", bad), 400, "invalid-instance-id")
    problem(await instance("DELETE", bad), 400, "invalid-instance-id")
    assert sum(durable.calls.values()) == 0


async def test_unknown_orchestrator_is_404(instance, durable) -> None:
    problem(await instance("GET", "job", function_name="Nope"), 404, "unknown-orchestrator")


@pytest.mark.parametrize("status", sorted(s.value for s in ACTIVE))
async def test_delete_sends_stop_by_default(instance, durable, status) -> None:
    durable.put("job", status)
    response = await instance("DELETE", "job")
    assert response.status_code == 202
    assert response.headers["Location"] == body(response)["statusQueryGetUri"]
    assert [(i, e) for i, e, _ in durable.events] == [("job", "Stop")]
    assert durable.terminations == []


async def test_delete_with_mode_terminate_terminates(instance, durable) -> None:
    durable.put("job", "Running")
    assert (await instance("DELETE", "job", query="mode=terminate")).status_code == 202
    [(terminated, reason)] = durable.terminations
    assert terminated == "job" and "mode=terminate" in reason
    assert durable.events == []


@pytest.mark.parametrize("status", sorted(s.value for s in FINISHED))
async def test_delete_of_a_finished_instance_is_409(instance, durable, status) -> None:
    durable.put("job", status)
    document = problem(await instance("DELETE", "job"), 409, "instance-not-running")
    assert document["runtimeStatus"] == status
    assert durable.events == [] and durable.terminations == []


async def test_delete_that_races_the_end_is_409(instance, durable) -> None:
    durable.put("job", "Running")
    durable.fail_next("raiseEvent", 410)
    durable.set_status("job", "Completed")  # ended after the status read below
    durable.fail_next(
        "status",
        202,
        {
            "name": "SingletonOrchestrator",
            "instanceId": "job",
            "runtimeStatus": "Running",
            "createdTime": "2026-01-05T03:00:00Z",
        },
    )
    problem(await instance("DELETE", "job"), 409, "instance-not-running")


async def test_delete_of_an_unknown_id_is_404_and_a_bad_mode_400(instance, durable) -> None:
    problem(await instance("DELETE", "nobody"), 404, "instance-not-found")
    durable.put("job", "Running")
    document = problem(
        await instance("DELETE", "job", query="mode=kill"), 400, "invalid-query-parameter"
    )
    assert document["allowed"] == ["stop", "terminate"]
    assert durable.events == [] and durable.terminations == []


async def test_the_durable_api_down_is_503(instance, durable) -> None:
    from tests.support.azurite import free_port
    from tests.support.durable_double import starter_binding

    dead = starter_binding(f"http://127.0.0.1:{free_port()}/durabletask/")
    problem(await instance("GET", "job", starter=dead), 503, "durable-unavailable")
