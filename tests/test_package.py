"""The installable library: its wheel holds the package, its data and nothing else, and
installs and imports on its own, away from this repository."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import durable_singleton
from tests.support.app import APP_ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel`` builds from a copy of the library's sources."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(APP_ROOT / "pyproject.toml", source)
    shutil.copytree(APP_ROOT / "docs", source / "docs")
    shutil.copytree(
        APP_ROOT / "durable_singleton",
        source / "durable_singleton",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out]
        + ["--disable-pip-version-check", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [found] = out.glob("durable_singleton-*.whl")
    return found


def test_the_wheel_holds_the_package_its_contract_and_its_types(wheel: Path) -> None:
    assert wheel.name.startswith(f"durable_singleton-{durable_singleton.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {n for n in top if not n.endswith(".dist-info")} == {"durable_singleton"}
    assert {"durable_singleton/openapi.yaml", "durable_singleton/py.typed"} <= set(names)
    metadata = zipfile.ZipFile(wheel).read(
        f"durable_singleton-{durable_singleton.__version__}.dist-info/METADATA"
    )
    for dependency in (b"azure-functions-durable", b"azure-storage-blob", b"aiohttp"):
        assert b"Requires-Dist: " + dependency in metadata


def test_the_installed_package_imports_away_from_the_repository(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, wheel]
        + ["--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    script = (
        "import durable_singleton, pathlib; "
        "print(durable_singleton.__version__); print(durable_singleton.__file__); "
        "print(durable_singleton.SingletonApp(durable_singleton.Catalog.of([])).openapi().status_code)"
    )
    # Only the installed copy and the test environment's dependencies on the path.
    env = {**os.environ, "PYTHONPATH": str(target)}
    ran = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    version, location, openapi_status = ran.stdout.split()
    assert version == durable_singleton.__version__
    assert Path(location).is_relative_to(target)
    assert openapi_status == "200"  # the contract ships as package data


def _imports(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_apps_import_only_the_public_api() -> None:
    """The v1 app's folders and the v2 example use what durable_singleton exports (its
    top level and its public modules, errors, job and limits), no private module."""
    sources = [APP_ROOT / "singleton_app.py", *APP_ROOT.glob("*/__init__.py")]
    sources += list((APP_ROOT / "examples").rglob("*.py"))
    sources = [p for p in sources if p.parent.name not in ("durable_singleton", "tests")]
    private = {
        str(p.relative_to(APP_ROOT)): sorted(
            n for n in _imports(p) if n.startswith("durable_singleton._")
        )
        for p in sources
    }
    assert len(sources) >= 8
    assert not {path: names for path, names in private.items() if names}


def test_the_public_api_is_what_all_names() -> None:
    exported = set(durable_singleton.__all__)
    assert {"SingletonApp", "SingletonClient", "blueprint", "Outcome", "__version__"} <= exported
    assert len(durable_singleton.__all__) <= 20
    assert all(hasattr(durable_singleton, name) for name in exported)
    assert not [name for name in exported if name.startswith("_") and name != "__version__"]
    for module in (durable_singleton.errors, durable_singleton.job, durable_singleton.limits):
        assert module.__all__ and all(hasattr(module, name) for name in module.__all__)


#: The public API of 3.1.0 and 4.0.0 (their ``__all__``, and SingletonApp's methods that
#: 5.0 moved to SingletonClient, durable_singleton.job or took away).
EARLIER_NAMES = {
    "Action", "Catalog", "ConfigurationError", "DurableFailure", "DurableUnavailable",
    "InputRule", "InstanceEnding", "InstanceStatus", "InstanceVanished", "InvalidInput",
    "LockBusy", "LockLost", "LockUnavailable", "NextRunDropped", "NextRunOutcomeUnknown",
    "NotStarted", "OnConflict", "Outcome", "OutcomeUnknown", "Overlap", "Problem",
    "ProblemError", "ReplaceTimedOut", "STOP_EVENT", "Reuse", "SingletonApp",
    "SingletonError", "StartOutcomeUnknown", "StopMode", "__version__", "blueprint",
    "parse_job_input", "run_job", "stop_requested",
}  # fmt: skip
EARLIER_METHODS = {"start", "status", "stop", "item_store", "root", "wait_for_background"}


def test_the_upgrade_guide_says_where_everything_that_left_the_api_went() -> None:
    """docs/library.md's upgrade section has a row for each name 3.x or 4.x exported that
    5.0's top level does not: where it went (a module that has it), or that it is gone."""
    text = (APP_ROOT / "docs" / "library.md").read_text(encoding="utf-8")
    section = text.split("## Upgrading to 5.0", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    moved_to = {
        "durable_singleton.errors": durable_singleton.errors,
        "durable_singleton.job": durable_singleton.job,
    }
    left = sorted(EARLIER_NAMES - set(durable_singleton.__all__))
    assert "LockBusy" in left and "run_job" in left
    wrong = []
    for name in left:
        [row] = [r for r in rows if re.search(rf"`[^`]*\b{name}\b", r.split(" | ")[0])] or [""]
        places = [m for place, m in moved_to.items() if place in row]
        if not ("gone" in row or any(hasattr(m, name) for m in places)):
            wrong.append(name)
    for method in EARLIER_METHODS:
        assert not hasattr(durable_singleton.SingletonApp, method)
        if not any(f"app.{method}(" in r for r in rows):
            wrong.append(f"SingletonApp.{method}")
    assert not wrong


def test_the_sdist_and_the_wheel_pass_twine_check(tmp_path: Path) -> None:
    """What the release workflow checks before it publishes: both archives build, and
    their metadata (the README, docs/library.md, as the long description) renders."""
    source = tmp_path / "source"
    shutil.copytree(
        APP_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            "__pycache__", ".venv*", "node_modules", ".git", ".azurite", "benchmarks"
        ),
    )
    out = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", out, str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    archives = sorted(p.name for p in out.iterdir())
    version = durable_singleton.__version__
    assert archives == [
        f"durable_singleton-{version}-py3-none-any.whl",
        f"durable_singleton-{version}.tar.gz",
    ]
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *out.iterdir()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
