"""The guarantee under faults: a TCP proxy cuts, stalls or delays the storage account
(real Azurite) and the Durable API (the double) while callers start instances.

Each test is a defect that was reproduced: two winners after a lost lease, "nothing
was started" while an instance runs, hung storage answered after 30 s, a cancelled
request orphaning its lease.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any, Callable, Iterator

import pytest
from azure.storage.blob import BlobClient as SyncBlobClient
from azure.storage.blob import BlobLeaseClient as SyncLeaseClient
from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient

from durable_singleton import Catalog, SingletonApp
from durable_singleton._lock import LEASE_SECONDS, lock_blob_name
from durable_singleton._settings import STORAGE_CONNECTION
from tests.support.answers import kind
from tests.support.app import APP_ROOT, change_setting, root_of
from tests.support.azurite import connection_string
from tests.support.durable_double import starter_binding
from tests.support.fault_proxy import FaultProxy
from tests.support.report import report
from tests.support.requests import instance_request, start_request
from tests.support.waiting import until


@pytest.fixture
def storage_proxy(azurite, app_env, monkeypatch) -> Iterator[FaultProxy]:
    """The app's storage connection goes through a fault proxy to the test Azurite."""
    proxy = FaultProxy(azurite.port).start()
    monkeypatch.setenv(STORAGE_CONNECTION, connection_string(proxy.port))
    yield proxy
    proxy.stop()


@pytest.fixture
def durable_proxy(durable) -> Iterator[FaultProxy]:
    """A fault proxy in front of the Durable double; ``proxied_starter`` aims at it."""
    proxy = FaultProxy(durable.port).start()
    yield proxy
    proxy.stop()


def proxied_starter(proxy: FaultProxy) -> str:
    return starter_binding(f"http://127.0.0.1:{proxy.port}/durabletask/")


# -- 1. a lease lost during a long hold never gives two winners ------------------------


@pytest.mark.slow
async def test_a_short_cut_during_a_long_hold_keeps_the_lease(
    start, durable, azurite, app_env, storage_proxy
) -> None:
    """terminateExisting holds the lock past one lease period; a renewal falls in a
    1.5 s network cut. The renewal is retried, so a caller elsewhere cannot take the
    lease when the first renewal's lease would have run out."""
    durable.reset(terminate_delay=LEASE_SECONDS + 3)
    durable.put("long-hold", "Running")
    holder = asyncio.create_task(start("long-hold", query="onConflict=terminateExisting"))
    await asyncio.sleep(4.5)
    storage_proxy.set("cut")  # the renewal due at 5 s fails
    await asyncio.sleep(1.5)
    storage_proxy.set("pass")
    await asyncio.sleep(LEASE_SECONDS - 4)  # past the lease of the failed renewal
    # Another app instance, with its own path to storage: it finds the lease held.
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as other:
        blob = other.get_blob_client(app_env, lock_blob_name("TestHubName", "long-hold"))
        properties = await blob.get_blob_properties()
        assert properties.lease.state == "leased"
    assert kind(await holder) == "202"
    assert len(durable.accepted_starts) == 1 and durable.dropped_starts == []


@pytest.mark.slow
async def test_a_holder_that_lost_its_lease_starts_nothing(
    start, durable, azurite, app_env, storage_proxy, monkeypatch
) -> None:
    """Storage cut for longer than the lease: the holder cannot prove it still holds
    it, so it answers 503 lock-lost and never calls start; a caller with a working
    path takes the expired lease and is the one winner."""
    await change_setting(monkeypatch, "SINGLETON_TERMINATE_TIMEOUT_SECONDS", "30")
    durable.reset(terminate_delay=LEASE_SECONDS + 2)
    durable.put("lost", "Running")
    holder = asyncio.create_task(start("lost", query="onConflict=terminateExisting"))
    await asyncio.sleep(1)
    storage_proxy.set("cut")
    cut_at = time.monotonic()
    answer = await asyncio.wait_for(holder, 40)
    report(
        f"lease lost (storage cut 1 s after the acquire, while terminateExisting waits): "
        f"503 lock-lost {time.monotonic() - cut_at:.1f} s after the cut"
    )
    assert kind(answer) == "lock-lost"
    assert json.loads(answer.get_body())["detail"].count("nothing was started") == 1
    assert durable.accepted_starts == []
    assert time.monotonic() - cut_at < LEASE_SECONDS  # told when the lease ran out
    # Once the old instance has ended, an app instance with a working path wins.
    for _ in range(100):
        if durable.instances["lost"].status == "Terminated":
            break
        await asyncio.sleep(0.1)
    await change_setting(monkeypatch, STORAGE_CONNECTION, azurite.connection_string)
    assert kind(await start("lost")) == "202"
    assert len(durable.accepted_starts) == 1 and durable.dropped_starts == []


