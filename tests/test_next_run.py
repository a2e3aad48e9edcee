"""Run once more through HttpStartSingle and SingletonInstance: onConflict=bufferOne and
debounceSeconds against the Durable double, which plays the job's part by the job's own
rules and with its own activity code (it takes next runs from the id's channel in the
test's Azurite), including the races the starter must answer truthfully."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
from typing import Any, AsyncIterator, Callable, Dict, Optional

import pytest

from durable_singleton import Catalog, SingletonApp
from durable_singleton._next_run import Channel, Pending, parse_time
from durable_singleton._next_run_store import handle as next_run
from tests.support.answers import body as body_of
from tests.support.answers import problem
from tests.support.app import app as the_app
from tests.support.app import change_setting, root_of, settled
from tests.support.requests import instance_request, start_request
from tests.support.waiting import until

BUFFER = "onConflict=bufferOne"
HUB = "TestHubName"


def event_data(durable: Any, index: int = -1) -> Dict[str, Any]:
    return json.loads(durable.events[index][2])


def stopped_runs(durable: Any) -> list:
    """The run each Stop the double received named, in order."""
    return [event_data(durable, index)["run"] for index in range(len(durable.events))]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


async def channel_of(
    app: SingletonApp = the_app, instance_id: str = "reindex"
) -> Optional[Channel]:
    """The id's next-run channel, as the app keeps it once the work it does after its
    answers (a start's confirmation, the lease's release) is done."""
    await settled(app)
    return await root_of(app).next_runs().read(HUB, instance_id)


def app_with_channel_writes_cut(
    reads_too: Callable[[], bool] = lambda: False,
) -> "tuple[SingletonApp, list]":
    """An app of the test's catalog whose next-run channel writes (PUT ``*.next``) fail as
    on a cut connection, before they are sent, while ``cut[0]`` is True; so do its reads
    of the channel, while ``cut[0]`` is True and ``reads_too()`` is."""
    from azure.core.exceptions import ServiceRequestError

    cut = [False]

    def storage(request: Any) -> None:  # the Storage SDK's hook
        url = request.http_request.url.split("?")[0]
        if cut[0] and url.endswith(".next"):
            if request.http_request.method == "PUT" or reads_too():
                raise ServiceRequestError("connection cut (test)")

    return SingletonApp(the_app.catalog, blob_options={"raw_request_hook": storage}), cut


@contextlib.asynccontextmanager
async def storage_behind_proxy(
    azurite: Any, monkeypatch: Any, timeout: Optional[str] = None
) -> AsyncIterator[Any]:
    """The test app's storage behind a fault proxy (with a storage time limit of
    ``timeout`` seconds, if given), back on Azurite afterwards: the proxy."""
    from tests.support.azurite import connection_string
    from tests.support.fault_proxy import FaultProxy

    proxy = FaultProxy(azurite.port).start()
    await change_setting(monkeypatch, "AzureWebJobsStorage", connection_string(proxy.port))
    if timeout is not None:
        await change_setting(monkeypatch, "SINGLETON_STORAGE_TIMEOUT_SECONDS", timeout)
    try:
        yield proxy
    finally:
        proxy.stop()
        await change_setting(monkeypatch, "AzureWebJobsStorage", azurite.connection_string)


def channel_put(app_env: str, instance_id: str) -> bytes:
    """The request line of a PUT of the id's channel (a fault proxy's ``match``)."""
    from durable_singleton._next_run_store import channel_blob_name

    return f"PUT /devstoreaccount1/{app_env}/{channel_blob_name(HUB, instance_id)}".encode()


def run_ids(durable: Any) -> list:
    return [run_id for _, run_id, _, _ in durable.runs]


async def end_run(durable: Any, run: str, instance_id: str = "reindex") -> Any:
    """The job's run ``run`` ends as SingletonOrchestrator's does: it takes its next run
    from the channel (SingletonNextRun ``take``)."""
    request = {"op": "take", "hub": HUB, "instanceId": instance_id, "run": run}
    return await next_run(root_of(the_app).next_runs(), request)


# -- bufferOne ---------------------------------------------------------------------------


async def test_buffer_one_with_no_instance_starts_it_naming_its_run(start, durable) -> None:
    response = await start("reindex", {"items": ["a"]}, query=BUFFER)
    assert response.status_code == 202
    body = body_of(response)
    assert body["outcome"] == "started"
    assert durable.instances["reindex"].input == {
        "items": ["a"],
        "run": {"id": body["requestId"], "hub": HUB},
    }
    assert await channel_of() == Channel(body["requestId"])  # open, nothing next


async def test_every_start_of_the_job_opens_its_channel(start, durable) -> None:
    await start("reindex", {"items": ["a"]})
    member = durable.instances["reindex"].input["run"]
    assert member["hub"] == HUB
    assert await channel_of() == Channel(member["id"])


async def test_buffer_one_writes_the_input_as_the_next_run_without_waiting(
    start, durable, blob_requests
) -> None:
    await start("reindex", {"items": ["a"]})
    await settled(blob_requests.app)
    durable.calls.clear()
    before = blob_requests.requests
    response = await start("reindex", {"items": ["b"]}, query=BUFFER)
    assert blob_requests.requests - before == 2  # the channel's read and conditional write
    assert response.status_code == 202
    body = body_of(response)
    assert body["outcome"] == "buffered" and "replacedRequestId" not in body
    assert body["runtimeStatus"] == "Running" and body["instanceId"] == "reindex"
    assert response.headers["Location"] == body["statusQueryGetUri"]
    assert durable.calls == {"status": 1}  # no event, no wait for the instance
    assert durable.events == []
    channel = await channel_of()
    assert channel is not None and channel.next == Pending(body["requestId"], {"items": ["b"]})
    assert len(durable.created) == 1  # nothing else was started


async def test_the_buffered_run_begins_when_the_run_completes(start, durable) -> None:
    durable.reset(complete_after=0.3)
    first = body_of(await start("reindex", {"items": ["a"]}, query=BUFFER))
    second = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    await until(lambda: len(durable.runs) == 2)
    runs = [(run_id, input_) for _, run_id, input_, _ in durable.runs]
    assert runs == [
        (first["requestId"], {"items": ["a"], "run": {"id": first["requestId"], "hub": HUB}}),
        (second["requestId"], {"items": ["b"]}),
    ]
    assert len(durable.created) == 1  # one start: the next run continued as new
    await until(lambda: durable.instances["reindex"].status == "Completed")
    channel = await channel_of()
    assert channel is not None and channel.ended and channel.run == second["requestId"]


async def test_a_start_not_yet_picked_up_takes_its_next_run_once_it_runs(start, durable) -> None:
    """The instance is Pending, its custom status empty, when the next request comes (the
    runtime has not run its first episode): the app's own 202 confirmed the channel, so
    the request is buffered, and the run after the first one is the buffered request's."""
    durable.reset(pickup_delay=0.5, complete_after=0.2)
    first = body_of(await start("reindex", {"items": ["a"]}, query=BUFFER))
    assert durable.instances["reindex"].custom_status is None  # Pending: nothing shown yet
    second = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    assert second["outcome"] == "buffered" and second["runtimeStatus"] == "Pending"
    await until(lambda: len(durable.runs) == 2)
    assert run_ids(durable) == [first["requestId"], second["requestId"]]
    assert len(durable.created) == 1


