"""The Functions host's side of the worker protocol, for the runtime test layer.

The app runs under the Functions Python runtime for the function.json model,
``azure-functions-runtime-v1`` (Python 3.13+), exactly as it does in Azure: this
module plays the .NET host and sends it the messages the host sends, built as the
host and the Durable extension build them:

- Worker init, then one function load per function.json, with a ``BindingInfo`` per
  binding (type, direction) - azure-functions-host ``GrpcWorkerChannel.cs``
  (``SendFunctionLoadRequest``/``GetFunctionLoadRequest``) and ``ScriptHostManager``.
- An HTTP trigger as ``RpcHttp`` - azure-functions-host
  ``GrpcMessageConversionExtensions.ToRpcHttp``: header names lowercased, each query
  value ``StringValues.ToString()`` (repeats joined with ","; empty values left
  out), route values in ``params``, and no body at all when the body is empty; the
  worker announces ``RawHttpBodyBytes`` and ``RpcHttpBodyOnly``, so a body arrives
  as bytes only.
- The ``durableClient`` binding as a string holding the client JSON, with the members
  newer extensions add set to null - azure-functions-durable-extension
  ``BindingHelper.DurableOrchestrationClientToString``.
- The orchestration context as a string carrying ``upperSchemaVersion`` and
  ``upperSchemaVersionNew``, and an activity's input as JSON -
  azure-functions-durable-extension ``OutOfProcOrchestrationShim`` and the activity
  trigger's out-of-proc binding.
- The host's route check: functions are taken in name order, and one whose HTTP route
  template (parameter names aside, case-insensitive) and methods (none listed: all)
  overlap an earlier one's is refused, "The route specified conflicts with the route
  defined by function ..." (azure-functions-host ``WebJobsRouteBuilder``/``HttpRouteFactory``
  as shared/durable-http-api.md reports it): a refused function is not loaded, and
  ``refused`` says why.

The runtime's protobuf classes ship in its wheel under a top-level ``tests.protos``
package, which this project's own ``tests`` package hides; they are loaded from the
wheel's files under another name.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

_PROTOS_PACKAGE = "functions_worker_protos"
#: Every method, for an HTTP trigger that lists none.
_ALL_METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options", "trace"})


def http_route(
    function_name: str, bindings: Iterable[Union[str, Mapping[str, Any]]]
) -> Optional[Tuple[str, FrozenSet[str]]]:
    """The route template (parameter names dropped, lowercased) and methods of a
    function's HTTP trigger, as the host compares them; None for another trigger."""
    for binding in bindings:
        document = json.loads(binding) if isinstance(binding, str) else binding
        if document.get("type") == "httpTrigger":
            template = (document.get("route") or function_name).strip("/").lower()
            methods = frozenset(m.lower() for m in document.get("methods") or ()) or _ALL_METHODS
            return re.sub(r"\{[^}]*\}", "{}", template), methods
    return None


def load_protos() -> types.ModuleType:
    """The runtime's ``FunctionRpc_pb2`` module, from the installed wheel's files."""
    if f"{_PROTOS_PACKAGE}.FunctionRpc_pb2" in sys.modules:
        return sys.modules[f"{_PROTOS_PACKAGE}.FunctionRpc_pb2"]
    runtime = importlib.util.find_spec("azure_functions_runtime_v1")
    if runtime is None or runtime.origin is None:
        raise RuntimeError("azure-functions-runtime-v1 is not installed (Python 3.13+)")
    folder = Path(runtime.origin).parent.parent / "tests" / "protos"
    # A package object without running the wheel's __init__ (it imports grpc, which
    # only the host-facing proxy needs); submodules load from its folder.
    package = types.ModuleType(_PROTOS_PACKAGE)
    package.__path__ = [str(folder)]
    sys.modules[_PROTOS_PACKAGE] = package
    return importlib.import_module(f"{_PROTOS_PACKAGE}.FunctionRpc_pb2")