# -- 2. truthful answers when a start's answer is lost ---------------------------------


async def test_a_start_whose_answer_is_lost_is_answered_from_the_status(
    start, durable, durable_proxy
) -> None:
    durable_proxy.set("cut_responses", match=b"POST /durabletask/orchestrators/")
    response = await start("lost-answer", starter=proxied_starter(durable_proxy))
    assert kind(response) == "202"  # the status read under the lock shows it started
    assert durable.accepted_starts == [("SingletonOrchestrator", "lost-answer")]
    assert durable.instances["lost-answer"].status == "Running"


async def test_when_the_status_cannot_tell_the_answer_says_it_may_have_started(
    start, durable, durable_proxy
) -> None:
    durable_proxy.set("cut_responses", match=b"POST /durabletask/orchestrators/")
    # The read before the start (before the lock; a fresh id's channel needs no read under
    # it): no instance.
    durable.fail_next("status", 404)
    durable.fail_next("status", 503, times=5)  # the reads after the lost answer fail
    response = await start("unknown", starter=proxied_starter(durable_proxy))
    body = json.loads(response.get_body())
    assert (response.status_code, kind(response)) == (503, "start-outcome-unknown")
    assert "may have started" in body["detail"] and "nothing was started" not in body["detail"]
    assert body["statusQueryGetUri"] == response.headers["Location"]
    assert durable.instances["unknown"].status == "Running"  # it did start


async def test_the_lease_is_kept_after_an_unknown_outcome(
    start, durable, durable_proxy, azurite, app_env
) -> None:
    """The extension may still carry the start out: nobody may start over it."""
    durable_proxy.set("cut_responses", match=b"POST /durabletask/orchestrators/")
    durable.fail_next("status", 404)
    durable.fail_next("status", 503, times=5)
    assert kind(await start("kept", starter=proxied_starter(durable_proxy))) == (
        "start-outcome-unknown"
    )
    await asyncio.sleep(0.5)  # past any background work
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as other:
        blob = other.get_blob_client(app_env, lock_blob_name("TestHubName", "kept"))
        assert (await blob.get_blob_properties()).lease.state == "leased"


async def test_a_caller_cancelled_during_its_start_keeps_the_lease(
    start, durable, azurite, app_env
) -> None:
    """The host cancels the invocation while its start is in flight: the start still lands
    (the extension finishes it), so the lease must not be released for another caller."""
    durable.reset(start_check_delay=0.5)
    task = asyncio.create_task(start("cancel-start"))
    while not durable.calls["start"]:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(1.0)  # the double finishes the start; background work settles
    assert durable.instances["cancel-start"].status == "Running"
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as other:
        blob = other.get_blob_client(app_env, lock_blob_name("TestHubName", "cancel-start"))
        assert (await blob.get_blob_properties()).lease.state == "leased"


async def test_one_callers_reset_does_not_fail_another_callers_start(
    start, durable, durable_proxy
) -> None:
    """A reset on a request for another id used to close the SDK's shared session,
    failing the winner's accepted start with it."""
    durable.reset(start_check_delay=0.3)
    starter = proxied_starter(durable_proxy)
    winner = asyncio.create_task(start("winner", starter=starter))
    while not durable.calls["start"]:
        await asyncio.sleep(0.005)
    durable_proxy.set("cut_responses", match=b"GET /durabletask/instances/victim")
    victim = await start("victim", starter=starter)
    durable_proxy.set("pass")
    assert kind(victim) == "durable-unavailable"
    assert kind(await winner) == "202"