async def test_a_stuck_start_holds_what_was_buffered_for_it(start, durable) -> None:
    """Never picked up (stuck Pending): the buffered request waits in the channel; the
    answer said buffered, nothing more, and nothing else starts."""
    durable.reset(pickup_delay=None)
    await start("reindex", {"items": ["a"]})
    second = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    assert second["outcome"] == "buffered"
    channel = await channel_of()
    assert channel is not None and channel.next == Pending(second["requestId"], {"items": ["b"]})
    assert durable.runs == [] and len(durable.created) == 1


async def test_latest_wins_and_each_caller_is_told_which_request_it_replaced(
    start, durable
) -> None:
    await start("reindex", {"items": ["a"]})
    one = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    two = body_of(await start("reindex", {"items": ["c"]}, query=BUFFER))
    assert one["outcome"] == two["outcome"] == "buffered"
    assert two["replacedRequestId"] == one["requestId"]
    channel = await channel_of()
    assert channel is not None and channel.next == Pending(two["requestId"], {"items": ["c"]})


async def test_three_buffer_requests_during_one_run_make_one_more_run(start, durable) -> None:
    durable.reset(complete_after=0.4)
    await start("reindex", {"items": ["a"]})
    for item in ("b", "c", "d"):
        assert (await start("reindex", {"items": [item]}, query=BUFFER)).status_code == 202
    await until(lambda: durable.instances["reindex"].status == "Completed")
    assert [input_["items"] for _, _, input_, _ in durable.runs] == [["a"], ["d"]]


async def test_a_request_that_finds_the_run_ending_starts_the_run_itself(start, durable) -> None:
    """The run took nothing and closed its channel; the instance has not completed yet.
    The request waits, under the lock, until it has, then starts the run."""
    await start("reindex", {"items": ["a"]})
    assert await end_run(durable, durable.runs[0][1]) is None  # the run ends: channel closed
    asyncio.get_running_loop().call_later(0.3, durable.set_status, "reindex", "Completed")
    response = await start("reindex", {"items": ["b"]}, query=BUFFER)
    body = body_of(response)
    assert response.status_code == 202 and body["outcome"] == "started"
    assert durable.created[-1] == (
        "reindex",
        {"items": ["b"], "run": {"id": body["requestId"], "hub": HUB}},
    )
    assert await channel_of() == Channel(body["requestId"])


async def test_reuse_still_decides_for_an_instance_that_ended_without_taking_it(
    start, durable
) -> None:
    await start("reindex", {"items": ["a"]})
    await end_run(durable, durable.runs[0][1])
    durable.set_status("reindex", "Completed")
    durable.put("reindex", "Completed")
    response = await start("reindex", {"items": ["b"]}, query=BUFFER + "&reuse=rejectDuplicate")
    problem(response, 409, "instance-finished")
    assert len(durable.created) == 1


async def test_an_instance_that_takes_no_next_run_and_does_not_end_is_a_503(
    start, durable, monkeypatch
) -> None:
    """Its run has ended (channel closed), or it was started outside the app (no
    channel): nothing is buffered, nothing started, and the lock is let go."""
    await change_setting(monkeypatch, "SINGLETON_NEXT_RUN_WAIT_SECONDS", "1")
    durable.put("outside", "Running")
    body = problem(await start("outside", {"items": ["b"]}, query=BUFFER), 503, "instance-ending")
    assert "1 s" in body["detail"]
    assert durable.created == [] and await channel_of(instance_id="outside") is None
    durable.set_status("outside", "Completed")
    assert body_of(await start("outside", {"items": ["c"]}, query=BUFFER))["outcome"] == "started"


async def test_a_failed_status_read_writes_nothing(start, durable) -> None:
    await start("reindex", {"items": ["a"]})
    before = await channel_of()
    durable.fail_next("status", 503)
    problem(await start("reindex", {"items": ["b"]}, query=BUFFER), 502, "durable-error")
    assert await channel_of() == before and len(durable.created) == 1


async def test_a_next_run_left_by_an_instance_that_failed_runs_after_the_next_start(
    start, durable
) -> None:
    """Told "buffered", it stays the next run: the app's next start of the id keeps it."""
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    durable.set_status("reindex", "Failed")  # failed without taking it
    await start("reindex", {"items": ["c"]})
    channel = await channel_of()
    assert channel is not None and channel.next == Pending(told["requestId"], {"items": ["b"]})


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
    channel = await channel_of()
    assert channel is not None and channel.waiting and channel.input == {"items": ["a"]}
    assert durable.runs == []  # not begun


