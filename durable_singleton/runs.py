"""``onConflict=bufferOne``, ``debounceSeconds`` and a limit per key for any orchestrator,
not only the sample job (docs/library.md, "Next runs in your orchestrator").

Decorate the orchestrator with :func:`takes_next_runs` and name it in the Blueprint's
``next_runs`` (a function.json app: ``accepts_next_run = True`` in its module)::

    @app.orchestration_trigger(context_name="context")
    @runs.takes_next_runs
    def export(context, run):
        for table in run.input["tables"]:
            if run.stopping or not (yield from run.wait(context.call_activity("dump", table))):
                return {"stopped": True}  # a Stop for this run came first
        return {"exported": len(run.input["tables"])}
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Generator, Mapping, Optional

import azure.durable_functions as df

from ._in_orchestrator import (
    RUN_MEMBER,
    Signals,
    begin,
    end_run,
    stopping,
    wait_until_due,
)

__all__ = ["Run", "takes_next_runs"]


class Run:
    """The run one execution of a :func:`takes_next_runs` orchestrator carries out."""

    def __init__(self, context: df.DurableOrchestrationContext, signals: Signals, input_: Any):
        self._context = context
        self._signals = signals
        self._shown: Dict[str, Any] = {}
        #: The run's input, as the caller sent it (without the member ``run``, the app's).
        self.input = input_
        signals.changed = self._report
        self._report()

    @property
    def id(self) -> str:
        """The run's id: the ``requestId`` of the request whose input it runs (a new one
        for an instance the app did not start)."""
        return self._signals.state.id

    @property
    def stopping(self) -> bool:
        """Whether a Stop for this run has come: schedule no more work, and return."""
        return self._signals.state.stopping

    def wait(self, task: Any) -> Generator[Any, Any, bool]:
        """Wait for ``task`` (any Durable task: an activity, a timer, ``task_all``) or a
        Stop meant for this run, whichever comes first; True when the task completed
        (then ``yield task`` gives its result), False when the Stop came first (the task
        goes on; its result is not needed). Use it wherever the orchestrator waits, so a
        Stop is taken at once; a Stop meant for another run is not this run's."""
        yield from self._signals.wait(task, until=stopping)
        return bool(task.is_completed)

    def show(self, status: Optional[Mapping[str, Any]]) -> None:
        """Set the orchestrator's custom status to ``status`` (a JSON object) with the
        run's own members beside it (``run``, ``dueAt``, ``stopping``), which the app
        reads to know whose run has begun: set it only through here."""
        self._shown = dict(status or {})
        self._report()

    def _report(self) -> None:
        state = self._signals.state
        self._context.set_custom_status(
            {**self._shown, **state.status(), "stopping": state.stopping}
        )


Work = Callable[[df.DurableOrchestrationContext, Run], Any]


def takes_next_runs(work: Work) -> Callable[[df.DurableOrchestrationContext], Any]:
    """Make ``work(context, run)`` an orchestrator that takes next runs.

    ``work`` is an orchestrator function (a generator, or a plain function) given the
    :class:`Run`; what it returns is the run's output. Before it, a debounced run waits
    until it is due (its input may be replaced meanwhile); after it, the orchestrator
    takes the id's next run (a bufferOne or debounced request, or the head of the key's
    queue for an orchestrator with a limit) and continues as new with it under the same
    id, or completes with the output. One execution per run: ``work`` must not call
    ``continue_as_new`` itself, nor set the custom status but through :meth:`Run.show`.
    """

    def orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        given = context.get_input()
        member: Mapping[str, Any] = {}
        if isinstance(given, dict) and isinstance(given.get(RUN_MEMBER), dict):
            member = given[RUN_MEMBER]
            given = {k: v for k, v in given.items() if k != RUN_MEMBER}
        signals = Signals(context, member)
        run = Run(context, signals, given)
        output = None
        if signals.state.waiting:
            waited = yield from wait_until_due(context, signals)
            if waited is not None:
                return begin(context, signals, waited)
        elif not run.stopping:
            output = work(context, run)
            if inspect.isgenerator(output):
                output = yield from output
        ended = yield from end_run(context, signals)
        return output if ended else None

    # The name the Functions runtime indexes the orchestrator by; not ``__wrapped__``,
    # whose signature (context, run) the runtime would read as an unbound parameter.
    orchestrator.__name__ = work.__name__
    orchestrator.__qualname__ = work.__qualname__
    orchestrator.__doc__ = work.__doc__
    orchestrator.__module__ = work.__module__
    return orchestrator
