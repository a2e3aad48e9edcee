"""The overview page's answer and its schedule facts, without a browser."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from durable_singleton import Catalog
from durable_singleton._page import next_tick, schedule_views
from tests.support.app import APP_ROOT, app
from tests.support.contract import check_response
from tests.support.requests import ORIGIN

PAGE_PATH = "/singletons"


async def page(durable: Any, query: str = "") -> Any:
    from urllib.parse import parse_qsl

    import azure.functions as func

    request = func.HttpRequest(
        method="GET",
        url=f"{ORIGIN}/api/singletons" + (f"?{query}" if query else ""),
        body=b"",
        headers={},
        params=dict(parse_qsl(query)),
        route_params={},
    )
    return check_response("GET", await app.http_page(request, durable.starter()), PAGE_PATH)


def config_of(html: bytes) -> dict:
    text = html.decode()
    start = text.index('<script type="application/json" id="config">') + len(
        '<script type="application/json" id="config">'
    )
    return json.loads(text[start : text.index("</script>", start)])


async def test_the_page_names_the_orchestrators_and_calls_nothing(durable, app_env) -> None:
    response = await page(durable, "refresh=7")
    config = config_of(response.get_body())
    assert config["orchestrators"] == ["SingletonOrchestrator"]
    assert config["refreshSeconds"] == 7
    assert [s["prefix"] for s in config["schedules"]] == ["SINGLETON_SCHEDULE"]
    assert sum(durable.calls.values()) == 0
    nonce = response.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert response.get_body().decode().count(f'nonce="{nonce}"') == 2


@pytest.mark.parametrize("query", ["refresh=0", "refresh=301", "refresh=x"])
async def test_a_bad_refresh_is_400(durable, app_env, query) -> None:
    response = await page(durable, query)
    assert response.status_code == 400
    assert json.loads(response.get_body())["parameter"] == "refresh"


async def test_no_value_can_end_the_config_script(durable, app_env, monkeypatch) -> None:
    monkeypatch.setenv("SINGLETON_SCHEDULE", "</script><script>alert(1)</script>")
    monkeypatch.setenv("SINGLETON_SCHEDULE_INSTANCE_ID", "x")
    await app.close()
    html = (await page(durable)).get_body().decode()
    assert "<script>alert(1)" not in html
    assert config_of(html.encode())["schedules"][0]["expression"].startswith("</script>")


def test_next_tick_reads_ncrontab_with_seconds_first() -> None:
    at = datetime.datetime(2026, 12, 2, 23, 1, 0, tzinfo=datetime.timezone.utc)
    assert next_tick("0 */15 * * * *", at) == at.replace(minute=15)
    assert next_tick("30 5 3 * * 1-5", at) == datetime.datetime(
        2026, 12, 3, 3, 5, 30, tzinfo=datetime.timezone.utc
    )
    assert next_tick("00:05:00", at) is None  # the host's interval form: not computed
    assert next_tick("nonsense", at) is None


def test_schedule_views_say_what_is_wrong_and_when_it_fires_next() -> None:
    at = datetime.datetime(2026, 12, 2, 23, 1, 0, tzinfo=datetime.timezone.utc)
    catalog = Catalog.of(["Job"], schedules=["A", "B", "C"])
    environ = {
        "A": "0 0 * * * *",
        "A_ENABLED": "true",
        "A_INSTANCE_ID": "hourly",
        "A_ORCHESTRATOR": "Job",
        "B": "0 0 * * * *",
        "B_INSTANCE_ID": "off",
        "C": "0 0 * * * *",
        "C_ENABLED": "maybe",
        "C_INSTANCE_ID": "x",
    }
    a, b, c = schedule_views(catalog, environ, at)
    assert (a["enabled"], a["orchestrator"], a["instanceId"]) == (True, "Job", "hourly")
    assert a["nextTick"] == "2026-12-03T00:00:00Z"
    assert b["enabled"] is False and b["nextTick"] is None
    assert "C_ENABLED" in c["problem"]


def test_the_folders_schedules_are_the_timer_folders(tmp_path: Path) -> None:
    assert Catalog.from_folders(APP_ROOT).schedules == ["SINGLETON_SCHEDULE"]
    for name, schedule in [
        ("Nightly", "%NIGHTLY%"),
        ("Cleanup", "%SINGLETON_RETENTION_SCHEDULE%"),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        bindings = [
            {"name": "timer", "type": "timerTrigger", "direction": "in", "schedule": schedule},
            {"name": "starter", "type": "durableClient", "direction": "in"},
        ]
        (folder / "function.json").write_text(json.dumps({"bindings": bindings}))
    assert Catalog.from_folders(tmp_path).schedules == ["NIGHTLY"]


async def test_the_page_finds_the_list_and_the_instances_wherever_they_are(
    durable, app_env, monkeypatch
) -> None:
    """A host.json route prefix of its own (here "custom") and an app route prefix: the
    page's paths follow both; the default app's are /api/singletons/ and /api/orchestrators/."""
    import azure.functions as func

    from durable_singleton import SingletonApp

    config = config_of((await page(durable)).get_body())
    assert (config["listPath"], config["instancePath"]) == (
        "/api/singletons/",
        "/api/orchestrators/",
    )
    moved = SingletonApp(Catalog.of(["SingletonOrchestrator"]), route_prefix="ops/jobs")
    request = func.HttpRequest("GET", f"{ORIGIN}/custom/ops/jobs", body=b"", route_params={})
    try:
        config = config_of((await moved.http_page(request, durable.starter())).get_body())
    finally:
        await moved.close()
    assert (config["listPath"], config["instancePath"]) == (
        "/custom/ops/jobs/",
        "/custom/orchestrators/",
    )
