"""Idempotency-Key: the rule (pure), then every case end to end against the Durable double
and Azurite, with the faults of the fault proxy."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
from typing import Any, Optional

import pytest
from azure.storage.blob.aio import BlobServiceClient

from durable_singleton._durable import InstanceStatus
from durable_singleton._idempotency import (
    MAX_SUPERSEDED,
    KeyedRequest,
    Record,
    Records,
    Verdict,
    judge,
    keyed,
)
from durable_singleton._lock import lock_blob_name
from durable_singleton._next_run_store import handle as next_run
from tests.support.answers import kind
from tests.support.app import app, change_setting, root_of, settled
from tests.support.azurite import connection_string
from tests.support.durable_double import ago, starter_binding
from tests.support.fault_proxy import FaultProxy

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 12, 1, 3, 0, 0, tzinfo=UTC)
KEY = keyed("retry-1", {"function": "F", "instance": "job"}, b"{}")
#: The execution the key's start was decided on, as the extension writes its time.
BEFORE = "2026-12-01T02:59:00Z"


def seconds(n: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=n)


def status(created: Optional[str]) -> Optional[InstanceStatus]:
    """A status as the extension writes it: ``createdTime`` to the whole second."""
    if created is None:
        return None
    return InstanceStatus.from_json({"runtimeStatus": "Running", "createdTime": created})


def whole(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def current(landed: bool, request: KeyedRequest = KEY, before: str = BEFORE) -> Records:
    record = Record(
        request.key_digest,
        request.fingerprint,
        seconds(14),
        before,
        seconds(86400),
        landed,
    )
    return Records(record, ())


# -- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "landed,created,now,verdict",
    [
        # Its start was answered 202: its execution, whatever the status shows now,
        # running, finished, or continued as new (a later createdTime).
        (True, whole(T0), seconds(1), Verdict.REPLAY),
        (True, whole(T0), seconds(3600), Verdict.REPLAY),
        (True, whole(seconds(600)), seconds(3600), Verdict.REPLAY),
        (True, None, seconds(1), Verdict.SUPERSEDED),  # purged: its execution is gone
        # Its start's answer was lost (or is on its way): an execution newer than the
        # one it was decided on is its own (no start by this app can come between).
        (False, whole(T0), seconds(1), Verdict.REPLAY),
        (False, whole(T0), seconds(3600), Verdict.REPLAY),
        (False, BEFORE, seconds(1), Verdict.IN_PROGRESS),  # it may still land
        (False, None, seconds(1), Verdict.IN_PROGRESS),
        (False, BEFORE, seconds(15), Verdict.NEW),  # it never landed: carried out anew
        (False, None, seconds(15), Verdict.NEW),
    ],
)
def test_the_rule(landed, created, now, verdict) -> None:
    assert judge(current(landed), KEY, status(created), now) is verdict


def test_with_no_execution_before_any_execution_is_the_keys() -> None:
    records = current(False, before="")
    assert judge(records, KEY, status(whole(T0)), seconds(1)) is Verdict.REPLAY
    assert judge(records, KEY, None, seconds(1)) is Verdict.IN_PROGRESS


def test_a_later_start_supersedes_the_key_whatever_the_times_say() -> None:
    """Any later start through the app moves the record aside: the key is superseded even
    when the newer execution was created in the same second as the key's."""
    later = current(True).superseding(seconds(2))
    assert later.current is None
    assert judge(later, KEY, status(whole(T0)), seconds(3)) is Verdict.SUPERSEDED
    other = keyed("retry-2", {"function": "F", "instance": "job"}, b"{}")
    assert judge(later, other, status(whole(T0)), seconds(3)) is Verdict.NEW
    # Superseded keys are remembered until they expire, the newest kept first.
    assert judge(later, KEY, status(whole(T0)), seconds(86401)) is Verdict.NEW


def test_superseded_keys_are_bounded_the_oldest_forgotten() -> None:
    records = Records(None, ())
    requests = [keyed(f"k{n}", {"instance": "job"}, b"") for n in range(MAX_SUPERSEDED + 5)]
    for n, request in enumerate(requests):
        records = Records(current(True, request).current, records.superseded)
        records = records.superseding(seconds(n))
    assert len(records.superseded) == MAX_SUPERSEDED
    newest, oldest = requests[-1], requests[0]
    assert judge(records, newest, status(whole(T0)), seconds(100)) is Verdict.SUPERSEDED
    assert judge(records, oldest, status(whole(T0)), seconds(100)) is Verdict.NEW
    assert len(json.dumps(records.metadata())) < 4096  # well inside Blob's 8 KiB


def test_another_key_an_expired_key_and_no_record_are_new() -> None:
    other = keyed("retry-2", {"function": "F", "instance": "job"}, b"{}")
    assert judge(current(True), other, status(whole(T0)), seconds(2)) is Verdict.NEW
    assert judge(current(True), KEY, status(whole(T0)), seconds(86400)) is Verdict.NEW
    assert judge(Records(None, ()), KEY, status(whole(T0)), seconds(2)) is Verdict.NEW