@dataclass
class HttpAnswer:
    """An HTTP response as the worker hands it back through ``$return``."""

    status: int
    headers: Dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, decoded."""
        return json.loads(self.body)

    def kind(self) -> str:
        """The problem's kind: the last part of a problem+json answer's ``type``."""
        return str(self.json()["type"]).rsplit(":", 1)[1]


class FunctionsHost:
    """Loads the app's functions into the runtime and invokes them.

    ``v1`` (the default) is ``azure-functions-runtime-v1``, for function.json apps:
    each function is loaded from its folder. ``v2`` is ``azure-functions-runtime``, for
    decorator apps: the runtime indexes ``function_app.py`` at init and reports each
    function's id in its metadata answer.
    """

    def __init__(self, app_root: Path, model: str = "v1") -> None:
        """Prepare the messages for the app at ``app_root``, of programming ``model``."""
        if model == "v1":
            import azure_functions_runtime_v1 as runtime
        else:
            import azure_functions_runtime as runtime  # type: ignore[no-redef]

        self.app_root = app_root
        self.model = model
        self.protos = load_protos()
        self._events = runtime
        self.function_ids: Dict[str, str] = {}
        #: Functions the host's route check refused, with the host's reason.
        self.refused: Dict[str, str] = {}
        #: v2: each indexed function's bindings as the runtime reported them (JSON).
        self.raw_bindings: Dict[str, list] = {}
        self._routes: Dict[str, Tuple[str, FrozenSet[str]]] = {}

    def _admit(self, function_name: str, bindings: Iterable[Any]) -> bool:
        """The host's route check for one more function (taken in name order)."""
        route = http_route(function_name, bindings)
        if route is not None:
            for earlier, (template, methods) in sorted(self._routes.items()):
                if template == route[0] and methods & route[1]:
                    self.refused[function_name] = (
                        "The route specified conflicts with the route defined by function "
                        f"'{earlier}'."
                    )
                    return False
            self._routes[function_name] = route
        return True

    def _request(self, **message: Any) -> Any:
        return types.SimpleNamespace(
            request=self.protos.StreamingMessage(**message),
            properties={"host": "127.0.0.1", "protos": self.protos},
        )

    async def init(self) -> Any:
        """Send the worker init request; return the response.

        For ``v2``, the host's worker (the proxy in front of the runtime) first puts the
        app's folder on ``sys.path``, where the runtime imports ``function_app`` from.
        """
        if self.model == "v2" and str(self.app_root) not in sys.path:
            sys.path.insert(0, str(self.app_root))
        return await self._events.worker_init_request(
            self._request(
                worker_init_request=self.protos.WorkerInitRequest(
                    host_version="4.1040.0",
                    capabilities={},
                    function_app_directory=str(self.app_root),
                )
            )
        )

    async def index(self) -> Any:
        """v2: ask for the functions the runtime indexed; note each one's id."""
        response = await self._events.functions_metadata_request(
            self._request(
                functions_metadata_request=self.protos.FunctionsMetadataRequest(
                    function_app_directory=str(self.app_root)
                )
            )
        )
        for function in sorted(response.function_metadata_results, key=lambda f: f.name):
            self.raw_bindings[function.name] = list(function.raw_bindings)
            if self._admit(function.name, function.raw_bindings):
                self.function_ids[function.name] = function.function_id
        return response

    async def load(self, function_name: str) -> Any:
        """Load one function from its folder's function.json; return the response."""
        folder = self.app_root / function_name
        config = json.loads((folder / "function.json").read_text(encoding="utf-8"))
        if not self._admit(function_name, config["bindings"]):
            raise RuntimeError(self.refused[function_name])
        # BindingInfo.Direction: in = 0, out = 1, inout = 2 ("in" is a Python keyword).
        directions = self.protos.BindingInfo.Direction
        bindings = {
            b["name"]: self.protos.BindingInfo(
                type=b["type"], direction=directions.Value(b["direction"])
            )
            for b in config["bindings"]
        }
        function_id = str(uuid.uuid4())
        metadata = self.protos.RpcFunctionMetadata(
            name=function_name,
            directory=str(folder),
            script_file=str(folder / config.get("scriptFile", "__init__.py")),
            entry_point=config.get("entryPoint", ""),
            bindings=bindings,
        )
        response = await self._events.function_load_request(
            self._request(
                function_load_request=self.protos.FunctionLoadRequest(
                    function_id=function_id, metadata=metadata
                )
            )
        )
        self.function_ids[function_name] = function_id
        return response

    async def invoke(self, function_name: str, inputs: Mapping[str, Any]) -> Any:
        """Invoke a loaded function with ``inputs`` (binding name -> TypedData)."""
        bindings = [
            self.protos.ParameterBinding(name=name, data=data) for name, data in inputs.items()
        ]
        return await self._events.invocation_request(
            self._request(
                invocation_request=self.protos.InvocationRequest(
                    invocation_id=str(uuid.uuid4()),
                    function_id=self.function_ids[function_name],
                    input_data=bindings,
                )
            )
        )

    # -- typed data, as the host builds it ----------------------------------------------

    def http(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        route: Mapping[str, str],
        body: bytes = b"",
    ) -> Any:
        """An HTTP trigger's TypedData (``ToRpcHttp``)."""
        query: Dict[str, str] = {}
        for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
        http = self.protos.RpcHttp(
            method=method,
            url=url,
            headers={k.lower(): v for k, v in headers.items()},
            query={k: v for k, v in query.items() if v},
            params=dict(route),
        )
        if body:
            http.body.CopyFrom(self.protos.TypedData(bytes=body))
        return self.protos.TypedData(http=http)

    def string(self, text: str) -> Any:
        """A string TypedData (the durableClient binding, the orchestration context)."""
        return self.protos.TypedData(string=text)

    def json(self, value: Any) -> Any:
        """A JSON TypedData (an activity's input)."""
        return self.protos.TypedData(json=json.dumps(value))

    def durable_client(self, starter: str) -> Any:
        """The durableClient binding with the members newer extensions add."""
        client = json.loads(starter)
        client.update(
            {
                "connectionName": None,
                "httpBaseUrl": None,
                "maxGrpcMessageSizeInBytes": None,
                "grpcHttpClientTimeout": None,
            }
        )
        return self.string(json.dumps(client))

    def orchestration_context(self, context: str) -> Any:
        """The orchestration trigger's context as the out-of-proc shim sends it."""
        document = json.loads(context)
        document.update({"upperSchemaVersion": 2, "upperSchemaVersionNew": 2})
        return self.string(json.dumps(document))

    # -- answers ----------------------------------------------------------------------

    def succeeded(self, response: Any) -> bool:
        """Whether a load or invocation response reports success."""
        return response.result.status == self.protos.StatusResult.Success

    @staticmethod
    def failure(response: Any) -> Optional[str]:
        """The runtime's exception message for a failed response."""
        return response.result.exception.message or None

    @staticmethod
    def http_answer(response: Any) -> HttpAnswer:
        """The ``$return`` HTTP response of an invocation."""
        http = response.return_value.http
        body = http.body
        raw = body.bytes if body.HasField("bytes") else body.string.encode("utf-8")
        headers = {k.lower(): v for k, v in http.headers.items()}
        return HttpAnswer(int(http.status_code), headers, raw)

    @staticmethod
    def return_value(response: Any) -> Any:
        """The decoded ``$return`` value of an orchestrator or activity."""
        value = response.return_value
        kind = value.WhichOneof("data")
        if kind == "json":
            return json.loads(value.json)
        if kind == "string":
            return value.string
        return None
