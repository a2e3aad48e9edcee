"""The project's commands as a developer runs them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.azurite import PROJECT_ROOT


def run_start(bin_dir: Path) -> subprocess.CompletedProcess:
    """scripts/start.sh with a PATH of the shell tools it uses (and what ``bin_dir``
    adds), but no `func`."""
    for tool in ("bash", "dirname", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    return subprocess.run(
        [str(bin_dir / "bash"), "scripts/start.sh"],
        cwd=PROJECT_ROOT,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_start_without_core_tools_stops_with_how_to_install(tmp_path: Path) -> None:
    result = run_start(tmp_path)
    assert result.returncode == 1
    assert "Azure Functions Core Tools" in result.stderr
    assert "npm install --global azure-functions-core-tools@4" in result.stderr
    assert "Starting Azurite" not in result.stdout  # it stopped before doing anything


def test_a_failed_core_tools_install_is_tolerated_and_says_how(tmp_path: Path) -> None:
    """npm is there but Core Tools' installer cannot download the host (as here)."""
    fake_npm = tmp_path / "npm"
    fake_npm.write_text("#!" + shutil.which("bash") + "\necho 'download failed' >&2\nexit 1\n")
    fake_npm.chmod(0o755)
    result = run_start(tmp_path)
    assert result.returncode == 1
    assert "Installing Azure Functions Core Tools 4" in result.stdout
    assert "The Core Tools install failed" in result.stderr
    assert "npm install --global azure-functions-core-tools@4" in result.stderr


def test_a_missing_python_is_named_with_how_to_install(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", "scripts/find-python.sh", "3.99"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Python 3.99 was not found" in result.stderr
    assert "pyenv install 3.99" in result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci
    assert "bash scripts/test.sh" in readme


def test_the_pre_commit_hooks_are_valid_and_run_what_the_test_command_runs() -> None:
    """The hooks are the checks scripts/test.sh starts with, from the same .venv."""
    config = PROJECT_ROOT / ".pre-commit-config.yaml"
    pre_commit = Path(sys.executable).parent / "pre-commit"
    result = subprocess.run(
        [str(pre_commit), "validate-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [repo] = yaml.safe_load(config.read_text())["repos"]
    # Each check as tool and subcommand: "mypy", "ruff check", "ruff format".
    hooks = {
        " ".join([words[0].split("/")[-1], *words[1:2]])
        for words in (hook["entry"].split() for hook in repo["hooks"])
    }
    test_script = (PROJECT_ROOT / "scripts" / "test.sh").read_text()
    checks = {
        " ".join(match).strip()
        for match in re.findall(r'"\$VENV/bin/(mypy|ruff)"(?: (check|format))?', test_script)
    }
    assert hooks == checks == {"mypy", "ruff check", "ruff format"}
