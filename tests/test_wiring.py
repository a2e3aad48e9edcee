"""What the Functions host reads: function.json against each main, host.json, settings."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import re
import typing
from collections import Counter
from pathlib import Path
from typing import Any, Dict

import pytest
from azure.functions import meta
from packaging.requirements import Requirement

from durable_singleton import Catalog
from durable_singleton import _settings as app_settings
from tests.support.app import APP_ROOT
from tests.support.contract import DOCUMENT

FUNCTIONS = sorted(p.parent.name for p in APP_ROOT.glob("*/function.json"))


def bindings(function: str) -> list:
    return json.loads((APP_ROOT / function / "function.json").read_text())["bindings"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_json_matches_main(function: str) -> None:
    """Every input binding is a parameter of main with a type its converter accepts,
    and every parameter is bound, as the Python worker checks when it loads the app."""
    module = importlib.import_module(function)
    main = module.main
    target = getattr(main, "orchestrator_function", main)  # df.Orchestrator.create wraps it
    hints = typing.get_type_hints(main) if target is main else {}
    parameters = inspect.signature(main).parameters
    registry = meta.get_binding_registry()
    declared = {b["name"] for b in bindings(function)} - {"$return"}
    assert set(parameters) == declared
    for binding in bindings(function):
        converter = registry.get(binding["type"])
        assert converter is not None, binding["type"]
        if binding["name"] == "$return":
            assert converter.check_output_type_annotation(hints["return"])
        elif binding["name"] in hints:
            assert converter.check_input_type_annotation(hints[binding["name"]])


def http_triggers() -> Dict[str, Dict[str, Any]]:
    """Each function with an HTTP trigger, and that trigger's binding."""
    return {
        function: binding
        for function in FUNCTIONS
        for binding in bindings(function)
        if binding["type"] == "httpTrigger"
    }


def test_the_http_routes_are_the_published_contract() -> None:
    """Each operation of the OpenAPI document is served by exactly one function, and
    each HTTP route and method of the app is in the document."""
    served = Counter(
        (f"/{trigger['route']}", method)
        for trigger in http_triggers().values()
        for method in trigger["methods"]
    )
    published = Counter(
        (path, method)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    )
    assert served == published


def test_every_http_function_asks_for_the_key_the_contract_names() -> None:
    """The document requires a function key for every operation; the host enforces
    it only for authLevel function (or admin), never for anonymous."""
    assert DOCUMENT["security"] and all(
        "security" not in operation
        for item in DOCUMENT["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
    )
    levels = {function: trigger["authLevel"] for function, trigger in http_triggers().items()}
    assert levels and set(levels.values()) == {"function"}, levels


def test_orchestrators_are_read_from_function_json() -> None:
    assert Catalog.from_folders(APP_ROOT).names == {"SingletonOrchestrator"}


def test_a_new_orchestrator_folder_is_startable_without_code(tmp_path: Path) -> None:
    for name, trigger in [
        ("Nightly", "orchestrationTrigger"),
        ("Step", "activityTrigger"),
        ("Off", "orchestrationTrigger"),
    ]:
        (tmp_path / name).mkdir()
        config = {"bindings": [{"name": "context", "type": trigger, "direction": "in"}]}
        if name == "Off":
            config["disabled"] = True
        (tmp_path / name / "function.json").write_text(json.dumps(config))
    (tmp_path / "Broken").mkdir()
    (tmp_path / "Broken" / "function.json").write_text("{not json")
    assert Catalog.from_folders(tmp_path).names == {"Nightly"}


def test_host_json_keeps_what_the_app_relies_on() -> None:
    host = json.loads((APP_ROOT / "host.json").read_text())
    # Durable Functions for Python needs extension bundle 4.x.
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    # The lock relies on this refusal (see durable_singleton._policy.must_recheck_under_lock).
    durable = host["extensions"]["durableTask"]
    assert durable["overridableExistingInstanceStates"] == "NonRunningStates"


def test_local_settings_has_what_func_start_needs_and_no_secret() -> None:
    text = (APP_ROOT / "local.settings.json").read_text()
    values = json.loads(text)["Values"]
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert set(app_settings.APP_SETTINGS) <= set(values)
    assert app_settings.load_settings(values) == app_settings.Settings()  # documented defaults
    assert not re.search(r"AccountKey|SharedAccessSignature|code=|InstrumentationKey", text)


def test_runtime_requirements_are_pinned_to_what_is_installed() -> None:
    """Every line is pinned; the lines for this Python are the versions installed."""
    lines = [
        line.strip()
        for line in (APP_ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines
    for line in lines:
        requirement = Requirement(line)
        [pin] = list(requirement.specifier)
        assert pin.operator == "==", f"{line} is not pinned"
        if requirement.marker is None or requirement.marker.evaluate():
            assert importlib.metadata.version(requirement.name) == pin.version


def test_each_python_gets_exactly_one_azure_functions_line() -> None:
    """azure-functions 1.x stops before 3.13, 2.x starts there; the runtime only on 3.13+."""
    requirements = [
        Requirement(line)
        for line in (APP_ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for version in ("3.11", "3.12", "3.13", "3.14"):
        environment = {"python_version": version}
        chosen = [r for r in requirements if r.marker is None or r.marker.evaluate(environment)]
        functions = [r for r in chosen if r.name == "azure-functions"]
        assert len(functions) == 1
        runtime = [r for r in chosen if r.name == "azure-functions-runtime-v1"]
        assert len(runtime) == (1 if version >= "3.13" else 0)


def test_funcignore_keeps_tests_and_tools_out_of_the_deployment() -> None:
    ignored = set((APP_ROOT / ".funcignore").read_text().split())
    assert {
        ".venv",
        "tests",
        "local.settings.json",
        "node_modules",
        "requirements-dev.txt",
        "scripts",
    } <= ignored
    assert not {"durable_singleton", "singleton_app.py", "host.json", "requirements.txt"} & ignored
    assert "examples" in ignored  # the v2 example is not part of the deployed app


def test_the_v2_examples_requirements_pin_what_its_runtime_test_runs() -> None:
    """Pinned as the v1 app's are, with the v2 runtime in place of the v1 one; the
    library itself comes from this repository."""
    lines = [
        line.strip()
        for line in (APP_ROOT / "examples" / "v2" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "../.." in lines
    requirements = [Requirement(line) for line in lines if line != "../.."]
    for requirement in requirements:
        [pin] = list(requirement.specifier)
        assert pin.operator == "=="
        if requirement.marker is None or requirement.marker.evaluate():
            assert importlib.metadata.version(requirement.name) == pin.version
    names = {r.name for r in requirements}
    assert "azure-functions-runtime" in names and "azure-functions-runtime-v1" not in names