@pytest.mark.parametrize(
    "query, sent, ends_as",
    [
        ("mode=terminate", b"POST /durabletask/instances/lost-end/terminate", "Terminated"),
        ("", b"POST /durabletask/instances/lost-end/raiseEvent/Stop", "Running"),
    ],
)
async def test_a_stop_whose_answer_is_lost_says_it_may_have_been_carried_out(
    start, instance, durable, durable_proxy, query: str, sent: bytes, ends_as: str
) -> None:
    """The terminate (or the Stop event) reaches the extension and its answer is lost:
    the instance is terminated (or has the Stop), so an answer that the Durable API
    "could not be reached" would be untrue. It is 503 ``stop-outcome-unknown``, pointing
    at the instance's status."""
    assert kind(await start("lost-end")) == "202"
    durable_proxy.set("cut_responses", match=sent)
    response = await instance("DELETE", "lost-end", query, starter=proxied_starter(durable_proxy))
    body = json.loads(response.get_body())
    assert (response.status_code, kind(response)) == (503, "stop-outcome-unknown"), body
    assert "may have" in body["detail"] and "could not be reached" not in body["detail"]
    assert response.headers["Location"] == body["statusQueryGetUri"]
    assert durable_proxy.faults == 1
    # The double ends a terminated instance terminate_delay (0.05 s) after the 202.
    await until(lambda: durable.instances["lost-end"].status == ends_as)
    if not query:  # the Stop was delivered
        assert [(i, e) for i, e, _ in durable.events] == [("lost-end", "Stop")]


async def test_a_replace_whose_terminate_lost_its_answer_says_the_old_one_may_have_ended(
    start, durable, durable_proxy
) -> None:
    """onConflict=terminateExisting: the terminate of the running instance reaches the
    extension and its answer is lost. Nothing was started (true), and the answer says the
    terminate may have been carried out (it was: the old instance ends Terminated)."""
    assert kind(await start("replace-lost")) == "202"
    durable_proxy.set("cut_responses", match=b"POST /durabletask/instances/replace-lost/terminate")
    response = await start(
        "replace-lost",
        query="onConflict=terminateExisting",
        starter=proxied_starter(durable_proxy),
    )
    detail = json.loads(response.get_body())["detail"]
    assert kind(response) == "durable-unavailable" and "nothing was started" in detail
    assert "terminating the existing instance" in detail and "may have" in detail
    await until(lambda: durable.instances["replace-lost"].status == "Terminated")
    assert len(durable.accepted_starts) == 1


@pytest.mark.parametrize(
    ("ending", "call", "told"),
    [
        ("DELETE mode=terminate", "terminate", "stop-outcome-unknown"),
        ("onConflict=terminateExisting", "terminate", "durable-unavailable"),
        ("onConflict=stopExisting", "raiseEvent", "durable-unavailable"),
    ],
)
async def test_a_terminate_that_lands_late_never_ends_an_instance_started_after_it(
    start, instance, durable, durable_proxy, monkeypatch, ending: str, call: str, told: str
) -> None:
    """A terminate (or a replace's Stop) sent under the id's lock reaches the extension
    only after the app's time limit (a slow extension carries it out later): the answer
    says it may have been carried out. Meanwhile the old instance ends on its own. A start
    of the id must not come before the held call lands: it would create an instance that
    the terminate, aimed at the id, then ends. So the lease is kept until it runs out, as
    after a start whose answer was lost, and a start meanwhile is refused (503 lock-busy)."""
    await change_setting(monkeypatch, "SINGLETON_DURABLE_TIMEOUT_SECONDS", "1")
    await change_setting(monkeypatch, "SINGLETON_LOCK_WAIT_SECONDS", "1")
    assert kind(await start("held-end")) == "202"
    held = f"POST /durabletask/instances/held-end/{call}".encode()
    durable_proxy.set("late", delay=3.0, match=held, times=1)
    proxied = proxied_starter(durable_proxy)
    if ending.startswith("DELETE"):
        ended = await instance("DELETE", "held-end", "mode=terminate", starter=proxied)
    else:
        ended = await start("held-end", query=ending, starter=proxied)
    assert kind(ended) == told
    durable.put("held-end", "Completed")  # the old instance ends on its own meanwhile
    again = await start("held-end", {"items": ["after"]})
    await until(lambda: durable.calls[call], seconds=10)  # the held call has landed
    await asyncio.sleep(0.3)  # the double ends a terminated instance 0.05 s after its 202
    assert durable_proxy.faults == 1
    started_after = len(durable.accepted_starts) - 1
    assert started_after == 0 or durable.instances["held-end"].status == "Running"
    assert kind(again) == "lock-busy"


