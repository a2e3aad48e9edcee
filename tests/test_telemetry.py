"""Traces and metrics: one span per request with its steps, and the counters and
histograms an operator alerts on; none holds a key."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterator, List

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.app import app, change_setting, settled
from tests.support.azurite import ACCOUNT_KEY, connection_string, free_port
from tests.support.durable_double import SYSTEM_KEY, starter_binding

_spans = InMemorySpanExporter()
#: Delta temporality: each collection holds what happened since the one before, so
#: every test sees its own counts (the fixture collects once before the test).
_metrics = InMemoryMetricReader(
    preferred_temporality={
        Counter: AggregationTemporality.DELTA,
        Histogram: AggregationTemporality.DELTA,
    }
)


@pytest.fixture(scope="session")
def telemetry_sdk() -> None:
    """The OpenTelemetry SDK with in-memory exporters, for the whole session (the
    global providers can be set once)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_spans))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_metrics]))


@pytest.fixture
def spans(telemetry_sdk) -> Iterator[InMemorySpanExporter]:
    _spans.clear()
    _metrics.collect()  # start each test's counts from here
    yield _spans


def points(name: str) -> List[Any]:
    """The data points of metric ``name`` collected so far."""
    found: List[Any] = []
    data = _metrics.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def request_span(spans: InMemorySpanExporter, name: str = "HttpStartSingle") -> Any:
    [span] = [s for s in spans.get_finished_spans() if s.name == name]
    return span


def children(spans: InMemorySpanExporter, parent: Any) -> List[str]:
    return [
        s.name
        for s in spans.get_finished_spans()
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


async def test_a_start_is_one_span_with_its_steps(start, durable, spans) -> None:
    assert (await start("t-start")).status_code == 202
    span = request_span(spans)
    assert span.attributes["singleton.instance_id"] == "t-start"
    assert span.attributes["singleton.function_name"] == "SingletonOrchestrator"
    assert span.attributes["singleton.decision"] == "started"
    assert span.attributes["http.response.status_code"] == 202
    # The channel's confirmation is sent after the answer, before the lease's release.
    await settled(app)
    assert children(spans, span) == [
        "durable.status",
        "lock.acquire",
        "nextrun.open",
        "durable.start",
        "nextrun.confirm",
    ]
    [point] = [p for p in points("singleton.decisions") if p.attributes["decision"] == "started"]
    assert point.value == 1


async def test_a_conflict_takes_no_lock_and_is_counted(start, durable, spans) -> None:
    durable.put("t-busy", "Running")
    assert (await start("t-busy")).status_code == 409
    span = request_span(spans)
    assert span.attributes["singleton.decision"] == "rejected-active"
    assert children(spans, span) == ["durable.status"]
    decisions = {p.attributes["decision"]: p.value for p in points("singleton.decisions")}
    assert decisions == {"rejected-active": 1}


async def test_a_lock_wait_is_measured(start, durable, spans) -> None:
    durable.reset(start_check_delay=0.2)
    responses = await asyncio.gather(start("t-wait"), start("t-wait"))
    assert sorted(r.status_code for r in responses) == [202, 409]
    [wait] = points("singleton.lock.wait")
    assert wait.count == 1 and wait.sum > 0
    events = [e.name for s in spans.get_finished_spans() for e in s.events]
    assert "lock.wait.begin" in events and "lock.wait.end" in events


async def test_a_terminates_wait_for_the_lock_is_measured_too(
    start, instance, durable, spans
) -> None:
    durable.reset(start_check_delay=0.3)

    async def terminate_while_the_start_holds_the_lock() -> Any:
        # The start is sent under the lease, and the double holds it start_check_delay.
        while durable.calls["start"] == 0:
            await asyncio.sleep(0.01)
        return await instance("DELETE", "t-term-wait", "mode=terminate")

    started, terminated = await asyncio.gather(
        start("t-term-wait"), terminate_while_the_start_holds_the_lock()
    )
    assert (started.status_code, terminated.status_code) == (202, 202)
    [wait] = points("singleton.lock.wait")
    assert wait.count == 1 and wait.sum > 0 and wait.attributes["outcome"] == "acquired"


@pytest.mark.parametrize(
    "failure,dependency,kind",
    [
        ("storage", "storage", "storage-unavailable"),
        ("durable", "durable", "durable-unavailable"),
    ],
)
async def test_each_dependency_failure_is_counted_and_traced(
    start, durable, spans, monkeypatch, failure, dependency, kind
) -> None:
    starter = None
    if failure == "storage":
        await change_setting(monkeypatch, "AzureWebJobsStorage", connection_string(free_port()))
    else:
        starter = starter_binding(f"http://127.0.0.1:{free_port()}/durabletask/")
    assert (await start("t-fail", starter=starter)).status_code == 503
    span = request_span(spans)
    assert span.attributes["singleton.problem_type"] == kind
    assert span.status.status_code == trace.StatusCode.ERROR
    [point] = points("singleton.dependency.failures")
    assert dict(point.attributes) == {"dependency": dependency, "kind": kind}


async def test_no_span_or_metric_holds_a_key(start, instance, durable, spans, monkeypatch) -> None:
    await start("t-secret")
    await instance("GET", "t-secret")
    await change_setting(monkeypatch, "AzureWebJobsStorage", connection_string(free_port()))
    await start("t-secret-2")
    said = []
    for span in spans.get_finished_spans():
        said.append(json.dumps(dict(span.attributes or {})))
        said.extend(json.dumps(dict(e.attributes or {})) for e in span.events)
    data = _metrics.get_metrics_data()
    said.append(data.to_json() if data else "")
    text = "\n".join(said)
    assert SYSTEM_KEY not in text and ACCOUNT_KEY not in text and "://" not in text
    assert "SingletonInstance" in {s.name for s in spans.get_finished_spans()}


async def test_a_timer_tick_is_one_span_naming_its_schedule(
    durable, app_env, spans, monkeypatch
) -> None:
    from azure.functions.timer import TimerRequest

    import TimerStartSingle

    monkeypatch.setenv("SINGLETON_SCHEDULE_ENABLED", "true")
    monkeypatch.setenv("SINGLETON_SCHEDULE_INSTANCE_ID", "t-tick")
    await TimerStartSingle.main(TimerRequest(), durable.starter())
    span = request_span(spans, "TimerStartSingle")
    assert span.attributes["singleton.schedule"] == "SINGLETON_SCHEDULE"
    assert span.attributes["singleton.instance_id"] == "t-tick"
    assert span.attributes["singleton.decision"] == "started"
    assert "durable.start" in children(spans, span)


async def test_a_stuck_instance_is_on_the_span_and_counted(start, durable, spans) -> None:
    import datetime

    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    durable.put("t-stuck", "Pending", created=long_ago)
    durable.put("t-busy", "Running")
    assert (await start("t-stuck")).status_code == 409
    span = request_span(spans)
    assert span.attributes["singleton.stuck"] is True
    assert span.attributes["singleton.pending_seconds"] >= 7200
    spans.clear()
    assert (await start("t-busy")).status_code == 409
    assert "singleton.stuck" not in request_span(spans).attributes
    [point] = points("singleton.stuck_instances")
    assert point.value == 1 and point.attributes["decision"] == "rejected-active"
