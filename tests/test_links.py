"""The management URLs in answers: by default the Durable extension's, with
SINGLETON_MANAGEMENT_LINKS=app the app's own, so no answer holds the system key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.app import change_setting
from tests.support.azurite import connection_string, free_port
from tests.support.durable_double import SYSTEM_KEY, starter_binding
from tests.support.fault_proxy import FaultProxy


def everything_said(response: Any) -> str:
    return response.get_body().decode() + json.dumps(dict(response.headers))


@pytest.fixture
def app_links(monkeypatch) -> None:
    monkeypatch.setenv("SINGLETON_MANAGEMENT_LINKS", "app")


async def test_by_default_answers_carry_the_durable_urls(start, durable) -> None:
    response = await start("compat")
    assert response.status_code == 202
    assert SYSTEM_KEY in response.get_body().decode()  # as Durable Functions clients expect


async def test_with_app_links_no_answer_of_any_kind_holds_the_system_key(
    start, instance, durable, app_env, app_links, monkeypatch
) -> None:
    answers = []
    answers.append(await start("k-start"))  # 202
    answers.append(await start("k-start"))  # 409 active
    answers.append(await start("k-start", query="onConflict=useExisting"))  # 200
    durable.put("k-done", "Completed")
    answers.append(await start("k-done", query="reuse=rejectDuplicate"))  # 409 finished
    answers.append(await start("@bad"))  # 400
    answers.append(await start("k-x", raw_body=b"{"))  # 400
    answers.append(await instance("GET", "k-start"))  # 200 status
    answers.append(await instance("DELETE", "k-start"))  # 202 stop
    answers.append(await instance("DELETE", "k-done"))  # 409 ended
    answers.append(await instance("GET", "nobody"))  # 404
    await change_setting(monkeypatch, "SINGLETON_TERMINATE_TIMEOUT_SECONDS", "1")
    durable.reset(terminate_delay=None, stop_delay=None)
    durable.put("k-stuck", "Running")
    answers.append(await start("k-stuck", query="onConflict=terminateExisting"))  # 409
    answers.append(await start("k-stuck", query="onConflict=stopExisting"))  # 409
    dead = starter_binding(f"http://127.0.0.1:{free_port()}/durabletask/")
    answers.append(await start("k-down", starter=dead))  # 503 durable
    proxy = FaultProxy(durable.port).start()
    try:
        proxy.set("cut_responses", match=b"POST /durabletask/orchestrators/")
        durable.fail_next("status", 404)  # before the lock (no read under it: no channel)
        durable.fail_next("status", 503)  # the read after the lost answer
        proxied = starter_binding(f"http://127.0.0.1:{proxy.port}/durabletask/")
        answers.append(await start("k-unknown", starter=proxied))  # 503 outcome unknown
    finally:
        proxy.stop()
    await change_setting(monkeypatch, "AzureWebJobsStorage", connection_string(free_port()))
    answers.append(await start("k-storage"))  # 503 storage
    codes = sorted({a.status_code for a in answers})
    assert codes == [200, 202, 400, 404, 409, 503]
    for answer in answers:
        assert SYSTEM_KEY not in everything_said(answer)
        assert "runtime/webhooks/durabletask" not in everything_said(answer)
    started = json.loads(answers[0].get_body())
    own = "http://localhost:7071/api/orchestrators/SingletonOrchestrator/k-start"
    assert started["statusQueryGetUri"] == own == answers[0].headers["Location"]
    assert started["terminateDeleteUri"] == own + "?mode=terminate"
