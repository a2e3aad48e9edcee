"""SingletonList: an orchestrator's instances, paged, with the function key only."""

from __future__ import annotations

from typing import List

import pytest

from tests.support.answers import body, problem
from tests.support.app import change_setting
from tests.support.durable_double import SYSTEM_KEY, ago


def ids(document: dict) -> List[str]:
    return [item["instanceId"] for item in document["instances"]]


async def test_lists_the_orchestrators_instances_newest_first(listing, durable) -> None:
    durable.put("old", "Completed", created=ago(300))
    durable.put("new", "Running", created=ago(10))
    durable.put("middle", "Failed", created=ago(100))
    durable.put("other", "Running", name="OtherOrchestrator")
    response = await listing()
    assert response.status_code == 200
    document = body(response)
    assert ids(document) == ["new", "middle", "old"]
    assert document["continuationToken"] is None
    first = document["instances"][0]
    assert first["runtimeStatus"] == "Running" and first["name"] == "SingletonOrchestrator"
    assert {"createdTime", "lastUpdatedTime", "stuck", "statusQueryGetUri"} <= set(first)
    assert durable.calls == {"list": 1}


async def test_each_item_says_progress_and_stuck(listing, durable) -> None:
    durable.put(
        "job",
        "Running",
        custom_status={
            "pass": 1,
            "processed": 3,
            "total": 10,
            "run": "r1",
        },
    )
    durable.put("stuck", "Pending", created=ago(3600))
    durable.put("plain", "Running", custom_status="something else")
    items = {i["instanceId"]: i for i in body(await listing())["instances"]}
    assert items["job"]["progress"] == {"processed": 3, "total": 10, "pass": 1}
    assert items["job"]["stuck"] is False
    assert items["stuck"]["stuck"] is True and items["stuck"]["pendingSeconds"] >= 3600
    assert "progress" not in items["stuck"] and "progress" not in items["plain"]


async def test_an_active_instance_says_whether_a_next_run_is_buffered(
    listing, start, durable
) -> None:
    await start("with-next", {"items": [1]})
    await start("with-next", {"items": [2]}, query="onConflict=bufferOne")
    await start("without", {"items": [1]})
    durable.put("done", "Completed")
    items = {i["instanceId"]: i for i in body(await listing())["instances"]}
    assert items["with-next"]["buffered"] is True
    assert items["without"]["buffered"] is False
    assert "buffered" not in items["done"]


async def test_pages_follow_the_durable_apis_token(listing, durable) -> None:
    for n in range(7):
        durable.put(f"job-{n}", "Completed", created=ago(n))
    seen: List[str] = []
    query = "top=3"
    pages = 0
    while True:
        document = body(await listing(query))
        pages += 1
        assert len(document["instances"]) <= 3
        seen += ids(document)
        token = document["continuationToken"]
        if token is None:
            break
        query = "top=3&continuationToken=" + token
    assert sorted(seen) == [f"job-{n}" for n in range(7)] and pages == 3


async def test_a_page_of_other_orchestrators_is_empty_but_goes_on(listing, durable) -> None:
    durable.put("a-other", "Running", name="OtherOrchestrator")
    durable.put("b-other", "Running", name="OtherOrchestrator")
    durable.put("c-mine", "Running")
    document = body(await listing("top=2"))
    assert document["instances"] == [] and document["continuationToken"]
    following = body(await listing("top=2&continuationToken=" + document["continuationToken"]))
    assert ids(following) == ["c-mine"]


async def test_status_filters(listing, durable) -> None:
    durable.put("r", "Running")
    durable.put("p", "Pending")
    durable.put("c", "Completed")
    assert ids(body(await listing("status=Running"))) == ["r"]
    assert sorted(ids(body(await listing("status=Running,Pending")))) == ["p", "r"]
    assert sorted(ids(body(await listing("status=Running&status=Completed")))) == ["c", "r"]


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("status=running", "status"),
        ("status=Running,Nope", "status"),
        ("status=", "status"),
        ("top=0", "top"),
        ("top=101", "top"),
        ("top=ten", "top"),
        ("continuationToken=not-ours", "continuationToken"),
        ("continuationToken=" + "A" * 5000, "continuationToken"),
    ],
)
async def test_bad_parameters_are_400_and_reach_nothing(
    listing, durable, query, parameter
) -> None:
    document = problem(await listing(query), 400, "invalid-query-parameter")
    assert document["parameter"] == parameter
    assert sum(durable.calls.values()) == 0


async def test_an_unknown_orchestrator_is_404(listing, durable) -> None:
    problem(await listing(function_name="Nope"), 404, "unknown-orchestrator")
    assert sum(durable.calls.values()) == 0


async def test_with_app_links_no_system_key_leaves(listing, durable, monkeypatch) -> None:
    await change_setting(monkeypatch, "SINGLETON_MANAGEMENT_LINKS", "app")
    durable.put("job", "Running")
    response = await listing()
    assert SYSTEM_KEY not in response.get_body().decode()
    [item] = body(response)["instances"]
    resource = "http://localhost:7071/api/orchestrators/SingletonOrchestrator/job"
    assert item["statusQueryGetUri"] == resource
    assert item["terminateDeleteUri"] == resource + "?mode=terminate"


async def test_a_failing_durable_api_is_a_clear_5xx(listing, durable) -> None:
    durable.fail_next("list", 500, {"Message": "boom"})
    problem(await listing(), 502, "durable-error")
    durable.fail_next("list", 200, {"not": "a list"})
    problem(await listing(), 502, "durable-error")


async def test_app_links_name_the_instance_route_whatever_the_list_route(durable, app_env) -> None:
    """The list moves with the app's route prefix; the instances it names stay on the
    start, status and stop route."""
    import os

    import azure.functions as func

    from durable_singleton import Catalog, SingletonApp

    durable.put("job", "Running")
    environ = {**os.environ, "SINGLETON_MANAGEMENT_LINKS": "app"}
    moved = SingletonApp(Catalog.of(["SingletonOrchestrator"]), environ, route_prefix="ops")
    request = func.HttpRequest(
        "GET",
        "http://localhost:7071/api/ops/SingletonOrchestrator",
        body=b"",
        route_params={"functionName": "SingletonOrchestrator"},
    )
    try:
        [item] = body(await moved.http_list(request, durable.starter()))["instances"]
    finally:
        await moved.close()
    assert item["statusQueryGetUri"] == (
        "http://localhost:7071/api/orchestrators/SingletonOrchestrator/job"
    )