async def test_a_status_read_whose_answer_is_lost_is_not_called_unreachable(
    start, durable, durable_proxy
) -> None:
    """The status read reached the Durable API and its answer was lost: 503
    ``durable-unavailable`` (nothing was started), without claiming the API could not be
    reached."""
    durable_proxy.set("cut_responses", match=b"GET /durabletask/instances/read-lost")
    response = await start("read-lost", starter=proxied_starter(durable_proxy))
    detail = json.loads(response.get_body())["detail"]
    assert kind(response) == "durable-unavailable" and "nothing was started" in detail
    assert "could not be reached" not in detail and "did not answer" in detail


async def test_storage_that_refuses_the_app_is_not_called_unreachable(
    start, durable, azurite, monkeypatch, caplog
) -> None:
    """The account key was rotated: storage answers every call 403. The answer is 503
    ``storage-unavailable``, nothing started, without claiming as the cause that storage
    could not be reached (it answered): a refusal is among what the detail names, and the
    log names the error code, so an operator looks at the credentials, not the network."""
    import base64

    from tests.support.azurite import ACCOUNT_KEY

    rotated = base64.b64encode(b"a key that is not the account's").decode()
    await change_setting(
        monkeypatch, STORAGE_CONNECTION, azurite.connection_string.replace(ACCOUNT_KEY, rotated)
    )
    try:
        response = await start("rotated-key")
    finally:
        await change_setting(monkeypatch, STORAGE_CONNECTION, azurite.connection_string)
    detail = json.loads(response.get_body())["detail"]
    assert kind(response) == "storage-unavailable" and "nothing was started" in detail
    assert "could not be reached in time;" not in detail and "refused" in detail
    # The code as sent: the service answers a wrong key 403 AuthenticationFailed (Storage
    # REST reference, "Common REST API error codes"); Azurite answers AuthorizationFailure.
    assert "AuthorizationFailure" in caplog.text or "AuthenticationFailed" in caplog.text
    assert durable.accepted_starts == []


async def test_a_refused_connection_is_still_known_not_to_have_started(
    start, durable, durable_proxy
) -> None:
    durable_proxy.set("cut")
    response = await start("refused", starter=proxied_starter(durable_proxy))
    assert kind(response) == "durable-unavailable"
    assert "nothing was started" in json.loads(response.get_body())["detail"]
    assert durable.accepted_starts == []


# -- 3. bounded time to answer ---------------------------------------------------------


async def test_hung_storage_is_503_within_the_storage_timeout_for_every_waiting_caller(
    start, durable, storage_proxy
) -> None:
    storage_proxy.set("stall")
    began = time.monotonic()
    answers = []

    async def timed() -> None:
        response = await start("hung")
        answers.append((time.monotonic() - began, kind(response)))

    await asyncio.gather(*[timed() for _ in range(5)])
    assert {k for _, k in answers} == {"storage-unavailable"}
    times = sorted(t for t, _ in answers)
    report(
        f"storage hung: 5 callers answered 503 storage-unavailable after "
        f"{times[0]:.2f} to {times[-1]:.2f} s (timeout 5 s)"
    )
    assert times[-1] < 6.5  # the 5 s default, not 30 s of SDK retries
    assert times[-1] - times[0] < 0.5  # the waiters hear it with the attempt's caller
    assert durable.accepted_starts == []


