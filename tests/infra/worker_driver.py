"""Run the Python 3.13 Functions worker's init and metadata requests on an app; print the result.

`python worker_driver.py APP_DIR` prints one JSON line: the init and metadata statuses and every
indexed function's metadata. Used by test_worker_indexing.py in a process of its own, as the host
runs the worker. The host's side is stood in: the gRPC-generated protocol classes (`protos`), as
plain records with the enum values of the Functions protocol
(Azure/azure-functions-language-worker-protobuf, FunctionRpc.proto: StatusResult.Status Failure=0,
Success=1, Cancelled=2; BindingInfo.Direction in=0, out=1, inout=2; BindingInfo.DataType
undefined=0, string=1, binary=2, stream=3), and the proxy worker's WorkerRequest
(Azure/azure-functions-python-worker, proxy_worker/dispatcher.py: name, request, properties with
"protos" and "host").
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
from typing import Any


class _Message:
    """A protocol message: the fields it was built with, as attributes."""

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)


def _message(name: str, **constants: int) -> type:
    return type(name, (_Message,), dict(constants))


def protos() -> types.SimpleNamespace:
    binding_info = _message("BindingInfo", out=1, inout=2, undefined=0, string=1, binary=2, stream=3)
    setattr(binding_info, "in", 0)  # a keyword in Python: generated code has it as an attribute
    return types.SimpleNamespace(
        StatusResult=_message("StatusResult", Failure=0, Success=1, Cancelled=2),
        BindingInfo=binding_info,
        **{name: _message(name) for name in (
            "WorkerInitResponse", "WorkerMetadata", "FunctionMetadataResponse", "RpcFunctionMetadata",
            "RpcRetryOptions", "RpcException", "FunctionLoadResponse", "FunctionEnvironmentReloadResponse")},
    )


def _request(name: str, request: Any, properties: dict[str, Any] | None = None) -> types.SimpleNamespace:
    return types.SimpleNamespace(name=name, request=request, properties=properties)


def _error(result: Any) -> str | None:
    exception = getattr(result, "exception", None)
    return exception.stack_trace if exception is not None else None


def _function(fn: Any) -> dict[str, Any]:
    return {
        "name": fn.name, "language": fn.language, "directory": fn.directory, "script_file": fn.script_file,
        "properties": dict(fn.properties), "raw_bindings": list(fn.raw_bindings),
        "bindings": {name: {"type": b.type, "direction": b.direction} for name, b in fn.bindings.items()},
    }


async def index(app_dir: str) -> dict[str, Any]:
    import azure_functions_runtime as library_worker

    init = await library_worker.worker_init_request(_request(
        "WorkerInitRequest",
        types.SimpleNamespace(worker_init_request=types.SimpleNamespace(capabilities={}, function_app_directory=app_dir)),
        {"protos": protos(), "host": "127.0.0.1"}))
    metadata = await library_worker.functions_metadata_request(
        _request("WorkerMetadataRequest", types.SimpleNamespace(functions_metadata_request={})))
    return {
        "init_status": init.result.status, "init_error": _error(init.result),
        "runtime_version": init.worker_metadata.runtime_version,
        "metadata_status": metadata.result.status, "metadata_error": _error(metadata.result),
        "use_default_metadata_indexing": metadata.use_default_metadata_indexing,
        "functions": [_function(fn) for fn in metadata.function_metadata_results or []],
    }


if __name__ == "__main__":
    app_dir = sys.argv[1]
    sys.path.insert(0, app_dir)  # the host starts the worker with the app's directory on sys.path
    print(json.dumps(asyncio.run(index(app_dir))))
