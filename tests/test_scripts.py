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


def test_ci_runs_the_readme_test_command() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci
    assert "bash scripts/test.sh" in readme