async def test_hung_durable_api_is_503_within_its_timeout(
    start, durable, durable_proxy, monkeypatch
) -> None:
    durable_proxy.set("stall")
    began = time.monotonic()
    response = await start("hung-durable", starter=proxied_starter(durable_proxy))
    waited = time.monotonic() - began
    report(f"Durable API hung: 503 durable-unavailable after {waited:.2f} s (timeout 5 s)")
    assert kind(response) == "durable-unavailable"
    assert waited < 6.5  # the 5 s default, not the SDK's 4 minutes


# -- 4. a cancelled request cannot orphan its lease ------------------------------------


async def test_a_caller_cancelled_mid_acquire_leaves_no_lease_behind(
    start, durable, azurite, app_env, storage_proxy, monkeypatch
) -> None:
    await change_setting(monkeypatch, "SINGLETON_LOCK_WAIT_SECONDS", "5")
    # A first run creates the id's lock blob, so the next acquire is one lease request.
    assert kind(await start("cancelled")) == "202"
    durable.set_status("cancelled", "Completed")
    storage_proxy.set("pass", delay=0.4)  # each way: granted at ~0.4 s, answered at ~0.8 s
    first = asyncio.create_task(start("cancelled"))
    await asyncio.sleep(0.6)  # granted by storage, its answer still on the way
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.sleep(2)  # whatever was on its way has reached storage by now
    storage_proxy.set("pass")
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as other:
        blob = other.get_blob_client(app_env, lock_blob_name("TestHubName", "cancelled"))
        assert (await blob.get_blob_properties()).lease.state == "available"
    began = time.monotonic()
    assert kind(await start("cancelled")) == "202"
    assert time.monotonic() - began < 3  # not the ~15 s of an orphaned lease
    assert len(durable.accepted_starts) == 2


# -- 6. a terminate under the lock is fenced like a start -------------------------------


async def test_a_terminate_whose_lease_ran_out_meanwhile_never_ends_the_next_instance(
    start, durable, azurite, app_env, monkeypatch
) -> None:
    """DELETE ?mode=terminate holds the id's lock and reads the status; before it sends
    the terminate, its process is paused (its clock jumps past the lease) and the lease
    runs out: storage lets another caller take the lock and replace the instance. The
    paused holder must not then terminate the new instance: it cannot prove the lease."""
    await change_setting(monkeypatch, "SINGLETON_DURABLE_TIMEOUT_SECONDS", "10")
    pause = Pause()
    holder = SingletonApp(Catalog.from_folders(APP_ROOT), os.environ, clock=pause.clock)
    durable.put("paused", "Running")
    released = threading.Event()

    async def held(_: str) -> None:  # in the double's thread: the holder's read waits
        await asyncio.get_running_loop().run_in_executor(None, released.wait, 10)

    durable.hold_status = held
    request = instance_request("DELETE", "SingletonOrchestrator", "paused", "mode=terminate")
    terminating = asyncio.create_task(holder.http_instance(request, durable.starter()))
    try:
        for _ in range(100):  # until its status read is held: it holds the lock
            if durable.hold_status is None:
                break
            await asyncio.sleep(0.02)
        assert durable.hold_status is None
        # The pause: its lease runs out (storage breaks it, as expiry does) and its clock
        # moves on by more than the lease.
        async with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
            blob = blobs.get_blob_client(app_env, lock_blob_name("TestHubName", "paused"))
            await BlobLeaseClient(blob).break_lease(lease_break_period=0)
        pause.advance(LEASE_SECONDS + 5)
        replaced = await start("paused", query="onConflict=terminateExisting")
        assert kind(replaced) == "202"
        new_instance = durable.instances["paused"]
        assert len(durable.terminations) == 1  # the replacing caller's, of the old one
    finally:
        released.set()
    answer = await asyncio.wait_for(terminating, 30)
    await holder.close()
    assert kind(answer) == "lock-lost"
    # Storage answered (the lease was lost to another caller): not "did not answer".
    assert "did not answer" not in json.loads(answer.get_body())["detail"]
    assert len(durable.terminations) == 1  # the holder sent nothing
    assert durable.instances["paused"] is new_instance and new_instance.status != "Terminated"


