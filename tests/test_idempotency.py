"""Idempotency-Key: the rule (pure), then every case end to end against the Durable double
and Azurite, with the faults of the fault proxy."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any, Optional

import pytest
from azure.storage.blob.aio import BlobServiceClient

from durable_singleton._durable import InstanceStatus
from durable_singleton._idempotency import KeyedRequest, Record, Verdict, judge, keyed
from durable_singleton._lock import lock_blob_name
from tests.support.app import change_setting
from tests.support.azurite import connection_string
from tests.support.durable_double import starter_binding
from tests.support.fault_proxy import FaultProxy

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 12, 1, 3, 0, 0, tzinfo=UTC)
KEY = keyed("retry-1", {"function": "F", "instance": "job"}, b"{}")


def status(created: Optional[datetime.datetime]) -> Optional[InstanceStatus]:
    if created is None:
        return None
    return InstanceStatus.from_json(
        {"runtimeStatus": "Running", "createdTime": created.isoformat()}
    )


def record(before: str = "", request: KeyedRequest = KEY) -> Record:
    return Record(
        request.key_digest,
        request.fingerprint,
        T0,
        T0 + datetime.timedelta(seconds=14),
        before,
        T0 + datetime.timedelta(days=1),
    )


def seconds(n: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=n)


# -- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "created,now,verdict",
    [
        (seconds(0.5), seconds(1), Verdict.REPLAY),  # its execution, still running
        (seconds(14), seconds(3600), Verdict.REPLAY),  # the window's end is in it
        (None, seconds(1), Verdict.IN_PROGRESS),  # its start may still land
        (None, seconds(15), Verdict.NEW),  # it never landed: carried out anew
        (seconds(-60), seconds(15), Verdict.NEW),  # only an older execution exists
        (seconds(-60), seconds(5), Verdict.IN_PROGRESS),
        (seconds(20), seconds(30), Verdict.SUPERSEDED),  # a newer execution is the latest
    ],
)
def test_the_rule(created, now, verdict) -> None:
    assert judge(record(), KEY, status(created), now) is verdict


def test_the_execution_it_was_decided_on_is_never_the_keys() -> None:
    before = seconds(1).isoformat()
    assert judge(record(before=before), KEY, status(seconds(1)), seconds(20)) is Verdict.NEW


def test_another_key_an_expired_key_and_no_record_are_new() -> None:
    other = keyed("retry-2", {"function": "F", "instance": "job"}, b"{}")
    assert judge(record(), other, status(seconds(1)), seconds(2)) is Verdict.NEW
    assert judge(record(), KEY, status(seconds(1)), seconds(86400)) is Verdict.NEW
    assert judge(None, KEY, status(seconds(1)), seconds(2)) is Verdict.NEW


def test_the_same_key_with_another_request_is_a_mismatch() -> None:
    for parts, body in [
        ({"function": "F", "instance": "job"}, b'{"a": 1}'),
        ({"function": "F", "instance": "job", "onConflict": "useExisting"}, b"{}"),
        ({"function": "G", "instance": "job"}, b"{}"),
    ]:
        other = keyed("retry-1", parts, body)
        assert judge(record(), other, status(seconds(1)), seconds(2)) is Verdict.MISMATCH


def test_a_record_keeps_no_key_and_no_body_and_reads_back() -> None:
    request = keyed("secret-key-42", {"function": "F"}, b'{"password": "hunter2"}')
    kept = record(request=request)
    text = json.dumps(kept.metadata())
    assert "secret-key-42" not in text and "hunter2" not in text
    assert Record.from_metadata(kept.metadata()) == kept
    assert Record.from_metadata({}) is None
    assert Record.from_metadata({**kept.metadata(), "idemto": "not a time"}) is None


# -- end to end --------------------------------------------------------------------------


def kind(response: Any) -> str:
    if response.status_code < 300:
        return str(response.status_code)
    return json.loads(response.get_body())["type"].rsplit(":", 1)[1]


async def test_a_retry_gets_the_first_answer_again_running_or_finished(start, durable) -> None:
    first = await start("job", {"items": [1]}, key="k-1")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    again = await start("job", {"items": [1]}, key="k-1")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_body() == first.get_body()
    assert again.headers["Location"] == first.headers["Location"]
    durable.set_status("job", "Completed")  # allowDuplicate would start it again...
    finished = await start("job", {"items": [1]}, key="k-1")
    assert finished.status_code == 202 and finished.headers["Idempotent-Replayed"] == "true"
    assert durable.accepted_starts == [("SingletonOrchestrator", "job")]  # ...but once only


async def test_the_same_key_for_another_request_is_422_and_starts_nothing(start, durable) -> None:
    assert (await start("job", {"items": [1]}, key="k-2")).status_code == 202
    for other in (
        await start("job", {"items": [2]}, key="k-2"),
        await start("job", {"items": [1]}, key="k-2", query="onConflict=useExisting"),
    ):
        assert (other.status_code, kind(other)) == (422, "idempotency-key-mismatch")
    assert len(durable.accepted_starts) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_an_invalid_key_is_400_and_calls_nothing(start, durable, blob_requests, key) -> None:
    response = await start("job", {"items": [1]}, key=key)
    assert (response.status_code, kind(response)) == (400, "invalid-idempotency-key")
    assert sum(durable.calls.values()) == 0 and blob_requests.requests == 0


async def test_a_retry_while_the_first_is_starting_is_409_with_retry_after(start, durable) -> None:
    durable.reset(start_check_delay=0.5)  # the first request's start takes a while
    first = asyncio.create_task(start("job", {"items": [1]}, key="k-3"))
    await asyncio.sleep(0.2)
    retry = await start("job", {"items": [1]}, key="k-3")
    assert (retry.status_code, kind(retry)) == (409, "idempotency-key-in-progress")
    assert 1 <= int(retry.headers["Retry-After"]) <= 16
    assert (await first).status_code == 202
    replay = await start("job", {"items": [1]}, key="k-3")
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert len(durable.accepted_starts) == 1


async def test_a_burst_with_one_key_starts_once_and_every_202_is_that_start(
    start, durable
) -> None:
    durable.reset(start_check_delay=0.05)
    answers = await asyncio.gather(*[start("job", {"items": [1]}, key="k-4") for _ in range(20)])
    assert len(durable.accepted_starts) == 1 and durable.dropped_starts == []
    kinds = {kind(a) for a in answers}
    assert kinds <= {"202", "idempotency-key-in-progress"}
    fresh = [a for a in answers if a.status_code == 202 and "Idempotent-Replayed" not in a.headers]
    assert len(fresh) == 1


async def test_a_key_whose_start_was_refused_is_forgotten_at_once(start, durable) -> None:
    """A start answered without starting (here the Durable API refused the connection)
    leaves no record: the retry is a new request, not 'in progress'."""
    dead = starter_binding("http://127.0.0.1:9/durabletask/")
    down = await start("job", {"items": [1]}, key="k-5", starter=dead)
    assert kind(down) == "durable-unavailable"
    durable.fail_next("start", 400, {"Message": "bad"})
    assert kind(await start("job", {"items": [1]}, key="k-5")) == "durable-error"
    again = await start("job", {"items": [1]}, key="k-5")
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers
    assert len(durable.accepted_starts) == 1


async def test_an_expired_key_is_a_new_request(start, durable, monkeypatch) -> None:
    await change_setting(monkeypatch, "SINGLETON_IDEMPOTENCY_TTL_SECONDS", "1")
    assert (await start("job", {"items": [1]}, key="k-6")).status_code == 202
    durable.set_status("job", "Completed")
    await asyncio.sleep(1.2)
    again = await start("job", {"items": [1]}, key="k-6")
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers
    assert len(durable.accepted_starts) == 2


async def test_after_a_newer_execution_the_key_is_superseded(start, durable) -> None:
    assert (await start("job", {"items": [1]}, key="k-7")).status_code == 202
    durable.set_status("job", "Completed")
    assert (await start("job", {"items": [9]})).status_code == 202  # no key: a new run
    late = await start("job", {"items": [1]}, key="k-7")
    assert (late.status_code, kind(late)) == (409, "idempotency-key-superseded")
    assert len(durable.accepted_starts) == 2


async def test_requests_without_a_key_cost_what_they_did(start, durable, blob_requests) -> None:
    """Blob calls per request: no key adds none; a key adds the record's read and write
    on a start, and the read alone on a conflict. The first request for an id this
    process has not met creates its lock blob while the status is read, a conflict
    too; after that a conflict costs none."""
    before = blob_requests.requests
    await start("warm-up")  # the lock container exists from here on
    await blob_requests.app.wait_for_background()
    durable.put("busy", "Running")

    async def blob_calls(instance_id: str, key: Optional[str]) -> int:
        mark = blob_requests.requests
        await start(instance_id, key=key)
        await blob_requests.app.wait_for_background()
        return blob_requests.requests - mark

    assert before == 0
    assert await blob_calls("busy", None) == 1  # the lock blob, created ahead
    assert await blob_calls("busy", None) == 0
    assert await blob_calls("busy", "k-8") == 1
    # A new id: create, lease, release; with a key also the record's read, its write
    # before the start and the write that closes its window after the 202.
    plain = await blob_calls("fresh-a", None)
    assert plain == 3
    assert await blob_calls("fresh-b", "k-9") == plain + 3


async def test_the_record_names_no_key_and_no_body(start, durable, azurite, app_env) -> None:
    assert (await start("job", {"items": ["s3cr3t"]}, key="my-key-123")).status_code == 202
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
        blob = blobs.get_blob_client(app_env, lock_blob_name("TestHubName", "job"))
        metadata = (await blob.get_blob_properties()).metadata
    assert set(metadata) >= {"idemkey", "idemfingerprint", "idemfrom", "idemto"}
    assert "my-key-123" not in json.dumps(metadata) and "s3cr3t" not in json.dumps(metadata)


# -- faults ------------------------------------------------------------------------------


async def test_a_lost_start_answer_is_replayed_to_the_retry(start, durable) -> None:
    proxy = FaultProxy(durable.port).start()
    try:
        proxy.set("cut_responses", match=b"POST /durabletask/orchestrators/")
        proxied = starter_binding(f"http://127.0.0.1:{proxy.port}/durabletask/")
        first = await start("job", {"items": [1]}, key="k-10", starter=proxied)
    finally:
        proxy.stop()
    assert kind(first) in ("202", "start-outcome-unknown")
    retry = await start("job", {"items": [1]}, key="k-10")
    assert retry.status_code == 202 and retry.headers["Idempotent-Replayed"] == "true"
    assert len(durable.created) == 1


async def test_a_lost_replay_status_read_is_503_and_starts_nothing(start, durable) -> None:
    assert (await start("job", {"items": [1]}, key="k-11")).status_code == 202
    durable.fail_next("status", 503)
    retry = await start("job", {"items": [1]}, key="k-11")
    assert retry.status_code == 502 and kind(retry) == "durable-error"
    dead = starter_binding("http://127.0.0.1:9/durabletask/")
    assert kind(await start("job", {"items": [1]}, key="k-11", starter=dead)) == (
        "durable-unavailable"
    )
    assert len(durable.accepted_starts) == 1


@pytest.mark.slow
async def test_a_lost_record_write_is_503_and_never_a_202_that_cannot_be_replayed(
    start, durable, azurite, app_env, monkeypatch
) -> None:
    """The record's write answer is lost: nothing was started, the answer says so, and
    the retry is told to wait while the record's window is open, then starts once."""
    proxy = FaultProxy(azurite.port).start()
    await change_setting(monkeypatch, "AzureWebJobsStorage", connection_string(proxy.port))
    await start("warm-up")
    try:
        blob = lock_blob_name("TestHubName", "job")
        proxy.set(
            "cut_responses", match=f"PUT /devstoreaccount1/{app_env}/{blob}?comp=metadata".encode()
        )
        first = await start("job", {"items": [1]}, key="k-12")
    finally:
        proxy.stop()
    assert first.status_code == 503 and durable.accepted_starts[1:] == []
    await change_setting(monkeypatch, "AzureWebJobsStorage", azurite.connection_string)
    answers = []
    for _ in range(40):
        answer = await start("job", {"items": [1]}, key="k-12")
        answers.append(kind(answer))
        if answer.status_code == 202:
            break
        await asyncio.sleep(min(int(answer.headers.get("Retry-After", "1")), 2))
    assert answers[-1] == "202" and set(answers[:-1]) <= {"idempotency-key-in-progress"}
    assert [i for _, i in durable.accepted_starts] == ["warm-up", "job"]
