"""Run once more through HttpStartSingle and SingletonInstance: onConflict=bufferOne and
debounceSeconds against the Durable double, which plays the job's part by the job's own
rules (including the races and failures the starter must answer truthfully)."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any, Dict

import pytest

from durable_singleton import Catalog, SingletonApp
from durable_singleton._next_run import parse_time
from tests.support.answers import problem
from tests.support.app import change_setting
from tests.support.requests import start_request

BUFFER = "onConflict=bufferOne"


def body_of(response: Any) -> Dict[str, Any]:
    return json.loads(response.get_body())


def event_data(durable: Any, index: int = -1) -> Dict[str, Any]:
    return json.loads(durable.events[index][2])


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# -- bufferOne ---------------------------------------------------------------------------


async def test_buffer_one_with_no_instance_starts_it_naming_its_run(start, durable) -> None:
    response = await start("reindex", {"items": ["a"]}, query=BUFFER)
    assert response.status_code == 202
    body = body_of(response)
    assert body["outcome"] == "started"
    assert durable.instances["reindex"].input == {
        "items": ["a"],
        "run": {"id": body["requestId"]},
    }


async def test_buffer_one_hands_the_input_to_the_active_instance(start, durable) -> None:
    await start("reindex", {"items": ["a"]})
    response = await start("reindex", {"items": ["b"]}, query=BUFFER)
    assert response.status_code == 202
    body = body_of(response)
    assert body["outcome"] == "buffered"
    assert body["runtimeStatus"] == "Pending" and body["instanceId"] == "reindex"
    assert response.headers["Location"] == body["statusQueryGetUri"]
    data = event_data(durable)
    assert [(i, e) for i, e, _ in durable.events] == [("reindex", "NextRun")]
    assert data["request"] == body["requestId"] and data["input"] == {"items": ["b"]}
    # The instance shows it by the request's id and the input's size, not its content.
    buffered = durable.instances["reindex"].custom_status["buffered"]
    assert buffered == {"request": body["requestId"], "inputBytes": len('{"items":["b"]}')}
    assert len(durable.created) == 1  # nothing else was started


async def test_the_buffered_run_begins_when_the_run_completes(start, durable) -> None:
    durable.reset(complete_after=0.3)
    first = body_of(await start("reindex", {"items": ["a"]}, query=BUFFER))
    second = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    await asyncio.sleep(0.5)
    runs = [(run_id, input_) for _, run_id, input_, _ in durable.runs]
    assert runs == [
        (first["requestId"], {"items": ["a"], "run": {"id": first["requestId"]}}),
        (second["requestId"], {"items": ["b"]}),
    ]
    assert len(durable.created) == 1  # one start: the next run continued as new


async def test_latest_wins_and_each_caller_is_told_which_request_is_next(start, durable) -> None:
    await start("reindex", {"items": ["a"]})
    one = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    two = body_of(await start("reindex", {"items": ["c"]}, query=BUFFER))
    assert one["outcome"] == two["outcome"] == "buffered"
    assert durable.instances["reindex"].run.buffered.request == two["requestId"]
    assert durable.instances["reindex"].run.buffered.input == {"items": ["c"]}


async def test_three_buffer_requests_during_one_run_make_one_more_run(start, durable) -> None:
    durable.reset(complete_after=0.4)
    await start("reindex", {"items": ["a"]})
    for item in ("b", "c", "d"):
        assert (await start("reindex", {"items": [item]}, query=BUFFER)).status_code == 202
    await asyncio.sleep(1.2)
    assert [input_ for _, _, input_, _ in durable.runs] == [{"items": ["a"]}, {"items": ["d"]}]


async def test_an_instance_that_completes_before_taking_it_is_started_by_the_request(
    start, durable
) -> None:
    """The race: the instance completes between the event and the acknowledgement. The
    event is void (it names the ended run), and the request starts the run itself."""
    await start("reindex", {"items": ["a"]})
    durable.reset(end_before_taking=True)
    durable.put("reindex", "Running")
    response = await start("reindex", {"items": ["b"]}, query=BUFFER)
    assert response.status_code == 202
    body = body_of(response)
    assert body["outcome"] == "started"
    assert [(i, e) for i, e, _ in durable.events] == [("reindex", "NextRun")]
    assert durable.created == [("reindex", {"items": ["b"], "run": {"id": body["requestId"]}})]


async def test_an_instance_that_ended_before_the_event_is_started_by_the_request(
    start, durable
) -> None:
    durable.put("reindex", "Running")
    durable.fail_next("raiseEvent", 410)
    durable.set_status("reindex", "Completed")
    response = await start("reindex", {"items": ["b"]}, query=BUFFER)
    assert body_of(response)["outcome"] == "started"
    assert len(durable.created) == 1


async def test_a_failed_start_after_the_instance_ended_first_loses_nothing(start, durable) -> None:
    """The instance ended before it took the input, and the request's own start fails:
    the answer says so, nothing was created, and the lock is let go for the retry."""
    durable.reset(end_before_taking=True)
    durable.put("reindex", "Running")
    durable.fail_next("start", 500, {"Message": "boom"})
    problem(await start("reindex", {"items": ["b"]}, query=BUFFER), 502, "durable-error")
    assert durable.created == []
    durable.reset()
    durable.put("reindex", "Completed")
    assert body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))["outcome"] == "started"


async def test_reuse_still_decides_for_an_instance_that_ended_before_taking_it(
    start, durable
) -> None:
    durable.reset(end_before_taking=True)
    durable.put("reindex", "Running")
    response = await start("reindex", {"items": ["b"]}, query=BUFFER + "&reuse=rejectDuplicate")
    problem(response, 409, "instance-finished")
    assert durable.created == []


async def test_an_instance_that_never_takes_it_is_an_unknown_outcome(
    start, durable, monkeypatch
) -> None:
    await change_setting(monkeypatch, "SINGLETON_NEXT_RUN_WAIT_SECONDS", "1")
    durable.reset(next_run_delay=None)
    durable.put("reindex", "Running")
    response = await start("reindex", {"items": ["b"]}, query=BUFFER)
    body = problem(response, 503, "next-run-outcome-unknown")
    assert body["statusQueryGetUri"] == response.headers["Location"]
    assert "buffered" not in json.dumps(body).replace("customStatus.buffered", "")
    assert durable.created == []
    # The lock was let go: the next request is not blocked by it.
    durable.reset()
    durable.put("reindex", "Running")
    assert (await start("reindex", {"items": ["c"]}, query=BUFFER)).status_code == 202


@pytest.mark.parametrize("failure", [(503, None), (500, {"Message": "boom"})])
async def test_a_failed_event_is_an_unknown_outcome(start, durable, failure) -> None:
    durable.put("reindex", "Running")
    durable.fail_next("raiseEvent", *failure)
    problem(
        await start("reindex", {"items": ["b"]}, query=BUFFER), 503, "next-run-outcome-unknown"
    )
    assert durable.created == []


async def test_a_failed_status_read_sends_nothing(start, durable) -> None:
    durable.put("reindex", "Running")
    durable.fail_next("status", 503)
    problem(await start("reindex", {"items": ["b"]}, query=BUFFER), 502, "durable-error")
    assert durable.events == [] and durable.created == []


async def test_status_reads_that_fail_while_waiting_are_waited_out(start, durable) -> None:
    durable.reset(next_run_delay=0.5)
    durable.put("reindex", "Running")
    answer = asyncio.ensure_future(start("reindex", {"items": ["b"]}, query=BUFFER))
    while not durable.events:
        await asyncio.sleep(0.01)
    durable.fail_next("status", 503, times=2)  # two reads while it waits
    response = await answer
    assert body_of(response)["outcome"] == "buffered"
    assert durable.calls["status"] >= 4


async def test_a_stop_that_dropped_it_before_the_answer_is_said(start, durable) -> None:
    durable.reset(stopped_after_taking=True)
    durable.put("reindex", "Running")
    response = await start("reindex", {"items": ["b"]}, query=BUFFER)
    body = problem(response, 409, "next-run-dropped")
    assert body["runtimeStatus"] == "Completed"
    assert durable.created == [] and durable.runs == []


# -- debounce ----------------------------------------------------------------------------


async def test_a_debounced_start_creates_a_run_that_waits(start, durable) -> None:
    before = utc_now()
    response = await start("reindex", {"items": ["a"]}, query="debounceSeconds=30")
    body = body_of(response)
    assert response.status_code == 202 and body["outcome"] == "debounced"
    due = parse_time(body["dueAt"])
    assert (
        before + datetime.timedelta(seconds=30)
        <= due
        <= utc_now() + datetime.timedelta(seconds=30)
    )
    member = durable.instances["reindex"].input["run"]
    assert member["dueAt"] == body["dueAt"]
    latest = parse_time(member["latestAt"])
    assert (latest - due).total_seconds() == pytest.approx(270, abs=0.01)  # 10 x 30 - 30
    assert durable.runs == []  # not begun


async def test_a_debounced_request_while_waiting_replaces_and_pushes_back(start, durable) -> None:
    first = body_of(await start("reindex", {"items": ["a"]}, query="debounceSeconds=30"))
    await asyncio.sleep(0.05)
    second = body_of(await start("reindex", {"items": ["b"]}, query="debounceSeconds=30"))
    assert second["outcome"] == "debounced"
    assert parse_time(second["dueAt"]) > parse_time(first["dueAt"])
    run = durable.instances["reindex"].run
    assert (run.id, run.input) == (second["requestId"], {"items": ["b"]})


async def test_a_debounced_run_begins_when_due_with_the_last_input(start, durable) -> None:
    durable.reset(complete_after=0.1)
    await start("reindex", {"items": ["a"]}, query="debounceSeconds=1")
    await asyncio.sleep(0.3)
    told = body_of(await start("reindex", {"items": ["b"]}, query="debounceSeconds=1"))
    assert durable.runs == []
    await asyncio.sleep(1.4)
    [(_, run_id, input_, began)] = durable.runs
    assert (run_id, input_) == (told["requestId"], {"items": ["b"]})
    assert began >= parse_time(told["dueAt"])


async def test_debounce_max_caps_the_due_time(start, durable) -> None:
    first = body_of(await start("reindex", query="debounceSeconds=60&debounceMaxSeconds=60"))
    second = body_of(await start("reindex", query="debounceSeconds=60"))
    assert second["dueAt"] == first["dueAt"]  # at most 60 s after the first


async def test_a_debounced_request_during_the_run_is_buffered(start, durable) -> None:
    await start("reindex", {"items": ["a"]})
    body = body_of(await start("reindex", {"items": ["b"]}, query="debounceSeconds=5"))
    assert body["outcome"] == "buffered" and "dueAt" not in body


# -- stopping drops the next run, and says so -----------------------------------------------


async def test_delete_names_the_next_run_it_drops(start, instance, durable) -> None:
    durable.reset(stop_delay=5)
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    response = await instance("DELETE", "reindex")
    assert response.status_code == 202
    body = body_of(response)
    assert body["outcome"] == "stopRequested"
    assert body["droppedRequestId"] == told["requestId"]
    assert event_data(durable) == {"run": body_of_run(durable), "dropRequest": told["requestId"]}
    assert durable.instances["reindex"].run.buffered is None


def body_of_run(durable: Any) -> str:
    return durable.instances["reindex"].run.id


async def test_delete_of_a_waiting_debounced_run_drops_it(start, instance, durable) -> None:
    durable.reset(stop_delay=0.05)
    told = body_of(await start("reindex", {"items": ["a"]}, query="debounceSeconds=30"))
    body = body_of(await instance("DELETE", "reindex"))
    assert body["droppedRequestId"] == told["requestId"]
    await asyncio.sleep(0.2)
    assert durable.instances["reindex"].status == "Completed" and durable.runs == []


async def test_delete_with_nothing_buffered_drops_nothing(start, instance, durable) -> None:
    durable.reset(stop_delay=5)
    await start("reindex", {"items": ["a"]})
    body = body_of(await instance("DELETE", "reindex"))
    assert "droppedRequestId" not in body


async def test_a_next_run_buffered_after_the_stop_was_decided_still_runs(
    start, instance, durable
) -> None:
    """The Stop names what it saw; a request buffered after it was told it would run."""
    durable.reset(stop_delay=0.3)
    await start("reindex", {"items": ["a"]})
    await instance("DELETE", "reindex")
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    assert told["outcome"] == "buffered"
    await asyncio.sleep(0.5)
    assert [input_ for _, _, input_, _ in durable.runs][-1] == {"items": ["b"]}


async def _when(seen: Any, seconds: float = 5.0) -> None:
    """Wait (bounded) until ``seen()`` holds."""

    async def poll() -> None:
        while not seen():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), seconds)


@pytest.mark.parametrize(
    "method,query",
    [
        ("DELETE", "mode=stop"),
        ("DELETE", "mode=terminate"),
        ("POST", "onConflict=stopExisting"),
        ("POST", "onConflict=terminateExisting"),
    ],
)
async def test_an_end_that_meets_the_switch_to_the_next_run_never_calls_it_dropped(
    start, instance, durable, method, query
) -> None:
    """The end (Stop or terminate) is decided on a status showing run a with b buffered,
    while the instance commits the work item that ends a and begins b (the double holds
    it open). The end then reaches b's run, which has begun: the answer must not name b
    as dropped (b is stopped, not dropped)."""
    durable.reset(stop_delay=0.05)
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    durable.begin_switch("reindex")
    if method == "DELETE":
        ending = asyncio.ensure_future(instance("DELETE", "reindex", query=query))
    else:
        ending = asyncio.ensure_future(start("reindex", {"items": ["c"]}, query=query))
    await _when(lambda: durable.events[-1][1] == "Stop" or durable.terminations)
    durable.commit_switch("reindex")
    response = await ending
    assert response.status_code == 202
    began = [run_id for _, run_id, _, _ in durable.runs]
    assert told["requestId"] in began  # b's run began: it is stopped, not dropped
    assert body_of(response).get("droppedRequestId") is None


async def test_a_stop_that_reaches_the_run_before_the_switch_names_what_it_dropped(
    start, instance, durable
) -> None:
    """The same Stop, taken by run a before it ends: b never begins, and is named."""
    durable.reset(stop_delay=0.05)
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    body = body_of(await instance("DELETE", "reindex"))
    assert body["droppedRequestId"] == told["requestId"]
    await _when(lambda: durable.instances["reindex"].status == "Completed")
    assert told["requestId"] not in [run_id for _, run_id, _, _ in durable.runs]


@pytest.mark.parametrize("policy", ["stopExisting", "terminateExisting"])
async def test_a_replacing_start_names_the_next_run_it_drops(start, durable, policy) -> None:
    durable.reset(stop_delay=0.05)
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    body = body_of(await start("reindex", {"items": ["c"]}, query=f"onConflict={policy}"))
    assert body["outcome"] == "started"
    assert body["droppedRequestId"] == told["requestId"]
    assert durable.instances["reindex"].input == {"items": ["c"]}


async def test_a_terminate_waits_for_a_next_run_being_handed_over(
    start, instance, durable
) -> None:
    """DELETE mode=terminate takes the id's lock: it never ends a run whose next run a
    request is still handing over, so its answer names every next run it drops."""
    durable.reset(next_run_delay=0.4)
    await start("reindex", {"items": ["a"]})
    buffering = asyncio.ensure_future(start("reindex", {"items": ["b"]}, query=BUFFER))
    await asyncio.sleep(0.1)
    response = await instance("DELETE", "reindex", query="mode=terminate")
    told = body_of(await buffering)
    assert told["outcome"] == "buffered"
    assert body_of(response)["droppedRequestId"] == told["requestId"]


# -- rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query,kind",
    [
        ("debounceSeconds=0", "invalid-query-parameter"),
        ("debounceSeconds=3601", "invalid-query-parameter"),
        ("debounceSeconds=1.5", "invalid-query-parameter"),
        ("debounceSeconds=%C2%B2", "invalid-query-parameter"),
        ("debounceSeconds=5&debounceSeconds=6", "invalid-query-parameter"),
        ("debounceSeconds=10&debounceMaxSeconds=9", "invalid-query-parameter"),
        ("debounceSeconds=10&debounceMaxSeconds=86401", "invalid-query-parameter"),
        ("debounceMaxSeconds=10", "conflicting-parameters"),
        ("debounceSeconds=10&onConflict=reject", "conflicting-parameters"),
    ],
)
async def test_bad_debounce_parameters_change_nothing(start, durable, query, kind) -> None:
    durable.put("reindex", "Running")
    problem(await start("reindex", {"items": ["a"]}, query=query), 400, kind)
    assert sum(durable.calls.values()) == 0


async def test_an_idempotency_key_cannot_buffer(start, durable) -> None:
    problem(await start("reindex", query=BUFFER, key="k-1"), 400, "conflicting-parameters")
    assert sum(durable.calls.values()) == 0


async def test_an_orchestrator_that_has_not_opted_in_is_refused(durable, app_env) -> None:
    app = SingletonApp(Catalog.of(["Plain", "Job"], next_runs=["Job"]))
    try:
        for query in (BUFFER, "debounceSeconds=5"):
            request = start_request("Plain", "x", None, query)
            response = await app.http_start(request, durable.starter())
            body = problem(response, 400, "next-run-not-supported")
            assert body["orchestrator"] == "Plain"
        accepted = await app.http_start(start_request("Job", "x", None, BUFFER), durable.starter())
        assert accepted.status_code in (202, 502)  # the double runs no "Job": it is not refused
        assert durable.events == []
    finally:
        await app.close()


async def test_the_conflict_path_of_the_default_policy_is_unchanged(
    start, durable, blob_requests
) -> None:
    await start("reindex", {"items": ["a"]})  # an instance this app started
    await blob_requests.app.wait_for_background()
    durable.calls.clear()
    before = blob_requests.requests
    problem(await start("reindex", query=""), 409, "instance-active")
    assert durable.calls == {"status": 1}
    assert blob_requests.requests == before


async def test_the_library_start_buffers_and_debounces_by_the_same_rules(durable, app_env) -> None:
    from durable_singleton import OnConflict, ProblemError

    app = SingletonApp(Catalog.of(["Job", "Plain"], next_runs=["Job"]))
    durable.reset(orchestrators={"Job", "Plain"})
    try:
        started = await app.start(durable.starter(), "Job", "lib", {"n": 1}, debounce_seconds=5)
        assert (started.kind, started.decision) == ("debounced", "debounced")
        again = await app.start(
            durable.starter(), "Job", "lib", {"n": 2}, on_conflict=OnConflict.BUFFER_ONE
        )
        # The run still waits: the input replaced its input, due when it was.
        assert (again.kind, again.due_at) == ("debounced", started.due_at)
        assert durable.instances["lib"].run.input == {"n": 2}
        with pytest.raises(ProblemError) as refused:
            await app.start(durable.starter(), "Plain", "p", on_conflict=OnConflict.BUFFER_ONE)
        assert refused.value.problem.kind == "next-run-not-supported"
        with pytest.raises(ProblemError) as bad:
            await app.start(durable.starter(), "Job", "lib", debounce_seconds=0)
        assert bad.value.problem.kind == "invalid-query-parameter"
        with pytest.raises(ProblemError):
            await app.start(durable.starter(), "Job", "lib", debounce_max_seconds=9)
        # As the route's debounceSeconds with onConflict=reject: refused, not buffered.
        for other in (OnConflict.REJECT, OnConflict.USE_EXISTING, OnConflict.TERMINATE_EXISTING):
            with pytest.raises(ProblemError) as mixed:
                await app.start(
                    durable.starter(), "Job", "lib", on_conflict=other, debounce_seconds=5
                )
            assert mixed.value.problem.kind == "conflicting-parameters"
        assert len(durable.created) == 1
    finally:
        await app.close()


async def test_buffered_and_debounced_decisions_are_logged(start, durable, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO)
    await start("reindex", query="debounceSeconds=30")
    await start("reindex", query="debounceSeconds=30")
    durable.put("other", "Running")
    await start("other", query=BUFFER)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HttpStart")]
    assert [line.split("decision=")[1].split()[0] for line in lines] == [
        "debounced",
        "debounced",
        "buffered",
    ]
    assert "requestId" not in " ".join(lines)  # one line, the usual members only
