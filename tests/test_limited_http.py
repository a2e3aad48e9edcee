"""Starts with a limit per key over HTTP, through the v1 app (SingletonOrchestrator has a
limit of 3 per key): every answer checked against the OpenAPI document; the queued
request's URL, its cancel, the bound, onFull=reject and Idempotency-Key."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from tests.support.answers import body, kind
from tests.support.app import app
from tests.support.contract import check_response
from tests.support.requests import limited_request, queued_request

JOB = "SingletonOrchestrator"
START_PATH = "/limits/{functionName}/{key}"
REQUEST_PATH = "/limits/{functionName}/{key}/requests/{requestId}"


@pytest.fixture
def post(durable, app_env):
    import os

    from durable_singleton import _settings

    durable.use_storage(os.environ[_settings.STORAGE_CONNECTION], app_env)

    async def call(key, body=None, query="", headers=None):
        response = await app.http_limited_start(
            limited_request(JOB, key, body, query, headers), durable.starter()
        )
        return check_response("POST", response, START_PATH)

    return call


@pytest.fixture
def follow(durable):
    async def call(method, key, request_id):
        response = await app.http_limited_request(
            queued_request(method, JOB, key, request_id), durable.starter()
        )
        return check_response(method, response, REQUEST_PATH)

    return call


async def test_three_start_the_rest_queue_and_each_is_followed_at_its_url(
    post, follow, durable
) -> None:
    answers = [await post("tenant", {"items": [n]}) for n in range(5)]
    assert [a.status_code for a in answers] == [202] * 5
    started, queued = [body(a) for a in answers[:3]], [body(a) for a in answers[3:]]
    assert [b["outcome"] for b in started] == ["started"] * 3
    assert [b["id"] for b in started] == ["tenant~0", "tenant~1", "tenant~2"]
    assert [(b["outcome"], b["position"]) for b in queued] == [("queued", 1), ("queued", 2)]
    assert answers[3].headers["Location"] == queued[0]["requestUri"]
    assert queued[0]["requestUri"].endswith(
        f"/api/limits/{JOB}/tenant/requests/{queued[0]['requestId']}"
    )
    waiting = body(await follow("GET", "tenant", queued[1]["requestId"]))
    assert (waiting["state"], waiting["position"]) == ("queued", 2)
    durable.end_run("tenant~1")  # its slot passes to the head
    now = body(await follow("GET", "tenant", queued[0]["requestId"]))
    assert (now["state"], now["instanceId"]) == ("started", "tenant~1")
    assert body(await follow("GET", "tenant", queued[1]["requestId"]))["position"] == 1


async def test_a_waiting_request_is_cancelled_and_one_that_started_is_not(
    post, follow, durable
) -> None:
    for n in range(3):
        await post("cancel", {"items": [n]})
    waiting = body(await post("cancel", {"items": [3]}))
    cancelled = await follow("DELETE", "cancel", waiting["requestId"])
    assert cancelled.status_code == 200 and body(cancelled)["state"] == "cancelled"
    again = await follow("DELETE", "cancel", waiting["requestId"])  # a retried cancel
    assert again.status_code == 200
    for slot in ["cancel~0", "cancel~1", "cancel~2"]:
        durable.end_run(slot)
    assert all(not i.startswith("cancel~") for i in durable.active_instances())
    assert [i for i, _, _, _ in durable.runs if i.startswith("cancel~")] == [
        "cancel~0",
        "cancel~1",
        "cancel~2",
    ]  # the cancelled request never ran
    first = body(await post("cancel2", {"items": [0]}))
    late = await follow("DELETE", "cancel2", first["requestId"])
    assert late.status_code == 409 and kind(late) == "request-started"
    assert body(late)["instanceId"] == "cancel2~0"
    missing = await follow("GET", "cancel2", "no-such-request")
    assert missing.status_code == 404 and kind(missing) == "request-not-found"


async def test_the_bound_is_429_and_reject_is_409_and_both_change_nothing(
    post, durable, monkeypatch
) -> None:
    from tests.support.app import change_setting

    await change_setting(monkeypatch, "SINGLETON_QUEUE_BOUND", "1")
    for n in range(4):
        assert (await post("full", {"items": [n]})).status_code == 202
    full = await post("full", {"items": [4]})
    assert full.status_code == 429 and kind(full) == "queue-full"
    assert int(full.headers["Retry-After"]) > 0
    busy = await post("full", {"items": [5]}, query="onFull=reject")
    assert busy.status_code == 409 and kind(busy) == "limit-reached"
    assert [i["instanceId"] for i in body(busy)["instances"]] == ["full~0", "full~1", "full~2"]
    assert len([c for c in durable.created if c[0].startswith("full~")]) == 3


async def test_a_retry_with_its_key_gets_its_first_request_as_it_is_now(post, durable) -> None:
    for n in range(3):
        await post("keyed", {"items": [n]})
    first = await post("keyed", {"items": [9]}, headers={"Idempotency-Key": "k-1"})
    retry = await post("keyed", {"items": [9]}, headers={"Idempotency-Key": "k-1"})
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert body(retry)["requestId"] == body(first)["requestId"]
    assert body(retry)["position"] == 1
    durable.end_run("keyed~0")
    later = await post("keyed", {"items": [9]}, headers={"Idempotency-Key": "k-1"})
    assert body(later)["outcome"] == "started" and body(later)["id"] == "keyed~0"
    other = await post("keyed", {"items": [8]}, headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and kind(other) == "idempotency-key-mismatch"
    runs = [r for i, r, _, _ in durable.runs if i.startswith("keyed~")]
    assert runs.count(body(first)["requestId"]) == 1


async def test_bad_requests_are_refused_before_anything(post, durable) -> None:
    bad_key = await post("a~b/c")
    assert bad_key.status_code == 400 and kind(bad_key) == "invalid-key"
    bad_query = await post("k", query="onFull=later")
    assert bad_query.status_code == 400 and kind(bad_query) == "invalid-query-parameter"
    bad_input = await post("k", {"items": "no"})
    assert bad_input.status_code == 400 and kind(bad_input) == "invalid-input"
    assert durable.created == []
    assert json.loads(bad_key.get_body())["status"] == 400


async def test_the_list_shows_each_key_with_its_active_slots_and_its_queue(post, durable) -> None:
    from tests.support.requests import list_request

    answers = [body(await post("listed", {"items": [n]})) for n in range(6)]
    await post("other-key", {"items": [0]})
    response = await app.http_list(list_request(JOB, "top=100"), durable.starter())
    listed = body(check_response("GET", response, "/singletons/{functionName}"))
    keys = {k["key"]: k for k in listed["keys"]}
    assert keys["listed"]["active"] == ["listed~0", "listed~1", "listed~2"]
    assert keys["listed"]["queued"] == 3
    assert keys["listed"]["oldestQueued"]["requestId"] == answers[3]["requestId"]
    assert keys["other-key"] == {
        "key": "other-key",
        "active": ["other-key~0"],
        "queued": 0,
        "oldestQueued": None,
    }


@contextlib.asynccontextmanager
async def queue_writes_lost(durable, azurite, app_env, monkeypatch, key: str):
    """An app of its own whose storage goes through the fault proxy. ``cut(True)``: from
    then on the key's queue writes reach storage and land, their answers are cut, and the
    queue cannot be read back after such a write; ``cut(False)`` mends both."""
    from azure.core.exceptions import ServiceRequestError

    from durable_singleton import SingletonApp
    from durable_singleton._limit import queue_blob_name
    from durable_singleton._settings import STORAGE_CONNECTION
    from tests.support.app import change_setting
    from tests.support.azurite import connection_string
    from tests.support.fault_proxy import FaultProxy

    blob = queue_blob_name("TestHubName", key)
    cutting, armed = [False], [False]

    def storage(request: object) -> None:  # the Storage SDK's hook: reads fail after a PUT
        http = request.http_request  # type: ignore[attr-defined]
        if not http.url.split("?")[0].endswith(blob):
            return
        armed[0] = cutting[0] and (armed[0] or http.method == "PUT")
        if armed[0] and http.method == "GET":
            raise ServiceRequestError("storage unreachable (test)")

    def cut(on: bool) -> None:
        cutting[0] = on
        if on:
            proxy.set("cut_responses", match=f"PUT /devstoreaccount1/{app_env}/{blob}".encode())
        else:
            proxy.set("pass")

    durable.use_storage(azurite.connection_string, app_env)
    proxy = FaultProxy(azurite.port).start()
    await change_setting(monkeypatch, STORAGE_CONNECTION, connection_string(proxy.port))
    made = SingletonApp(app.catalog, blob_options={"raw_request_hook": storage})
    try:
        yield made, cut
    finally:
        proxy.stop()
        await made.close()
        await change_setting(monkeypatch, STORAGE_CONNECTION, azurite.connection_string)


async def test_a_cancel_whose_write_lost_its_answer_says_it_may_be_cancelled(
    durable, azurite, app_env, monkeypatch
) -> None:
    """The cancel's write reaches storage and lands, its answer is cut, and storage cannot
    be read back: the answer is 503 ``queue-outcome-unknown``, and it must not leave out
    that the request may be cancelled (it is)."""
    from tests.support.app import root_of

    async with queue_writes_lost(durable, azurite, app_env, monkeypatch, "lost-cancel") as (
        made,
        cut,
    ):
        for n in range(4):  # three start, the fourth waits
            queued = body(
                await made.http_limited_start(
                    limited_request(JOB, "lost-cancel", {"items": [n]}), durable.starter()
                )
            )
        assert queued["outcome"] == "queued"
        cut(True)
        response = await made.http_limited_request(
            queued_request("DELETE", JOB, "lost-cancel", queued["requestId"]), durable.starter()
        )
    check_response("DELETE", response, REQUEST_PATH)
    assert response.status_code == 503 and kind(response) == "queue-outcome-unknown"
    queue = await root_of(app).queues().read("TestHubName", "lost-cancel")
    assert queue is not None and queued["requestId"] in queue.cancelled  # it landed
    assert "cancelled" in body(response)["detail"]


async def test_a_keyed_retry_after_a_lost_admission_never_says_started_for_nothing(
    durable, azurite, app_env, monkeypatch
) -> None:
    """The first request with a key finds a free slot: its admission's write lands, its
    answer is cut and storage cannot be read back, so it is answered 503
    ``queue-outcome-unknown`` and its start is never sent. A retry with the key must not be
    told ``started`` for a start nobody will make (the sweep would then drop the request),
    nor must the request's URL: it is in progress (``starting``) until the sweep settles it,
    and then the key's request runs, once."""
    from azure.functions.timer import TimerRequest

    from tests.support.app import change_setting, root_of

    key = {"Idempotency-Key": "admit-1"}
    async with queue_writes_lost(durable, azurite, app_env, monkeypatch, "lost-admit") as (
        made,
        cut,
    ):

        async def post():
            return await made.http_limited_start(
                limited_request(JOB, "lost-admit", {"items": ["x"]}, headers=key),
                durable.starter(),
            )

        await root_of(made).container(app_env).create_container()  # as a first start would
        cut(True)
        first = check_response("POST", await post(), START_PATH)
        cut(False)
        retry = check_response("POST", await post(), START_PATH)
        followed = await made.http_limited_request(
            queued_request("GET", JOB, "lost-admit", body(first)["requestId"]),
            durable.starter(),
        )
        cancelled = await made.http_limited_request(
            queued_request("DELETE", JOB, "lost-admit", body(first)["requestId"]),
            durable.starter(),
        )
    assert first.status_code == 503 and kind(first) == "queue-outcome-unknown"
    assert durable.created == []  # its start was never sent
    assert retry.status_code == 409 and kind(retry) == "idempotency-key-in-progress"
    # Its URL, which the 503 says to read before asking again, does not say started either.
    state = body(check_response("GET", followed, REQUEST_PATH))
    assert state["state"] == "starting" and state["instanceId"] == "lost-admit~0"
    check_response("DELETE", cancelled, REQUEST_PATH)  # nor does a cancel's refusal
    assert cancelled.status_code == 409 and kind(cancelled) == "request-starting"
    assert durable.created == []
    # The sweep settles the slot once its grace has passed: nothing started there, so the
    # reservation is given up and the key is free; the next retry starts the request.
    await change_setting(monkeypatch, "SINGLETON_DURABLE_TIMEOUT_SECONDS", "0.5")
    await change_setting(monkeypatch, "SINGLETON_LOCK_WAIT_SECONDS", "0.1")
    await change_setting(monkeypatch, "SINGLETON_STORAGE_TIMEOUT_SECONDS", "0.5")
    await asyncio.sleep(3.3)  # the grace: twice (0.5 + 0.1 + 2 x 0.5) s
    await app.limit_sweep(TimerRequest(), durable.starter())
    last = await app.http_limited_start(
        limited_request(JOB, "lost-admit", {"items": ["x"]}, headers=key), durable.starter()
    )
    check_response("POST", last, START_PATH)
    gone = await app.http_limited_request(
        queued_request("GET", JOB, "lost-admit", body(first)["requestId"]), durable.starter()
    )
    assert check_response("GET", gone, REQUEST_PATH).status_code == 404  # it never started
    assert last.status_code == 202 and body(last)["outcome"] == "started"
    runs = [r for i, r, _, _ in durable.runs if i.startswith("lost-admit~")]
    assert runs == [body(last)["requestId"]]
