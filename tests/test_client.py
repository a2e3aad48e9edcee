"""SingletonClient: the guarantee from code of an app's own, by the routes' rules."""

from __future__ import annotations

import pytest

from durable_singleton import Action, Catalog, OnConflict, SingletonApp, StopMode
from durable_singleton.errors import ProblemError


@pytest.fixture
async def client_app(durable, app_env):
    app = SingletonApp(Catalog.of(["Job", "Other"], next_runs=["Job"]))
    durable.reset(orchestrators={"Job", "Other"})
    yield app
    await app.close()


async def test_a_client_starts_reads_lists_and_stops(client_app, durable) -> None:
    client = client_app.client(durable.starter())
    started = await client.start("Job", "c-1", {"n": 1})
    assert started.started and started.kind == "started"
    refused = await client.start("Job", "c-1", {"n": 2})
    assert not refused.started and refused.action is Action.REJECT_ACTIVE
    buffered = await client.start("Job", "c-1", {"n": 3}, on_conflict=OnConflict.BUFFER_ONE)
    assert buffered.kind == "buffered" and buffered.request_id
    status = await client.status("c-1")
    assert status is not None and status.name == "Job"
    assert await client.status("none") is None
    await client.start("Other", "o-1")
    page = await client.list("Job")
    assert [s.document["instanceId"] for s in page.statuses] == ["c-1"]
    assert page.continuation is None
    stopped = await client.stop("Job", "c-1")
    assert stopped.status.name == "Job"
    assert stopped.dropped_request_id == buffered.request_id  # as DELETE names it
    assert [(i, e) for i, e, _ in durable.events] == [("c-1", "Stop")]
    assert len(durable.created) == 2


async def test_policies_are_keywords_and_bad_input_changes_nothing(client_app, durable) -> None:
    client = client_app.client(durable.starter())
    with pytest.raises(TypeError):
        await client.start("Job", "c-2", None, OnConflict.BUFFER_ONE)  # type: ignore[misc]
    with pytest.raises(ProblemError) as unknown:
        await client.list("Nope")
    assert unknown.value.problem.kind == "unknown-orchestrator"
    with pytest.raises(ProblemError) as top:
        await client.list("Job", top=0)
    assert top.value.problem.kind == "invalid-query-parameter"
    with pytest.raises(ProblemError) as missing:
        await client.stop("Job", "never-started", mode=StopMode.TERMINATE)
    assert missing.value.problem.status == 404
    assert durable.created == [] and durable.terminations == []


async def test_a_replace_that_fails_after_dropping_the_next_run_names_it(
    client_app, durable, monkeypatch
) -> None:
    """The error of a start whose replace dropped the old instance's next run and then
    timed out carries the request dropped, as the HTTP answer's droppedRequestId does."""
    from durable_singleton.errors import ReplaceTimedOut
    from tests.support.app import change_setting

    await change_setting(monkeypatch, "SINGLETON_TERMINATE_TIMEOUT_SECONDS", "1")
    durable.reset(orchestrators={"Job"}, terminate_delay=None)  # it never ends
    client = client_app.client(durable.starter())
    await client.start("Job", "c-2", {"n": 1})
    buffered = await client.start("Job", "c-2", {"n": 2}, on_conflict=OnConflict.BUFFER_ONE)
    with pytest.raises(ReplaceTimedOut) as raised:
        await client.start("Job", "c-2", {"n": 3}, on_conflict=OnConflict.TERMINATE_EXISTING)
    assert raised.value.dropped_request_id == buffered.request_id
