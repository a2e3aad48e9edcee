"""What reaches Application Insights: the app run with the Azure Monitor distro as the
Functions Python worker configures it in Azure, exporting to a loopback receiver; the
Request, Dependency, Metric and Message envelopes it sends, and the queries of
docs/operate.md that must find them."""

from __future__ import annotations

import datetime
import json
import re
import sys
from typing import Any, Dict, Iterator, List

import pytest

from tests.support.app import APP_ROOT, fresh_app_settings
from tests.support.durable_double import SYSTEM_KEY
from tests.support.ingestion import IngestionReceiver
from tests.support.processes import AppProcesses

pytestmark = [
    pytest.mark.processes,
    pytest.mark.runtime,
    pytest.mark.skipif(sys.version_info < (3, 13), reason="the runtime package needs 3.13"),
]

OPERATE = APP_ROOT / "docs" / "operate.md"


#: The telemetry settings infra/resources.bicep gives the app, besides the connection.
TELEMETRY_SETTINGS = (
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
    "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


def infra_telemetry() -> Dict[str, str]:
    """The values infra/resources.bicep sets for :data:`TELEMETRY_SETTINGS`."""
    text = (APP_ROOT / "infra" / "resources.bicep").read_text()
    found = dict(re.findall(r"^\s*([A-Z_]+): '([^']*)'", text, re.M))
    settings = {name: found[name] for name in TELEMETRY_SETTINGS if name in found}
    assert set(settings) == set(TELEMETRY_SETTINGS), settings
    return settings


@pytest.fixture(scope="module")
def receiver() -> Iterator[IngestionReceiver]:
    served = IngestionReceiver().start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
async def envelopes(
    receiver, durable_server, azurite, tmp_path_factory: pytest.TempPathFactory
) -> List[Dict[str, Any]]:
    """Run the worker once for this module's tests (each reads what it sent); the
    envelopes the receiver got."""
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    durable_server.reset()
    durable_server.put("tel-stuck", "Pending", created=long_ago)
    processes = AppProcesses()
    with pytest.MonkeyPatch.context() as monkeypatch:
        fresh_app_settings(monkeypatch, azurite)
        await processes.start(
            "-m",
            "tests.support.telemetry_worker",
            durable_server.rpc_base_url,
            env={
                "APPLICATIONINSIGHTS_CONNECTION_STRING": receiver.connection_string,
                "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
                # As infra/ sets them: every span kept (the distro's default samples them
                # at 5 traces per second), the app's own loggers only.
                **infra_telemetry(),
                "SINGLETON_STORAGE_TIMEOUT_SECONDS": "1",
                # the exporter's retry files, if any
                "TMPDIR": str(tmp_path_factory.mktemp("exporter")),
            },
        )
    [out] = await processes.outputs(90)
    assert json.loads(out) == [202, 409, 409, 503]
    return receiver.envelopes


def base(envelope: Dict[str, Any]) -> Dict[str, Any]:
    data: Dict[str, Any] = envelope["data"]["baseData"]
    return data


#: A start's request as Application Insights names it: method and route template.
START = "POST /api/orchestrators/{functionName}/{instanceId}"


def requests_of(envelopes: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [
        base(e)
        for e in envelopes
        if e["data"]["baseType"] == "RequestData" and base(e)["name"] == START
    ]


def metrics_named(envelopes: List[Dict[str, Any]], name: str) -> List[Dict[str, Any]]:
    return [
        base(e)
        for e in envelopes
        if e["data"]["baseType"] == "MetricData" and base(e)["metrics"][0]["name"] == name
    ]


async def test_requests_carry_the_decision_and_the_problem(envelopes) -> None:
    found = requests_of(envelopes)
    assert sorted(r["responseCode"] for r in found) == ["202", "409", "409", "503"]
    by_code = {
        r["responseCode"]: r
        for r in found
        if r["properties"]["singleton.instance_id"] != "tel-stuck"
    }
    assert by_code["202"]["properties"]["singleton.decision"] == "started"
    assert by_code["202"]["success"] is True
    conflict = by_code["409"]["properties"]
    assert conflict["singleton.decision"] == "rejected-active"
    assert conflict["singleton.problem_type"] == "instance-active"
    outage = by_code["503"]
    assert outage["properties"]["singleton.problem_type"] == "storage-unavailable"
    assert outage["success"] is False
    assert by_code["202"]["properties"]["singleton.instance_id"] == "tel-job"
    [stuck] = [r for r in found if r["properties"]["singleton.instance_id"] == "tel-stuck"]
    assert stuck["properties"]["singleton.stuck"] == "True"
    assert int(stuck["properties"]["singleton.pending_seconds"]) >= 7200


async def test_dependencies_are_the_steps(envelopes) -> None:
    names = {base(e)["name"] for e in envelopes if e["data"]["baseType"] == "RemoteDependencyData"}
    assert {"durable.status", "lock.acquire", "durable.start"} <= names


async def test_metrics_carry_their_dimensions(envelopes) -> None:
    decisions = metrics_named(envelopes, "singleton.decisions")
    assert {m["properties"]["decision"] for m in decisions} >= {
        "started",
        "rejected-active",
        "storage-unavailable",
    }
    failures = metrics_named(envelopes, "singleton.dependency.failures")
    assert {m["properties"]["dependency"] for m in failures} == {"storage"}


async def test_no_key_url_or_body_leaves(envelopes) -> None:
    text = json.dumps(envelopes)
    for secret in ("FUNCTIONKEY1", "code=", SYSTEM_KEY, "AccountKey", "a2V5"):
        assert secret not in text, secret
    for request in requests_of(envelopes):
        assert "url" not in request or "?" not in request["url"]
    lines = [base(e)["message"] for e in envelopes if e["data"]["baseType"] == "MessageData"]
    assert any(m.startswith("HttpStartSingle instance=tel-job") for m in lines)


def operate_queries() -> List[str]:
    """The Kusto queries in docs/operate.md, one string each."""
    text = OPERATE.read_text()
    blocks = re.findall(r"```kusto\n(.*?)```", text, re.S)
    queries: List[str] = []
    for block in blocks:
        current: List[str] = []
        for line in block.splitlines():
            if line.startswith("//") or not line.strip():
                if current:
                    queries.append(" ".join(current))
                    current = []
                continue
            current.append(line.strip())
        if current:
            queries.append(" ".join(current))
    return queries


async def test_each_query_of_the_docs_finds_what_it_asks_for(envelopes) -> None:
    queries = operate_queries()
    assert len(queries) >= 4
    for query in queries:
        table = query.split("|", 1)[0].strip()
        names = re.findall(r'name == "([^"]+)"', query)
        dimensions = [
            dotted or quoted
            for dotted, quoted in re.findall(
                r'customDimensions(?:\.([A-Za-z_]+)|\["([^"]+)"\])', query
            )
        ]
        if table == "customMetrics":
            found = [m for name in names for m in metrics_named(envelopes, name)]
        elif table == "requests":
            assert names == [START], query
            found = requests_of(envelopes)
        else:
            raise AssertionError(f"a query of an unchecked table: {query}")
        assert found, query
        for dimension in dimensions:
            assert any(dimension in m["properties"] for m in found), (query, dimension)
