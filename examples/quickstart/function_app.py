"""The Durable Functions Python quickstart app, with the singleton guarantee added.

Everything down to ``hello`` is shaped as the quickstart and the Durable Functions
samples write it: an app whose HTTP functions are anonymous by default, and its own HTTP
starter on ``orchestrators/{functionName}``. The last statement is all the guarantee
needs; the quickstart's starter keeps working beside it.
"""

import azure.durable_functions as df
import azure.functions as func

import durable_singleton

myApp = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


# An HTTP-triggered function with a Durable Functions client binding
@myApp.route(route="orchestrators/{functionName}")
@myApp.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client):
    """The quickstart's own starter: any method, a new instance id each time."""
    function_name = req.route_params.get("functionName")
    instance_id = await client.start_new(function_name)
    response = client.create_check_status_response(req, instance_id)
    return response


# Orchestrator
@myApp.orchestration_trigger(context_name="context")
def hello_orchestrator(context):
    """Say hello to three cities, one after another."""
    result1 = yield context.call_activity("hello", "Seattle")
    result2 = yield context.call_activity("hello", "Tokyo")
    result3 = yield context.call_activity("hello", "London")

    return [result1, result2, result3]


# Activity
@myApp.activity_trigger(input_name="city")
def hello(city: str) -> str:
    """The unit of work."""
    return f"Hello {city}"


# The singleton guarantee: POST /api/orchestrators/hello_orchestrator/{instanceId} starts
# it only when no instance with that id is active (at the function key).
myApp.register_functions(durable_singleton.blueprint(["hello_orchestrator"]))
