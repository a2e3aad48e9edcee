"""The project's commands as a developer runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.azurite import PROJECT_ROOT


def test_start_without_core_tools_stops_with_how_to_install(tmp_path: Path) -> None:
    # A PATH with the shell tools the script uses, and no `func`.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    result = subprocess.run(
        [str(bin_dir / "bash"), "scripts/start.sh"],
        cwd=PROJECT_ROOT,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Azure Functions Core Tools" in result.stderr
    assert "npm install --global azure-functions-core-tools@4" in result.stderr
    assert "Starting Azurite" not in result.stdout  # it stopped before doing anything


def test_a_failed_core_tools_install_is_tolerated_and_says_how(tmp_path: Path) -> None:
    """npm is there but Core Tools' installer cannot download the host (as here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    fake_npm = bin_dir / "npm"
    fake_npm.write_text("#!" + shutil.which("bash") + "\necho 'download failed' >&2\nexit 1\n")
    fake_npm.chmod(0o755)
    result = subprocess.run(
        [str(bin_dir / "bash"), "scripts/start.sh"],
        cwd=PROJECT_ROOT,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )
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
