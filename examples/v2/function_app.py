"""A v2 (decorator) Function App that adds the singleton guarantee to a job of its own.

``nightly_import`` and ``export_tables`` are this app's orchestrators; the Blueprint from
durable_singleton adds ``POST /api/orchestrators/{functionName}/{instanceId}`` (the guarded
start), ``GET`` and ``DELETE`` on the same route, the list, overview page and contract
under ``/api/singletons``, and, for ``export_tables`` (a limit of 2 per key),
``POST /api/limits/export_tables/{key}`` and the function it needs to take next runs.
"""

from typing import Any, Dict, Generator, List

import azure.durable_functions as df
import azure.functions as func

import durable_singleton
from durable_singleton import runs

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


def files_rule(value: Any) -> None:
    """The orchestrator's input rule: a JSON array of file names (checked before a start)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise durable_singleton.InvalidInput("The input must be a JSON array of file names.")


@app.orchestration_trigger(context_name="context")
def nightly_import(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Dict[str, Any]]:
    """Import each file in turn; the singleton start guarantees no two runs overlap."""
    files: List[str] = context.get_input() or []
    imported = []
    for name in files:
        imported.append((yield context.call_activity("import_file", name)))
    return {"imported": imported}


@app.activity_trigger(input_name="name")
def import_file(name: str) -> str:
    """The unit of real work: import one file."""
    return f"imported {name}"


@app.orchestration_trigger(context_name="context")
@runs.takes_next_runs
def export_tables(
    context: df.DurableOrchestrationContext, run: runs.Run
) -> Generator[Any, Any, Dict[str, Any]]:
    """Export each table in turn. It takes next runs (``runs.takes_next_runs``), so it can
    have a limit per key: at most 2 exports per customer at once, the rest queued."""
    tables: List[str] = run.input.get("tables", []) if isinstance(run.input, dict) else []
    exported: List[str] = []
    for table in tables:
        if run.stopping:  # a Stop for this run came: schedule nothing more
            break
        run.show({"exported": len(exported), "total": len(tables)})  # progress
        task = context.call_activity("export_table", table)
        if (yield from run.wait(task)):  # False: the Stop came first
            exported.append((yield task))
    return {"exported": exported, "stopped": run.stopping}


@app.activity_trigger(input_name="table")
def export_table(table: str) -> str:
    """The unit of real work: export one table."""
    return f"exported {table}"


#: The guarantee's state (settings, sessions, locks), kept to share with functions of
#: this app's own (``singleton.client(binding)``, below) and to close in tests.
singleton = durable_singleton.SingletonApp(
    durable_singleton.Catalog.of(
        {"nightly_import": files_rule, "export_tables": None},
        next_runs=["export_tables"],
        limits={"export_tables": 2},
    )
)
app.register_functions(durable_singleton.blueprint(app=singleton))


@app.route(route="imports/{day}", methods=["POST"])
@app.generic_input_binding(arg_name="starter", type="durableClient")
async def start_import(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """A start of this app's own: the day's import, under the id ``import-<day>``, guarded
    as the Blueprint's route guards it. ``starter`` is the durableClient binding's JSON
    (a generic input binding, as the Blueprint's functions take it)."""
    day = req.route_params.get("day", "")
    instance_id = f"import-{day}"
    result: Any
    try:
        result = await singleton.client(starter).start(
            "nightly_import", instance_id, [f"{day}.csv"]
        )
    except durable_singleton.SingletonError as error:  # answered as the route answers it
        result = error
    return singleton.answer(result, instance_id, req, starter)