def test_the_same_key_with_another_request_is_a_mismatch() -> None:
    for parts, body in [
        ({"function": "F", "instance": "job"}, b'{"a": 1}'),
        ({"function": "F", "instance": "job", "onConflict": "useExisting"}, b"{}"),
        ({"function": "G", "instance": "job"}, b"{}"),
    ]:
        other = keyed("retry-1", parts, body)
        verdict = judge(current(True), other, status(whole(T0)), seconds(2))
        assert verdict is Verdict.MISMATCH


def test_records_keep_no_key_and_no_body_and_read_back() -> None:
    request = keyed("secret-key-42", {"function": "F"}, b'{"password": "hunter2"}')
    kept = Records(current(False, request).current, ()).superseding(seconds(1))
    kept = Records(current(True, KEY).current, kept.superseded)
    text = json.dumps(kept.metadata())
    assert "secret-key-42" not in text and "hunter2" not in text
    assert Records.from_metadata(kept.metadata()) == kept
    assert Records.from_metadata({}) == Records(None, ())
    dropping = kept.with_current(dataclasses.replace(kept.current, dropped="req-1"))
    assert Records.from_metadata(dropping.metadata()) == dropping
    broken = Records.from_metadata({**kept.metadata(), "idemto": "not a time"})
    assert broken.current is None and broken.superseded == kept.superseded


# -- end to end --------------------------------------------------------------------------


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


async def at_a_second_start() -> None:
    """Wait until just past a whole second, so what follows shares one second of
    ``createdTime`` (it takes well under one)."""
    now = datetime.datetime.now(UTC)
    await asyncio.sleep(1.02 - now.microsecond / 1e6)


def created_second(durable: Any, instance_id: str) -> str:
    return str(durable.instances[instance_id].body(instance_id)["createdTime"])


async def test_a_newer_start_in_the_same_second_supersedes_the_key(start, durable) -> None:
    """Whole-second times cannot tell the key's execution from one created just after it:
    the retry must still never be told it started the newer one. (Tried on up to three
    ids, in case a slow machine carries one pair across a second.)"""
    shared = 0
    for attempt in range(3):
        job, key = f"job-{attempt}", f"k-13-{attempt}"
        await at_a_second_start()
        assert (await start(job, {"items": [1]}, key=key)).status_code == 202
        first_second = created_second(durable, job)
        durable.set_status(job, "Completed")
        assert (await start(job, {"items": [9]})).status_code == 202  # another caller
        late = await start(job, {"items": [1]}, key=key)
        assert (late.status_code, kind(late)) == (409, "idempotency-key-superseded")
        if created_second(durable, job) == first_second:  # the same createdTime
            shared += 1
            break
    assert shared == 1
    assert len(durable.accepted_starts) == 2 * (attempt + 1)


async def test_an_older_key_is_superseded_by_a_newer_keys_start(start, durable) -> None:
    assert (await start("job", {"items": [1]}, key="k-14")).status_code == 202
    durable.set_status("job", "Completed")
    assert (await start("job", {"items": [2]}, key="k-15")).status_code == 202
    durable.set_status("job", "Completed")
    older = await start("job", {"items": [1]}, key="k-14")
    assert (older.status_code, kind(older)) == (409, "idempotency-key-superseded")
    newer = await start("job", {"items": [2]}, key="k-15")
    assert newer.status_code == 202 and newer.headers["Idempotent-Replayed"] == "true"
    assert len(durable.accepted_starts) == 2


async def test_a_retry_of_terminate_existing_terminates_nothing(start, durable) -> None:
    durable.put("job", "Running", created=ago(60))
    query = "onConflict=terminateExisting"
    first = await start("job", {"items": [1]}, query=query, key="k-16")
    assert first.status_code == 202 and len(durable.terminations) == 1
    for _ in range(3):
        again = await start("job", {"items": [1]}, query=query, key="k-16")
        assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert len(durable.terminations) == 1 and len(durable.accepted_starts) == 1


@pytest.mark.parametrize("policy", ["terminateExisting", "stopExisting"])
async def test_a_retry_of_a_replace_that_dropped_a_next_run_names_it_again(
    start, durable, policy
) -> None:
    """The first answer named the next run its replace dropped (``droppedRequestId``); the
    retry is given that answer again, whole: if the first was lost, the retry's is the only
    one that says the buffered request will never run."""
    durable.reset(stop_delay=0.05)
    await start("job", {"items": [1]})
    told = json.loads(
        (await start("job", {"items": [2]}, query="onConflict=bufferOne")).get_body()
    )
    query = f"onConflict={policy}"
    first = await start("job", {"items": [3]}, query=query, key=f"k-drop-{policy}")
    assert json.loads(first.get_body())["droppedRequestId"] == told["requestId"]
    again = await start("job", {"items": [3]}, query=query, key=f"k-drop-{policy}")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_body() == first.get_body()


