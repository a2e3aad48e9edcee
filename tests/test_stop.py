"""A graceful Stop only where it can work: an orchestrator takes it when it says so, a
user's orchestrator takes it with stop_requested (through the SDK's replay engine), and
every door that would send a Stop to one that does not refuses and sends nothing."""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import azure.durable_functions as df
import pytest
from azure.functions.timer import TimerRequest

import durable_singleton
from durable_singleton import Catalog, OnConflict, SingletonApp, StopMode
from durable_singleton.errors import ProblemError
from tests.support.answers import problem
from tests.support.app import APP_ROOT
from tests.support.contract import check_response
from tests.support.history import History
from tests.support.requests import instance_request, start_request

ITEMS = ["a", "b", "c"]


def user_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    """Written as a user of the library would: its work, and two lines for Stop."""
    stop = durable_singleton.stop_requested(context)
    done = []
    for item in context.get_input():
        work = context.call_activity("work", item)
        if (yield context.task_any([work, stop])) is stop:
            return {"stopped": True, "done": done}
        done.append(work.result)
    return {"stopped": False, "done": done}


main = df.Orchestrator.create(user_orchestrator)


def episode(history: History) -> Dict[str, Any]:
    return json.loads(main(history.context()))


def test_a_users_orchestrator_ends_at_the_stop_between_items() -> None:
    history = History(ITEMS)
    first = history.scheduled("work")
    state = episode(history)
    assert not state["isDone"]
    history.new_episode().completed(first, "a done")
    second = history.scheduled("work")
    assert not episode(history)["isDone"]
    history.new_episode().event_raised("Stop", {"run": None, "dropRequest": None})
    state = episode(history)
    assert state["isDone"] and state["output"] == {"stopped": True, "done": ["a done"]}
    assert second == 1  # the item in flight was scheduled; it finishes on its own


def test_without_a_stop_it_does_all_its_work() -> None:
    history = History(ITEMS)
    for item in ITEMS:
        sequence = history.scheduled("work")
        assert not episode(history)["isDone"]
        history.new_episode().completed(sequence, f"{item} done")
    state = episode(history)
    assert state["output"] == {"stopped": False, "done": ["a done", "b done", "c done"]}


def test_the_catalog_knows_who_takes_stop() -> None:
    catalog = Catalog.of(["Job", "Plain", "Buffered"], next_runs=["Buffered"], stops=["Job"])
    assert catalog.accepts_stop("Job") and catalog.accepts_stop("Buffered")
    assert not catalog.accepts_stop("Plain") and not catalog.accepts_stop("Nope")
    folders = Catalog.from_folders(APP_ROOT)
    assert folders.accepts_stop("SingletonOrchestrator")


@pytest.fixture
async def plain(durable, app_env) -> Any:
    """An app with an orchestrator that does not take Stop ("Plain") beside one that does."""
    durable.orchestrators = {"SingletonOrchestrator", "Plain"}
    app = SingletonApp(
        Catalog.of(["SingletonOrchestrator", "Plain"], stops=["SingletonOrchestrator"]),
        os.environ,
    )
    yield app
    await app.close()


async def test_a_delete_without_mode_is_refused_and_sends_nothing(plain, durable) -> None:
    durable.put("p-1", "Running", name="Plain")
    request = instance_request("DELETE", "Plain", "p-1", "")
    answer = check_response("DELETE", await plain.http_instance(request, durable.starter()))
    document = problem(answer, 400, "stop-not-supported")
    assert "mode=terminate" in document["detail"] and document["orchestrator"] == "Plain"
    assert sum(durable.calls.values()) == 0
    terminate = instance_request("DELETE", "Plain", "p-1", "mode=terminate")
    assert (await plain.http_instance(terminate, durable.starter())).status_code == 202
    assert [i for i, _ in durable.terminations] == ["p-1"]


async def test_stop_existing_is_refused_for_it_over_http_and_from_code(plain, durable) -> None:
    durable.put("p-2", "Running", name="Plain")
    request = start_request("Plain", "p-2", None, "onConflict=stopExisting", None, {})
    answer = check_response("POST", await plain.http_start(request, durable.starter()))
    assert "onConflict=terminateExisting" in problem(answer, 400, "stop-not-supported")["detail"]
    client = plain.client(durable.starter())
    with pytest.raises(ProblemError) as refused:
        await client.start("Plain", "p-2", on_conflict=OnConflict.STOP_EXISTING)
    assert refused.value.problem.kind == "stop-not-supported"
    with pytest.raises(ProblemError):
        await client.stop("Plain", "p-2", mode=StopMode.STOP)
    assert sum(durable.calls.values()) == 0
    # The orchestrator that takes Stop still gets it.
    durable.put("s-1", "Running")
    request = instance_request("DELETE", "SingletonOrchestrator", "s-1", "")
    assert (await plain.http_instance(request, durable.starter())).status_code == 202
    assert [(i, e) for i, e, _ in durable.events] == [("s-1", "Stop")]


async def test_a_schedule_that_would_cancel_it_starts_nothing(plain, durable, monkeypatch) -> None:
    durable.put("p-3", "Running", name="Plain")
    for name, value in {
        "SINGLETON_SCHEDULE": "0 0 * * * *",
        "SINGLETON_SCHEDULE_ENABLED": "true",
        "SINGLETON_SCHEDULE_ORCHESTRATOR": "Plain",
        "SINGLETON_SCHEDULE_INSTANCE_ID": "p-3",
        "SINGLETON_SCHEDULE_OVERLAP": "cancelOther",
    }.items():
        monkeypatch.setenv(name, value)
    await plain.close()  # the settings are read anew
    await plain.timer_tick(TimerRequest(), durable.starter())
    assert sum(durable.calls.values()) == 0


async def test_the_page_offers_stop_only_where_it_works(plain, durable) -> None:
    import azure.functions as func

    request = func.HttpRequest("GET", "http://localhost:7071/api/singletons", body=b"")
    html = (await plain.http_page(request, durable.starter())).get_body().decode()
    marker = '<script type="application/json" id="config">'
    config = json.loads(html[html.index(marker) + len(marker) :].split("</script>")[0])
    assert config["stops"] == ["SingletonOrchestrator"]
    assert sorted(config["orchestrators"]) == ["Plain", "SingletonOrchestrator"]
