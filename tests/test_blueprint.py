"""The v2 Blueprint as a FunctionApp registers it: its functions, and an opt-in schedule
that starts through the guarded start (the example app's runtime run covers the rest)."""

from __future__ import annotations

import json
from typing import Any, Dict

import azure.durable_functions as df
import azure.functions as func
import pytest
import yaml
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


def test_orchestrators_that_take_next_runs_get_the_activity_they_call() -> None:
    assert "SingletonNextRun" not in registered(durable_singleton.blueprint(["Job"]))
    functions = registered(durable_singleton.blueprint(["Job"], next_runs=["Job"]))
    assert functions["SingletonNextRun"].get_trigger().type == "activityTrigger"


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


HTTP_FUNCTIONS = ROUTES


def http_triggers(app: df.DFApp) -> Dict[str, Dict[str, Any]]:
    """Each HTTP function's trigger binding, as the host reads it from the indexed app."""
    triggers = {}
    for function in app.get_functions():
        for binding in function.get_raw_bindings():
            document = json.loads(binding)
            if document["type"] == "httpTrigger":
                triggers[function.get_function_name()] = document
    return triggers


def auth_levels(app: df.DFApp) -> Dict[str, str]:
    """Each HTTP function's authLevel."""
    return {name: trigger["authLevel"] for name, trigger in http_triggers(app).items()}


@pytest.mark.parametrize("default", [func.AuthLevel.ANONYMOUS, func.AuthLevel.FUNCTION])
def test_every_guarded_route_is_at_the_function_key_whatever_the_apps_default(default) -> None:
    """A quickstart-shaped app builds DFApp(http_auth_level=ANONYMOUS): the Blueprint's
    routes (start, stop and terminate, the list, the page, the contract) keep the key."""
    app = df.DFApp(http_auth_level=default)
    app.register_functions(durable_singleton.blueprint(["Job"]))
    assert auth_levels(app) == {name: "FUNCTION" for name in HTTP_FUNCTIONS}


def test_an_anonymous_blueprint_is_the_callers_explicit_choice() -> None:
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(
        durable_singleton.blueprint(["Job"], auth_level=func.AuthLevel.ANONYMOUS)
    )
    assert auth_levels(app) == {name: "ANONYMOUS" for name in HTTP_FUNCTIONS}


async def test_the_blueprint_hands_over_the_app_it_uses(durable, app_env) -> None:
    made = durable_singleton.blueprint(["SingletonOrchestrator"])
    assert isinstance(made.singleton, durable_singleton.SingletonApp)
    functions = registered(made)
    request = func.HttpRequest(
        "POST",
        "http://localhost:7071/api/orchestrators/SingletonOrchestrator/bp-handle",
        body=b"",
        route_params={"functionName": "SingletonOrchestrator", "instanceId": "bp-handle"},
    )
    start = functions["HttpStartSingle"].get_user_function()
    assert (await start(request, durable.starter())).status_code == 202
    await made.singleton.close()  # what a program or test that owns its loop calls
    given = durable_singleton.SingletonApp(durable_singleton.Catalog.of(["Job"]))
    assert durable_singleton.blueprint(app=given).singleton is given


def http_routes(app: df.DFApp) -> Dict[str, str]:
    return {name: trigger["route"] for name, trigger in http_triggers(app).items()}


def test_the_operator_routes_move_together_with_the_prefix() -> None:
    app = df.DFApp()
    app.register_functions(durable_singleton.blueprint(["Job"], route_prefix="ops/jobs"))
    assert http_routes(app) == {
        "HttpStartSingle": "orchestrators/{functionName}/{instanceId}",  # the contract
        "SingletonInstance": "orchestrators/{functionName}/{instanceId}",
        "SingletonList": "ops/jobs/{functionName}",
        "SingletonsPage": "ops/jobs",
        "OpenApiDocument": "ops/jobs/openapi.yaml",
    }
    default = df.DFApp()
    default.register_functions(durable_singleton.blueprint(["Job"]))
    assert http_routes(default)["SingletonList"] == "singletons/{functionName}"


@pytest.mark.parametrize(
    "prefix", ["", "orchestrators", "Orchestrators/x", "runtime", "a b", "a//b", "{x}", "/lead"]
)
def test_a_prefix_that_could_overlap_or_is_no_path_is_refused(prefix) -> None:
    with pytest.raises(ValueError):
        durable_singleton.blueprint(["Job"], route_prefix=prefix)


def test_the_contract_names_the_routes_the_app_serves() -> None:
    app = durable_singleton.SingletonApp(
        durable_singleton.Catalog.of(["Job"]), route_prefix="ops/jobs"
    )
    document = yaml.safe_load(app.openapi().get_body())
    assert set(document["paths"]) == {
        "/orchestrators/{functionName}/{instanceId}",
        "/ops/jobs/{functionName}",
        "/ops/jobs",
        "/ops/jobs/openapi.yaml",
    }
    with pytest.raises(TypeError):
        durable_singleton.blueprint(app=app, route_prefix="other")


def test_each_operator_function_can_be_left_out_the_start_cannot() -> None:
    left = registered(
        durable_singleton.blueprint(["Job"], leave_out=["SingletonsPage", "OpenApiDocument"])
    )
    assert set(left) == ROUTES - {"SingletonsPage", "OpenApiDocument"}
    with pytest.raises(ValueError):
        durable_singleton.blueprint(["Job"], leave_out=["HttpStartSingle"])
