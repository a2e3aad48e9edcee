"""One error family: every failure the library raises is a SingletonError, and exactly
one of the two a caller acts on: NotStarted (nothing was started: safe to retry) or
OutcomeUnknown (it may have started: read the status before retrying)."""

from __future__ import annotations

import inspect

import pytest

import durable_singleton
from durable_singleton import NotStarted, OutcomeUnknown, SingletonError
from tests.support.durable_double import starter_binding
from tests.support.fault_proxy import FaultProxy

MAY_HAVE_STARTED = {
    "StartOutcomeUnknown",
    "NextRunOutcomeUnknown",
    "QueueOutcomeUnknown",
    "DurableFailure",
    "StopOutcomeUnknown",  # a stop: it may have been carried out
}


def exported_errors() -> dict:
    """The failure classes the package exports: its top level's and its errors module's."""
    return {
        name: value
        for module in (durable_singleton, durable_singleton.errors)
        for name, value in vars(module).items()
        if name in module.__all__ and inspect.isclass(value) and issubclass(value, BaseException)
    }


def test_every_exported_failure_is_one_of_the_two() -> None:
    errors = exported_errors()
    assert {"SingletonError", "NotStarted", "OutcomeUnknown", "ProblemError", "LockBusy"} <= set(
        errors
    )
    for name, error in errors.items():
        if name in ("SingletonError", "NotStarted", "OutcomeUnknown", "InvalidInput"):
            continue  # the bases, and what an input rule raises (answered as ProblemError)
        assert issubclass(error, SingletonError), name
        unknown = issubclass(error, OutcomeUnknown)
        assert unknown != issubclass(error, NotStarted), name
        assert unknown == (name in MAY_HAVE_STARTED), name


async def test_a_caller_of_start_acts_on_the_two(durable, app_env) -> None:
    app = durable_singleton.SingletonApp(durable_singleton.Catalog.of(["SingletonOrchestrator"]))
    try:
        with pytest.raises(NotStarted):  # refused connection: nothing was sent
            await app.client(starter_binding("http://127.0.0.1:9/durabletask/")).start("Nope", "x")
        with pytest.raises(NotStarted):
            await app.client(starter_binding("http://127.0.0.1:9/durabletask/")).start(
                "SingletonOrchestrator", "x"
            )
        proxy = FaultProxy(durable.port).start()
        try:
            proxy.set("cut_responses", match=b"POST /durabletask/orchestrators/")
            durable.fail_next("status", 503, None, times=3)  # nor can the status tell
            with pytest.raises(OutcomeUnknown):
                await app.client(
                    starter_binding(f"http://127.0.0.1:{proxy.port}/durabletask/")
                ).start(
                    "SingletonOrchestrator",
                    "lost",
                )
        finally:
            proxy.stop()
    finally:
        await app.close()


async def test_a_caller_of_stop_is_told_a_lost_answer_may_have_stopped_it(
    durable, app_env
) -> None:
    """The terminate reaches the extension and its answer is lost: the caller gets an
    OutcomeUnknown (read the status), not a NotStarted saying nothing happened."""
    from durable_singleton import StopMode
    from durable_singleton.errors import StopOutcomeUnknown

    app = durable_singleton.SingletonApp(durable_singleton.Catalog.of(["SingletonOrchestrator"]))
    proxy = FaultProxy(durable.port).start()
    try:
        client = app.client(starter_binding(f"http://127.0.0.1:{proxy.port}/durabletask/"))
        await client.start("SingletonOrchestrator", "stop-lost")
        proxy.set("cut_responses", match=b"POST /durabletask/instances/stop-lost/terminate")
        with pytest.raises(StopOutcomeUnknown) as raised:
            await client.stop("SingletonOrchestrator", "stop-lost", mode=StopMode.TERMINATE)
        assert isinstance(raised.value, OutcomeUnknown) and raised.value.instance_id == "stop-lost"
    finally:
        proxy.stop()
        await app.close()