async def test_a_debounced_request_while_waiting_replaces_and_pushes_back(start, durable) -> None:
    first = body_of(await start("reindex", {"items": ["a"]}, query="debounceSeconds=30"))
    await asyncio.sleep(0.05)
    second = body_of(await start("reindex", {"items": ["b"]}, query="debounceSeconds=30"))
    assert second["outcome"] == "debounced"
    assert second["replacedRequestId"] == first["requestId"]
    assert parse_time(second["dueAt"]) > parse_time(first["dueAt"])
    channel = await channel_of()
    assert channel is not None
    assert (channel.run, channel.input, channel.due_at) == (
        second["requestId"],
        {"items": ["b"]},
        second["dueAt"],
    )


async def test_a_debounced_run_begins_when_due_with_the_last_input(start, durable) -> None:
    """Its timer fires at the first due time; the channel says it moved; it waits again."""
    durable.reset(complete_after=0.1)
    await start("reindex", {"items": ["a"]}, query="debounceSeconds=1")
    await asyncio.sleep(0.3)
    told = body_of(await start("reindex", {"items": ["b"]}, query="debounceSeconds=1"))
    assert durable.runs == []
    await until(lambda: durable.runs)
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
    run = durable.runs[0][1]
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    response = await instance("DELETE", "reindex")
    assert response.status_code == 202
    body = body_of(response)
    assert body["outcome"] == "stopRequested"
    assert body["droppedRequestId"] == told["requestId"]
    assert event_data(durable) == {"run": run}
    channel = await channel_of()
    assert channel is not None and channel.next is None and channel.stopped
    assert await end_run(durable, run) is None  # the run's end takes nothing


async def test_delete_of_a_waiting_debounced_run_drops_it(start, instance, durable) -> None:
    durable.reset(stop_delay=0.05)
    told = body_of(await start("reindex", {"items": ["a"]}, query="debounceSeconds=30"))
    body = body_of(await instance("DELETE", "reindex"))
    assert body["droppedRequestId"] == told["requestId"]
    await until(lambda: durable.instances["reindex"].status == "Completed")
    assert durable.runs == []


async def test_delete_with_nothing_buffered_drops_nothing(start, instance, durable) -> None:
    durable.reset(stop_delay=5)
    await start("reindex", {"items": ["a"]})
    body = body_of(await instance("DELETE", "reindex"))
    assert "droppedRequestId" not in body


async def test_a_next_run_buffered_after_the_stop_was_decided_still_runs(
    start, instance, durable
) -> None:
    """The Stop drops what the channel held; a request buffered after it was told it
    would run, and runs once the stopped run has ended."""
    durable.reset(stop_delay=0.3)
    await start("reindex", {"items": ["a"]})
    await instance("DELETE", "reindex")
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    assert told["outcome"] == "buffered"
    await until(lambda: len(durable.runs) == 2)
    assert durable.runs[-1][1:3] == (told["requestId"], {"items": ["b"]})


@pytest.mark.parametrize("policy", ["stopExisting", "terminateExisting"])
async def test_a_replacing_start_names_the_next_run_it_drops(start, durable, policy) -> None:
    durable.reset(stop_delay=0.05)
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    body = body_of(await start("reindex", {"items": ["c"]}, query=f"onConflict={policy}"))
    assert body["outcome"] == "started"
    assert body["droppedRequestId"] == told["requestId"]
    assert durable.instances["reindex"].input["items"] == ["c"]
    assert told["requestId"] not in run_ids(durable)


@pytest.mark.parametrize(
    "policy,refused",
    [("stopExisting", "stop-timeout"), ("terminateExisting", "termination-timeout")],
)
async def test_a_replacing_start_that_times_out_still_names_the_next_run_it_dropped(
    start, durable, monkeypatch, policy, refused
) -> None:
    """The Stop (or terminate) is sent and the instance's next run dropped, then the old
    instance does not end in time: nothing is started (409), but the drop stands, so the
    answer names the request dropped; otherwise its caller, told ``buffered``, would never
    hear that its run will not run."""
    await change_setting(monkeypatch, "SINGLETON_TERMINATE_TIMEOUT_SECONDS", "1")
    durable.reset(stop_delay=None, terminate_delay=None)  # it never ends
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    response = await start("reindex", {"items": ["c"]}, query=f"onConflict={policy}")
    assert problem(response, 409, refused)["droppedRequestId"] == told["requestId"]
    channel = await channel_of()
    assert channel is not None and channel.next is None  # dropped: it never runs


async def test_a_terminate_drops_the_next_run_and_closes_the_channel(
    start, instance, durable, monkeypatch
) -> None:
    await change_setting(monkeypatch, "SINGLETON_NEXT_RUN_WAIT_SECONDS", "5")
    durable.reset(terminate_delay=0.3)
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    response = await instance("DELETE", "reindex", query="mode=terminate")
    assert body_of(response)["droppedRequestId"] == told["requestId"]
    # A request meanwhile finds the channel closed: it starts once the instance ended.
    after = body_of(await start("reindex", {"items": ["c"]}, query=BUFFER))
    assert after["outcome"] == "started"
    assert durable.instances["reindex"].input["items"] == ["c"]


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
    """Run a has ended and taken b in a work item that is still committing (the double
    holds it open) when the end (Stop or terminate) is decided: b has begun, so it is
    stopped, never called dropped."""
    durable.reset(stop_delay=0.05)
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    durable.begin_switch("reindex")
    if method == "DELETE":
        ending = asyncio.ensure_future(instance("DELETE", "reindex", query=query))
    else:
        ending = asyncio.ensure_future(start("reindex", {"items": ["c"]}, query=query))
    await until(lambda: durable.events or durable.terminations)
    durable.commit_switch("reindex")
    response = await ending
    assert response.status_code == 202
    assert told["requestId"] in run_ids(durable)  # b's run began: it is stopped
    assert body_of(response).get("droppedRequestId") is None


