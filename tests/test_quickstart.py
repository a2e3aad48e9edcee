"""The library in an app nobody here wrote: the Durable Functions Python quickstart
(examples/quickstart: an anonymous app, its own starter on ``orchestrators/{functionName}``)
with the Blueprint registered, under the v2 Python runtime and the host's route check.

The quickstart's starter is tried as the template names it (``http_start``, sorting
after the Blueprint's functions) and renamed to sort before them (``HttpStart``): the host
refuses whichever of two overlapping routes comes later in name order, so an overlap
fails one of the two.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("azure_functions_runtime", reason="the v2 runtime needs Python 3.13+")

from durable_singleton import _settings as app_settings  # noqa: E402
from tests.support.app import APP_ROOT  # noqa: E402
from tests.support.processes import AppProcesses  # noqa: E402

pytestmark = [pytest.mark.runtime, pytest.mark.processes]

QUICKSTART = APP_ROOT / "examples" / "quickstart"
GUARDED = {
    "HttpStartSingle",
    "SingletonInstance",
    "SingletonList",
    "SingletonsPage",
    "OpenApiDocument",
}


def quickstart_named(folder: Path, starter: str) -> Path:
    """A copy of the quickstart app whose starter function is named ``starter``."""
    shutil.copytree(QUICKSTART, folder)
    app = folder / "function_app.py"
    text = app.read_text(encoding="utf-8")
    assert "async def http_start(" in text
    app.write_text(text.replace("async def http_start(", f"async def {starter}("))
    return folder


@pytest.mark.parametrize("starter", ["http_start", "HttpStart"])
async def test_the_quickstart_with_the_blueprint_loads_every_function_and_keeps_the_key(
    starter, durable, azurite, app_env, tmp_path
) -> None:
    durable.orchestrators = {"hello_orchestrator"}
    folder = quickstart_named(tmp_path / "app", starter)
    workers = AppProcesses()
    await workers.start(
        "-m",
        "tests.support.quickstart_worker",
        str(folder),
        durable.rpc_base_url,
        "hello_orchestrator",
        starter,
        env={
            app_settings.STORAGE_CONNECTION: azurite.connection_string,
            "SINGLETON_LOCK_CONTAINER": app_env,
        },
    )
    [out] = await workers.outputs(120)
    report = json.loads(out)
    assert report["refused"] == {}  # no route of the Blueprint overlaps the starter's
    assert set(report["functions"]) == GUARDED | {starter, "hello_orchestrator", "hello"}
    assert report["auth"] == {starter: "ANONYMOUS"} | {name: "FUNCTION" for name in GUARDED}
    assert report["guarded"] == 202 and report["own"] == 202
    assert ("hello_orchestrator", "qs-job") in durable.accepted_starts
    assert len(durable.accepted_starts) == 2  # the quickstart's starter started its own