async def test_a_retry_after_the_job_continued_as_new_is_its_own_start(start, durable) -> None:
    """A repeating job continues as new: the provider stamps each execution's
    createdTime anew, and the key's start is still the id's latest."""
    assert (await start("job", {"items": [1]}, key="k-17")).status_code == 202
    await asyncio.sleep(1.05)
    first_second = created_second(durable, "job")
    durable.continue_as_new("job", {"items": [1], "pass": 2})
    assert created_second(durable, "job") != first_second
    again = await start("job", {"items": [1]}, key="k-17")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    durable.set_status("job", "Completed")
    finished = await start("job", {"items": [1]}, key="k-17")
    assert finished.headers.get("Idempotent-Replayed") == "true"
    assert len(durable.accepted_starts) == 1


async def test_a_key_is_scoped_to_its_instance_id(start, durable) -> None:
    """docs/http-api.md: a key names one start of one id; sent for another id it is
    that id's own request (its record lives with that id's lock)."""
    assert (await start("job-a", {"items": [1]}, key="k-18")).status_code == 202
    other = await start("job-b", {"items": [1]}, key="k-18")
    assert other.status_code == 202 and "Idempotent-Replayed" not in other.headers
    again = await start("job-a", {"items": [1]}, key="k-18")
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert [i for _, i in durable.accepted_starts] == ["job-a", "job-b"]


async def test_requests_without_a_key_cost_what_they_did(start, durable, blob_requests) -> None:
    """Blob calls per request: no key adds none; a key adds the record's read and write
    on a start, and the read alone on a conflict. The first request for an id this
    process has not met creates its lock blob while the status is read, a conflict
    too; after that a conflict costs none."""
    before = blob_requests.requests
    await start("warm-up")  # the lock container exists from here on
    await settled(blob_requests.app)
    durable.put("busy", "Running")

    async def blob_calls(instance_id: str, key: Optional[str]) -> int:
        mark = blob_requests.requests
        await start(instance_id, key=key)
        await settled(blob_requests.app)
        return blob_requests.requests - mark

    assert before == 0
    assert await blob_calls("busy", None) == 1  # the lock blob, created ahead
    assert await blob_calls("busy", None) == 0
    assert await blob_calls("busy", "k-8") == 1
    # A new id: create, lease, release, and (SingletonOrchestrator takes next runs) its
    # next-run channel's read and write when it is opened, and the write that confirms
    # the start on the channel as the open left it; with a key also the record's read,
    # its write before the start and the write that closes its window after the 202.
    plain = await blob_calls("fresh-a", None)
    assert plain == 6
    assert await blob_calls("fresh-b", "k-9") == plain + 3


async def test_the_record_names_no_key_and_no_body(start, durable, azurite, app_env) -> None:
    assert (await start("job", {"items": ["s3cr3t"]}, key="my-key-123")).status_code == 202
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
        blob = blobs.get_blob_client(app_env, lock_blob_name("TestHubName", "job"))
        metadata = (await blob.get_blob_properties()).metadata
    assert set(metadata) >= {"idemkey", "idemfingerprint", "idemto", "idemlanded"}
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
    # At once, not after the lost start's window: the status shows its execution.
    retry = await start("job", {"items": [1]}, key="k-10")
    assert retry.status_code == 202 and retry.headers["Idempotent-Replayed"] == "true"
    durable.set_status("job", "Completed")
    finished = await start("job", {"items": [1]}, key="k-10")
    assert finished.headers.get("Idempotent-Replayed") == "true"
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


async def test_a_next_run_that_becomes_a_start_supersedes_the_key_once(start, durable) -> None:
    """A bufferOne request finds the key's run ending (it closed its next-run channel), so
    it starts the run itself under the lease once the instance has ended: the key is
    superseded by that start."""
    assert (await start("job", {"items": [1]}, key="k-19")).status_code == 202
    run = durable.instances["job"].input["run"]
    take = {"op": "take", "hub": run["hub"], "instanceId": "job", "run": run["id"]}
    assert await next_run(root_of(app).next_runs(), take) is None  # the run ended, took none
    asyncio.get_running_loop().call_later(0.2, durable.set_status, "job", "Completed")
    buffered = await start("job", {"items": [2]}, query="onConflict=bufferOne")
    assert json.loads(buffered.get_body())["outcome"] == "started"  # the run, itself
    late = await start("job", {"items": [1]}, key="k-19")
    assert (late.status_code, kind(late)) == (409, "idempotency-key-superseded")


async def test_two_requests_with_one_key_start_once_even_when_the_job_is_quick(
    start, durable
) -> None:
    """Both read the key's record before either wrote it; one starts, the job completes
    at once, and the other, finding the lock free and the instance finished, must be
    answered from the record it finds under the lease, not start the key's job again."""
    durable.reset(complete_after=0.0)
    for attempt in range(5):
        job = f"quick-{attempt}"
        answers = await asyncio.gather(
            *[start(job, {"items": [1]}, key=f"k-20-{attempt}") for _ in range(2)]
        )
        assert [a.status_code for a in answers] == [202, 202]
        assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]
    assert len(durable.created) == 5