@pytest.mark.parametrize(
    "method,query",
    [("DELETE", "mode=terminate"), ("POST", "onConflict=terminateExisting")],
)
async def test_a_terminate_that_ends_the_instance_after_its_take_names_the_run_taken(
    start, instance, durable, method, query
) -> None:
    """Run a has ended and taken b (its activity wrote the channel), and the terminate
    arrives before the episode that would continue as new with b: the instance ends in
    a, b never begins, and the answer must say it dropped b."""
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    durable.begin_switch("reindex", terminated_first=True)
    if method == "DELETE":
        response = await instance("DELETE", "reindex", query=query)
    else:
        response = await start("reindex", {"items": ["c"]}, query=query)
    assert response.status_code == 202
    assert body_of(response).get("droppedRequestId") == told["requestId"]
    assert told["requestId"] not in run_ids(durable)


async def test_a_stop_decided_before_the_switch_drops_it_and_it_never_runs(
    start, instance, durable
) -> None:
    durable.reset(stop_delay=0.3)  # the run ends after the drop was decided
    await start("reindex", {"items": ["a"]})
    told = body_of(await start("reindex", {"items": ["b"]}, query=BUFFER))
    body = body_of(await instance("DELETE", "reindex"))
    assert body["droppedRequestId"] == told["requestId"]
    await until(lambda: durable.instances["reindex"].status == "Completed")
    assert told["requestId"] not in run_ids(durable)


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
    await settled(blob_requests.app)
    durable.calls.clear()
    before = blob_requests.requests
    problem(await start("reindex", query=""), 409, "instance-active")
    assert durable.calls == {"status": 1}
    assert blob_requests.requests == before