async def test_a_holder_paused_before_it_opens_the_channel_writes_nothing(
    durable, azurite, app_env
) -> None:
    """A start of SingletonOrchestrator opens the id's next-run channel under the lease
    (its read goes beside the lease request; its write is fenced). The process is paused
    as the lease is granted (its clock jumps past the lease, and storage breaks the lease
    as expiry does): it must not then write the channel, which by then may be another
    holder's."""
    lock = lock_blob_name("TestHubName", "fenced-open")

    def granted(http: Any) -> bool:
        lease_action = http.headers.get("x-ms-lease-action")
        return http.url.split("?")[0].endswith(lock) and lease_action == "acquire"

    holder, armed = paused_holder(azurite, app_env, lock, granted, armed=True)
    try:
        answer = await holder.http_start(
            start_request("SingletonOrchestrator", "fenced-open", {"items": ["a"]}),
            durable.starter(),
        )
        assert not armed  # the pause came as the lease was granted
        assert kind(answer) == "lock-lost"
        assert await root_of(holder).next_runs().read("TestHubName", "fenced-open") is None
        assert durable.created == []
    finally:
        await holder.close()


async def test_a_replacing_start_paused_after_it_dropped_a_waiting_run_names_it(
    durable, azurite, app_env
) -> None:
    """``onConflict=stopExisting`` of an instance whose debounced run waits writes the drop
    first, then sends the Stop under the lease, fenced. The process is paused as the drop
    lands (its clock jumps past the lease, and storage breaks the lease as expiry does):
    the Stop must not be sent, and nothing is started (503 ``lock-lost``), but the drop
    stands (the instance ends when the run's timer finds it dropped), so the answer must
    name the request dropped: its caller was told ``debounced``."""
    lock = lock_blob_name("TestHubName", "fenced-drop")

    def written(http: Any) -> bool:
        return http.url.split("?")[0].endswith(".next")

    holder, armed = paused_holder(azurite, app_env, lock, written, armed=False)
    durable.reset(stop_delay=0.05)

    async def start(items: list, query: str) -> Any:
        request = start_request("SingletonOrchestrator", "fenced-drop", {"items": items}, query)
        return await holder.http_start(request, durable.starter())

    try:
        assert kind(await start(["a"], "debounceSeconds=30")) == "202"
        told = json.loads((await start(["b"], "debounceSeconds=30")).get_body())
        assert told["outcome"] == "debounced"
        armed[0] = True
        answer = await start(["c"], "onConflict=stopExisting")
        assert not armed  # the pause came as the drop landed
        assert kind(answer) == "lock-lost"
        assert json.loads(answer.get_body())["droppedRequestId"] == told["requestId"]
        assert durable.events == []  # no Stop was sent without the lease
        channel = await root_of(holder).next_runs().read("TestHubName", "fenced-drop")
        assert channel is not None and channel.stopped  # the drop stands
    finally:
        await holder.close()


def paused_holder(
    azurite: Any, app_env: str, lock: str, when: Callable[[Any], bool], armed: bool
) -> "tuple[SingletonApp, list]":
    """An app whose process is paused (its clock jumps past the lease, and storage breaks
    the lease on blob ``lock`` as expiry does) as the first successful PUT for which
    ``when(request)`` holds is answered, once ``armed[0]`` is True (the list it
    returns; emptied by the pause)."""
    pause = Pause()
    switch = [armed]

    def paused(response: Any) -> None:  # the Storage SDK's hook
        http, status = response.http_request, response.http_response.status_code
        succeeded = http.method == "PUT" and status in (200, 201)
        if switch and switch[0] and succeeded and when(http):
            switch.clear()
            with SyncBlobClient.from_connection_string(
                azurite.connection_string, app_env, lock
            ) as blob:
                SyncLeaseClient(blob).break_lease(lease_break_period=0)
            pause.advance(LEASE_SECONDS + 5)

    app = SingletonApp(
        Catalog.from_folders(APP_ROOT),
        os.environ,
        blob_options={"raw_response_hook": paused},
        clock=pause.clock,
    )
    return app, switch


class Pause:
    """A monotonic clock that a test can move on, as a paused process finds it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def clock(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
