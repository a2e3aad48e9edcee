"""The v2 Blueprint as a FunctionApp registers it: its functions, and an opt-in schedule
that starts through the guarded start (the example app's runtime run covers the rest)."""

from __future__ import annotations

from typing import Any, Dict

import azure.durable_functions as df
import pytest
from azure.functions.timer import TimerRequest

import durable_singleton

ROUTES = {
    "HttpStartSingle",
    "SingletonInstance",
    "SingletonList",
    "SingletonsPage",
    "OpenApiDocument",
}


def registered(blueprint: Any) -> Dict[str, Any]:
    app = df.DFApp()
    app.register_functions(blueprint)
    return {function.get_function_name(): function for function in app.get_functions()}


def test_the_retention_timer_is_opt_in() -> None:
    assert "SingletonRetention" not in registered(durable_singleton.blueprint(["Job"]))
    functions = registered(durable_singleton.blueprint(["Job"], retention=True))
    trigger = functions["SingletonRetention"].get_trigger()
    assert trigger.schedule == "%SINGLETON_RETENTION_SCHEDULE%"


def test_the_routes_are_registered_and_schedules_are_opt_in() -> None:
    assert set(registered(durable_singleton.blueprint(["Job"]))) == ROUTES
    scheduled = registered(
        durable_singleton.blueprint(["Job"], schedules=["SINGLETON_SCHEDULE", "REPORTS"])
    )
    assert set(scheduled) == ROUTES | {"TimerStartSingle", "TimerStartSingle_REPORTS"}
    assert scheduled["TimerStartSingle"].get_trigger().schedule == "%SINGLETON_SCHEDULE%"
    assert scheduled["TimerStartSingle_REPORTS"].get_trigger().schedule == "%REPORTS%"


def test_it_takes_orchestrators_or_an_app_not_both() -> None:
    app = durable_singleton.SingletonApp(durable_singleton.Catalog.of(["Job"]))
    with pytest.raises(TypeError):
        durable_singleton.blueprint(["Job"], app=app)
    with pytest.raises(TypeError):
        durable_singleton.blueprint()


async def test_a_scheduled_tick_starts_through_the_guarded_start(
    durable, app_env, monkeypatch
) -> None:
    singleton = durable_singleton.SingletonApp(
        durable_singleton.Catalog.of(["SingletonOrchestrator"])
    )
    functions = registered(
        durable_singleton.blueprint(app=singleton, schedules=["SINGLETON_SCHEDULE"])
    )
    monkeypatch.setenv("SINGLETON_SCHEDULE_ENABLED", "true")
    monkeypatch.setenv("SINGLETON_SCHEDULE_INSTANCE_ID", "bp-tick")
    tick = functions["TimerStartSingle"].get_user_function()
    try:
        await tick(TimerRequest(), durable.starter())
        await tick(TimerRequest(), durable.starter())  # the run is active: skipped
    finally:
        await singleton.close()
    assert durable.accepted_starts == [("SingletonOrchestrator", "bp-tick")]