async def test_the_library_start_buffers_and_debounces_by_the_same_rules(durable, app_env) -> None:
    from durable_singleton import OnConflict
    from durable_singleton.errors import ProblemError

    app = SingletonApp(Catalog.of(["Job", "Plain"], next_runs=["Job"]))
    durable.reset(orchestrators={"Job", "Plain"})
    try:
        started = await app.client(durable.starter()).start(
            "Job", "lib", {"n": 1}, debounce_seconds=5
        )
        assert (started.kind, started.decision) == ("debounced", "debounced")
        again = await app.client(durable.starter()).start(
            "Job", "lib", {"n": 2}, on_conflict=OnConflict.BUFFER_ONE
        )
        # The run still waits: the input replaced its input, due when it was.
        assert (again.kind, again.due_at) == ("debounced", started.due_at)
        assert (await channel_of(app, "lib")).input == {"n": 2}
        with pytest.raises(ProblemError) as refused:
            await app.client(durable.starter()).start(
                "Plain", "p", on_conflict=OnConflict.BUFFER_ONE
            )
        assert refused.value.problem.kind == "next-run-not-supported"
        with pytest.raises(ProblemError) as bad:
            await app.client(durable.starter()).start("Job", "lib", debounce_seconds=0)
        assert bad.value.problem.kind == "invalid-query-parameter"
        with pytest.raises(ProblemError):
            await app.client(durable.starter()).start("Job", "lib", debounce_max_seconds=9)
        # As the route's debounceSeconds with onConflict=reject: refused, not buffered.
        for other in (OnConflict.REJECT, OnConflict.USE_EXISTING, OnConflict.TERMINATE_EXISTING):
            with pytest.raises(ProblemError) as mixed:
                await app.client(durable.starter()).start(
                    "Job", "lib", on_conflict=other, debounce_seconds=5
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
    await start("other")
    await start("other", query=BUFFER)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HttpStart")]
    assert [line.split("decision=")[1].split()[0] for line in lines] == [
        "debounced",
        "debounced",
        "started",
        "buffered",
    ]
    assert "requestId" not in " ".join(lines)  # one line, the usual members only


async def test_an_orchestrator_that_takes_next_runs_takes_an_object_without_run(
    durable, app_env
) -> None:
    """The app adds the member run (the run's name and its channel's task hub): any other
    input could not carry it, and a caller's own run would be overwritten."""
    app = SingletonApp(Catalog.of(["Job"], next_runs=["Job"]))
    durable.reset(orchestrators={"Job"})
    try:
        for body in ([1, 2], "text", {"run": {"id": "mine"}}):
            request = start_request("Job", "x", body, "")
            problem(await app.http_start(request, durable.starter()), 400, "invalid-input")
        assert sum(durable.calls.values()) == 0
        accepted = await app.http_start(start_request("Job", "x", {"n": 1}, ""), durable.starter())
        assert accepted.status_code == 202
    finally:
        await app.close()


async def test_a_burst_in_one_process_is_written_together_and_every_answer_is_true(
    start, durable, blob_requests
) -> None:
    """Thirty requests at once: their changes are written a round at a time, each
    answered with the request it replaced, so exactly one is next and every other one is
    named replaced by exactly one answer."""
    await start("burst", {"items": ["a"]})
    await settled(blob_requests.app)
    before = blob_requests.requests
    answers = await asyncio.gather(
        *[start("burst", {"items": [n]}, query=BUFFER) for n in range(30)]
    )
    bodies = [body_of(a) for a in answers]
    assert {b["outcome"] for b in bodies} == {"buffered"}
    replaced = [b["replacedRequestId"] for b in bodies if "replacedRequestId" in b]
    requests = {b["requestId"] for b in bodies}
    assert len(replaced) == len(set(replaced)) == 29 and set(replaced) < requests
    [last] = requests - set(replaced)
    channel = await channel_of(instance_id="burst")
    assert channel is not None and channel.next is not None and channel.next.request == last
    assert blob_requests.requests - before < 30  # not a read and a write per request


async def test_a_write_whose_answer_is_lost_is_read_back_not_done_twice(
    start, durable, azurite, app_env, monkeypatch
) -> None:
    """Storage takes the channel's write but its answer is cut: the app reads the channel
    back, finds its own write there, and answers as it did; it neither writes the input
    again (an SDK retry would be refused by its own condition, and taken for a conflict)
    nor calls itself the request it replaced."""
    async with storage_behind_proxy(azurite, monkeypatch) as proxy:
        await start("cut", {"items": ["a"]})
        first = body_of(await start("cut", {"items": ["b"]}, query=BUFFER))
        # A retry of the write gets through.
        proxy.set("cut_responses", match=channel_put(app_env, "cut"), times=1)
        second = await start("cut", {"items": ["c"]}, query=BUFFER)
    assert proxy.faults == 1
    body = body_of(second)
    assert second.status_code == 202 and body["outcome"] == "buffered"
    assert body["replacedRequestId"] == first["requestId"]
    channel = await channel_of(instance_id="cut")
    assert channel is not None and channel.next == Pending(body["requestId"], {"items": ["c"]})


async def test_a_write_storage_never_answers_is_sent_once_more_then_told_unknown(
    durable, azurite, app_env, monkeypatch
) -> None:
    """Storage answers the channel's reads but never its write (the PUT stalls): the read
    back shows the channel as it was, so nobody changed it, but a write held on the way
    may still land. The same write is sent once more; stalled too, whether either lands
    cannot be told, and that is what the caller is told (not "nothing written", and not
    another writer's change, tried again up to 24 times, a minute and more, and then
    called "kept changing")."""
    from durable_singleton._documents import DocumentWriteUnknown

    async with storage_behind_proxy(azurite, monkeypatch, timeout="1") as proxy:
        store = root_of(the_app).next_runs()  # the app's storage is the proxy from here
        await store.change(HUB, "stalled", lambda c: (Channel("a"), None))
        proxy.set("stall", match=channel_put(app_env, "stalled"))
        with pytest.raises(DocumentWriteUnknown) as raised:
            await store.change(HUB, "stalled", lambda c: (Channel("b"), None))
        proxy.set("pass")
        assert await channel_of(instance_id="stalled") == Channel("a")  # the stalls held it
    assert proxy.faults == 2  # the write, and the same write once more
    assert "changing" not in str(raised.value)


async def test_a_lost_write_that_another_writer_overtook_is_a_conflict_not_an_unknown(
    app_env,
) -> None:
    """A channel write is cut before it is sent (its answer lost, as far as the app can
    tell), and before the app reads the channel back another process writes it. The read
    shows that write on top of the version this one was conditional on (its write id is
    the last one this write had read), so this write did not land: it is a conflict, and
    the change is decided again on the new channel and written. It is not an unknown
    outcome (which a Stop would answer as a 503 "may have been dropped")."""
    from azure.core.exceptions import ServiceRequestError

    other = SingletonApp(the_app.catalog)
    overtaken: list = []
    decided: list = []

    def storage(request: Any) -> None:  # the Storage SDK's hook, in this app only
        url = request.http_request.url.split("?")[0]
        if len(decided) == 1 and url.endswith(".next") and request.http_request.method == "PUT":
            if not overtaken:  # the other process writes while this one's write fails
                overtaken.append(
                    asyncio.ensure_future(
                        root_of(other)
                        .next_runs()
                        .change(
                            HUB, "overtaken", lambda c: (dataclasses.replace(c, after="x"), None)
                        )
                    )
                )
            raise ServiceRequestError("connection cut (test)")

    app = SingletonApp(the_app.catalog, blob_options={"raw_request_hook": storage})
    try:
        store = root_of(app).next_runs()
        await store.change(HUB, "overtaken", lambda c: (Channel("a"), None))

        def stopping(channel: Any) -> Any:
            decided.append(channel)
            return dataclasses.replace(channel, stopped=True), "written"

        assert await store.change(HUB, "overtaken", stopping) == "written"
        await overtaken[0]
        assert [channel.after for channel in decided] == [None, "x"]  # decided again
        written = await root_of(the_app).next_runs().read(HUB, "overtaken")
        assert written is not None and written.stopped and written.after == "x"
    finally:
        await app.close()
        await other.close()


async def test_a_write_held_past_its_time_limit_is_sent_again_and_lands_once(
    durable, azurite, app_env, monkeypatch
) -> None:
    """The channel's write reaches storage only after the app's time limit (a slow server
    carries it out after its client gave up). The read back still shows the channel as it
    was, which cannot tell that write will never land; so the same write is sent again
    under the same condition, and lands: the change is written, and the held write,
    arriving later, is refused by the condition it carries. Told "nothing written"
    instead, the caller would be contradicted by the held write landing."""
    async with storage_behind_proxy(azurite, monkeypatch, timeout="1") as proxy:
        store = root_of(the_app).next_runs()  # the app's storage is the proxy from here
        await store.change(HUB, "held", lambda c: (Channel("a"), None))
        proxy.set("late", delay=2.0, match=channel_put(app_env, "held"), times=1)
        written = await store.change(HUB, "held", lambda c: (Channel("b"), "written"))
        assert written == "written"
        await asyncio.sleep(2.5)  # the held write has reached storage, and was refused
        channel = await channel_of(instance_id="held")
    assert proxy.faults == 1
    assert channel is not None and channel.run == "b" and len(channel.writes) == 2


async def test_a_buffered_request_whose_write_is_held_past_the_limit_is_told_the_truth(
    start, durable, azurite, app_env, monkeypatch
) -> None:
    """bufferOne while the channel's write reaches storage only after the app's time limit
    (a slow server). The answer must agree with the channel once the held write has
    arrived: 202 buffered, and the channel names this request next, once. (Answering 503
    "nothing buffered" and then having the held write land would run a request its caller
    was told is not buffered.)"""
    async with storage_behind_proxy(azurite, monkeypatch, timeout="1") as proxy:
        assert (await start("held-next", {"items": ["a"]})).status_code == 202
        await settled(the_app)  # the start's channel is confirmed
        proxy.set("late", delay=2.0, match=channel_put(app_env, "held-next"), times=1)
        response = await start("held-next", {"items": ["b"]}, query=BUFFER)
        await asyncio.sleep(2.5)  # the held write has reached storage
        channel = await channel_of(instance_id="held-next")
    assert proxy.faults == 1
    assert response.status_code == 202, body_of(response)
    told = body_of(response)
    assert told["outcome"] == "buffered"
    assert channel is not None and channel.next == Pending(told["requestId"], {"items": ["b"]})


async def test_a_start_whose_channel_open_lost_its_answer_confirms_what_landed(
    start, durable, azurite, app_env, monkeypatch
) -> None:
    """Storage takes the write that opens a fresh start's channel but its answer is cut:
    the app reads the channel back, finds its write, starts once, and confirms the channel
    on what it read back (not on the write it sent, whose ETag it never got)."""
    async with storage_behind_proxy(azurite, monkeypatch) as proxy:
        await start("warm", {"items": ["a"]})  # the container exists from here on
        proxy.set("cut_responses", match=channel_put(app_env, "cut-open"), times=1)
        response = await start("cut-open", {"items": ["b"]})
        await settled(the_app)
    assert proxy.faults == 1
    assert response.status_code == 202 and body_of(response)["outcome"] == "started"
    assert [i for _, i in durable.accepted_starts] == ["warm", "cut-open"]
    run = durable.instances["cut-open"].input["run"]["id"]
    assert await channel_of(instance_id="cut-open") == Channel(run)  # confirmed


async def test_a_start_decided_on_a_stale_status_never_takes_the_channel_of_a_running_one(
    start, durable
) -> None:
    """A start read "no instance", then another caller started one and let the lock go:
    the first must look again under the lock before it opens the channel, or it would
    open it over the running instance (whose waiting run would then begin with no input)
    and only then be refused by the runtime."""

    told = body_of(await start("stale", {"items": ["a"]}, query="debounceSeconds=30"))
    before = await channel_of(instance_id="stale")
    real_status = durable.instances.pop("stale")  # the first read finds no instance

    async def first_read_then_back(instance_id: str) -> None:
        # Answered "none", then started by the other caller right after the read.
        asyncio.get_running_loop().call_soon(durable.instances.__setitem__, "stale", real_status)

    durable.hold_status = first_read_then_back
    response = await start("stale", {"items": ["b"]})
    problem(response, 409, "instance-active")
    assert await channel_of(instance_id="stale") == before  # still the waiting run's
    assert before is not None and before.run == told["requestId"]


async def test_a_start_refused_after_opening_an_ended_channel_puts_it_back(start, durable) -> None:
    """A start read "no instance"; meanwhile another caller started the id and its run
    ended, taking nothing (the channel says ended), while its instance is still Running.
    The ended channel lets the start open it without reading the status again; the
    runtime then refuses the start, the caller is told the instance is active, and the
    channel is put back as it was (a Stop must not name a run that never began)."""
    await start("quick", {"items": ["a"]})
    assert await end_run(durable, durable.runs[0][1], "quick") is None  # the channel ends
    before = await channel_of(instance_id="quick")
    assert before is not None and before.ended
    real_status = durable.instances.pop("quick")  # the first read finds no instance

    async def first_read_then_back(instance_id: str) -> None:
        asyncio.get_running_loop().call_soon(durable.instances.__setitem__, "quick", real_status)

    durable.hold_status = first_read_then_back
    response = await start("quick", {"items": ["b"]})
    assert problem(response, 409, "instance-active")["runtimeStatus"] == "Running"
    await settled(the_app)
    assert await channel_of(instance_id="quick") == before
    assert len(durable.created) == 1 and durable.calls["start"] == 2  # sent, refused


async def test_a_channel_opened_for_a_start_that_did_not_happen_takes_no_request(
    start, durable
) -> None:
    """A start opens the id's channel before it is sent; here the runtime then refuses
    it (unavailable), so no instance will ever take from that channel. A request that
    read the status a moment before the last instance ended (it saw it running) must not
    be told it is buffered there: it finds the channel not confirmed, and starts the run
    itself under the lock."""
    await start("gone", {"items": ["a"]})
    assert await end_run(durable, durable.runs[0][1], "gone") is None  # channel ended
    durable.set_status("gone", "Completed")
    durable.fail_next("start", 503)
    assert (await start("gone", {"items": ["b"]})).status_code >= 500  # nothing started
    assert len(durable.created) == 1

    async def stale_read(instance_id: str) -> None:
        # This read still finds the last instance running; it ends right after.
        durable.set_status(instance_id, "Running")
        asyncio.get_running_loop().call_soon(durable.set_status, instance_id, "Completed")

    durable.hold_status = stale_read
    response = await start("gone", {"items": ["c"]}, query=BUFFER)
    body = body_of(response)
    assert response.status_code == 202 and body["outcome"] == "started", body
    assert durable.created[-1][1]["items"] == ["c"]


async def test_a_change_on_a_channel_read_earlier_decides_again_when_it_changed_since(
    app_env,
) -> None:
    """A start reads the channel while it requests the lease, and opens it on that read;
    if another caller wrote the channel in between, the write is refused and the open
    decides again on the channel as it is now, never on the earlier read."""
    store = root_of(the_app).next_runs()
    earlier = await store.read_tagged(HUB, "ahead")
    assert earlier == (None, None)
    assert await store.change(HUB, "ahead", lambda c: (Channel("theirs"), "theirs")) == "theirs"
    seen = []

    def opening(channel: Any) -> Any:
        seen.append(channel)
        return Channel("ours", starting=True), "ours"

    assert await store.change(HUB, "ahead", opening, earlier) == "ours"
    assert seen == [None, Channel("theirs")]  # the earlier read's write was refused
    assert await channel_of(instance_id="ahead") == Channel("ours", starting=True)


async def test_a_change_on_what_a_change_left_writes_without_reading(
    app_env, blob_requests
) -> None:
    """A start confirms its channel on the document and ETag its open left, with one
    write; if another caller wrote the channel in between, that write is refused and the
    change decides again on the channel as it is now (the other caller's change kept)."""
    store = root_of(blob_requests.app).next_runs()
    _, opened = await store.change_tagged(
        HUB, "tagged", lambda c: (Channel("ours", starting=True), None)
    )
    assert opened == await store.read_tagged(HUB, "tagged")  # what storage holds, its ETag
    seen = []

    def confirming(channel: Any) -> Any:
        seen.append(channel)
        return dataclasses.replace(channel, starting=False), None

    mark = blob_requests.requests
    await store.change(HUB, "tagged", confirming, opened)
    assert blob_requests.requests - mark == 1 and seen == [opened[0]]
    assert await channel_of(blob_requests.app, "tagged") == Channel("ours")

    _, opened = await store.change_tagged(
        HUB, "tagged", lambda c: (Channel("ours", starting=True), None)
    )
    theirs = Channel("theirs", next=Pending("req-1", {"n": 1}))
    await store.change(HUB, "tagged", lambda c: (theirs, None))
    seen.clear()
    await store.change(HUB, "tagged", confirming, opened)
    assert [c.run if c else None for c in seen] == ["ours", "theirs"]  # refused, decided again
    stored = await channel_of(blob_requests.app, "tagged")
    assert stored == Channel("theirs", next=Pending("req-1", {"n": 1}))


async def test_a_burst_reads_the_channel_ahead_once(start, durable, blob_requests) -> None:
    """Only the caller that asks storage for the lease reads the channel beside it: the
    others of its process wait for it, and read nothing (docs/design.md, cost)."""
    await start("warm-up")
    await settled(blob_requests.app)
    durable.reset(start_check_delay=0.05)
    mark = blob_requests.requests
    answers = await asyncio.gather(*[start("ahead-burst") for _ in range(20)])
    assert sorted(r.status_code for r in answers) == [202] + [409] * 19
    await settled(blob_requests.app)
    # The lock blob's creation, the lease and its release; the channel's read (ahead of
    # the lease) and write to open it, and its write to confirm it (on the open's ETag).
    assert blob_requests.requests - mark == 6


async def test_a_change_that_refuses_fails_alone_among_those_written_together(
    app_env,
) -> None:
    """Changes of one id made at once are written in one round; one whose decision raises
    (a start that can no longer prove its lease) writes nothing and gets its error, and
    the others land."""
    from durable_singleton.errors import LockLost

    def refusing(channel: Any) -> Any:
        raise LockLost("the lease could not be proven")

    def writing(channel: Any) -> Any:
        return Channel("run-1"), "written"

    store = root_of(the_app).next_runs()
    refused, written = await asyncio.gather(
        store.change(HUB, "together", refusing),
        store.change(HUB, "together", writing),
        return_exceptions=True,
    )
    assert isinstance(refused, LockLost) and written == "written"
    assert await channel_of(instance_id="together") == Channel("run-1")


async def buffered_behind_a_run(app: SingletonApp, durable: Any, app_env: str) -> str:
    """Start ``keep-next`` (its job takes next runs from the channel in the test's
    storage) and buffer a next run behind it, once the start's channel is confirmed; the
    next run's request id."""
    import os

    from durable_singleton._settings import STORAGE_CONNECTION

    durable.use_storage(os.environ[STORAGE_CONNECTION], app_env)
    first = start_request("SingletonOrchestrator", "keep-next", {"items": ["a"]})
    await app.http_start(first, durable.starter())
    nxt = start_request("SingletonOrchestrator", "keep-next", {"items": ["b"]}, BUFFER)
    told = body_of(await app.http_start(nxt, durable.starter()))
    assert told["outcome"] == "buffered"
    await settled(app)
    return told["requestId"]


async def stop_keep_next(app: SingletonApp, durable: Any, cut: list) -> Any:
    """DELETE ``keep-next`` (a Stop) with the channel cut as ``cut`` says, mended after."""
    cut[0] = True
    try:
        request = instance_request("DELETE", "SingletonOrchestrator", "keep-next")
        return await app.http_instance(request, durable.starter())
    finally:
        cut[0] = False


async def test_a_stop_whose_drop_storage_fails_keeps_the_next_run_and_names_nothing(
    durable, app_env
) -> None:
    """The Stop is sent; then storage fails every call of the drop (its read, before any
    write). The Stop stands, the next run is kept and runs after the stopped run, and the
    answer is 202 naming nothing dropped: it claims no drop it did not make (docs/jobs.md
    says so)."""
    app, cut = app_with_channel_writes_cut(reads_too=lambda: bool(durable.events))
    durable.reset(stop_delay=0.5)
    try:
        buffered = await buffered_behind_a_run(app, durable, app_env)
        response = await stop_keep_next(app, durable, cut)
        assert response.status_code == 202, body_of(response)
        assert "droppedRequestId" not in body_of(response)
        assert stopped_runs(durable) == [run_ids(durable)[0]]
        await until(lambda: buffered in run_ids(durable))  # kept: it runs next
    finally:
        await app.close()


async def test_a_terminate_whose_channel_storage_fails_after_it_says_it_was_carried_out(
    durable, app_env
) -> None:
    """DELETE ``mode=terminate``: the terminate lands; then storage fails every call of the
    close that would drop the next run. The instance is terminated, so the answer is 202
    ``stopRequested``, never a 503 saying the request failed; it names nothing dropped, and
    the next run, kept, runs after the id's next start (as a next run of an instance that
    failed does)."""
    app, cut = app_with_channel_writes_cut(reads_too=lambda: bool(durable.terminations))
    durable.reset(complete_after=0.3)
    try:
        buffered = await buffered_behind_a_run(app, durable, app_env)
        cut[0] = True
        request = instance_request(
            "DELETE", "SingletonOrchestrator", "keep-next", "mode=terminate"
        )
        response = await app.http_instance(request, durable.starter())
        cut[0] = False
        assert response.status_code == 202, body_of(response)
        assert body_of(response)["outcome"] == "stopRequested"
        assert "droppedRequestId" not in body_of(response)
        await until(lambda: durable.instances["keep-next"].status == "Terminated")
        again = start_request("SingletonOrchestrator", "keep-next", {"items": ["c"]})
        assert (await app.http_start(again, durable.starter())).status_code == 202
        await until(lambda: buffered in run_ids(durable))  # kept: it runs after c's run
    finally:
        await app.close()


async def test_a_stop_whose_drop_is_lost_says_the_next_run_may_be_dropped_and_keeps_it(
    durable, app_env
) -> None:
    """The Stop is sent; every send of the write that would drop the next run fails
    (the connection cut), and each read back finds the channel unchanged: the write may
    still land, held on the way, so the app cannot tell. The answer is 503
    ``next-run-outcome-unknown`` naming the request the write would have dropped; the
    Stop stands, and since the write never landed the channel still holds the next run.
    The stopped run does not end meanwhile (its job ignores the Stop), so no take can
    settle it."""
    app, cut = app_with_channel_writes_cut()
    durable.reset(stop_delay=None)
    try:
        buffered = await buffered_behind_a_run(app, durable, app_env)
        response = await stop_keep_next(app, durable, cut)
        assert problem(response, 503, "next-run-outcome-unknown")["droppedRequestId"] == buffered
        assert stopped_runs(durable) == [run_ids(durable)[0]]
        kept = await channel_of(app, "keep-next")
        assert kept is not None and kept.next is not None
        assert kept.next.request == buffered
    finally:
        await app.close()


async def test_a_stop_whose_drop_fails_while_the_run_takes_it_stops_the_run_taken(
    durable, app_env
) -> None:
    """The Stop is sent; the write that would drop the next run fails (the connection
    cut) while the stopped run ends and takes it: the read back after the failed write
    shows the take, not the drop, which is no drop made, not an unknown outcome. The run
    taken has begun, so it is sent a Stop of its own, as any Stop that finds the next run
    taken is, and the answer is 202 naming nothing dropped."""
    app, cut = app_with_channel_writes_cut()
    durable.reset(stop_delay=0.05)  # well within the failing write's own retries
    try:
        buffered = await buffered_behind_a_run(app, durable, app_env)
        response = await stop_keep_next(app, durable, cut)
        assert response.status_code == 202, body_of(response)
        assert "droppedRequestId" not in body_of(response)
        assert stopped_runs(durable) == [run_ids(durable)[0], buffered]
    finally:
        await app.close()


async def test_a_stop_whose_drop_of_a_waiting_run_cannot_be_written_sends_nothing(
    durable, app_env
) -> None:
    """A waiting (debounced) run is stopped by any Stop its instance takes. If the write
    that drops it cannot be made (storage cut), the Stop must not be sent either: sent,
    it would end the instance and lose the waiting run, told ``debounced``, with no
    answer naming it. Nothing is sent; the answer is a 503; the run still waits."""
    app, cut = app_with_channel_writes_cut()
    durable.reset(stop_delay=0.05)
    try:
        await app.http_start(
            start_request(
                "SingletonOrchestrator", "wait-cut", {"items": ["a"]}, "debounceSeconds=30"
            ),
            durable.starter(),
        )
        told = body_of(
            await app.http_start(
                start_request(
                    "SingletonOrchestrator", "wait-cut", {"items": ["b"]}, "debounceSeconds=30"
                ),
                durable.starter(),
            )
        )
        assert told["outcome"] == "debounced"
        before = await channel_of(app, "wait-cut")
        cut[0] = True
        request = instance_request("DELETE", "SingletonOrchestrator", "wait-cut")
        response = await app.http_instance(request, durable.starter())
        cut[0] = False
        assert response.status_code == 503, body_of(response)
        assert durable.events == []  # no Stop was sent
        assert await channel_of(app, "wait-cut") == before  # the run still waits
        assert durable.instances["wait-cut"].status in ("Pending", "Running")
    finally:
        await app.close()


async def test_a_stop_that_dropped_a_waiting_run_says_so_when_the_instance_ended_before_the_event(
    start, instance, durable
) -> None:
    """A Stop of a waiting (debounced) run writes the drop first, then sends the event.
    If the run's due time falls in between, the instance finds its run dropped and
    completes, and the event is answered 410. The drop was made all the same: the answer
    is 202 naming the request dropped, never 409 ``instance-not-running`` (which says
    nothing was stopped, and would leave the caller told ``debounced`` with no answer
    naming its request)."""
    durable.reset(stop_delay=0.05)
    assert (await start("wait-ends", {"items": ["a"]}, "debounceSeconds=30")).status_code == 202
    told = body_of(await start("wait-ends", {"items": ["b"]}, "debounceSeconds=30"))
    assert told["outcome"] == "debounced"
    durable.due_before_event = True
    response = await instance("DELETE", "wait-ends")
    assert response.status_code == 202, body_of(response)
    assert body_of(response)["droppedRequestId"] == told["requestId"]
    assert durable.instances["wait-ends"].status == "Completed"
    assert run_ids(durable) == []  # the dropped run never began
