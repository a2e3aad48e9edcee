"""A v2 (decorator) Function App that adds the singleton guarantee to a job of its own.

``nightly_import`` is this app's orchestrator; the Blueprint from durable_singleton adds
``POST /api/orchestrators/nightly_import/{instanceId}`` (the guarded start), ``GET`` and
``DELETE`` on the same route, and the list, overview page and contract under
``/api/singletons``.
"""

from typing import Any, Dict, Generator, List

import azure.durable_functions as df
import azure.functions as func

import durable_singleton

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


#: The guarantee's state (settings, sessions, locks), kept to share with functions of
#: this app's own (``singleton.client(binding)``, below) and to close in tests.
singleton = durable_singleton.SingletonApp(
    durable_singleton.Catalog.of({"nightly_import": files_rule})
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
