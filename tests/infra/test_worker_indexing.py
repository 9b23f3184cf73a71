"""function_app.py as the Python 3.13 Functions worker indexes it.

On Python 3.13 the Functions host runs a small proxy worker that hands each protocol message to
the library worker, the PyPI package `azure-functions-runtime` (Azure/azure-functions-python-worker,
proxy_worker/dispatcher.py: `_handle__worker_init_request` builds a `WorkerRequest(name, request,
properties={"protos": protos, "host": host})` and awaits `library_worker.worker_init_request(...)`,
then `functions_metadata_request(...)` for the function list the host registers). The library
worker indexes the app in `worker_init_request` (azure_functions_runtime/handle_event.py:
`load_function_metadata` imports `function_app.py` from the app directory, finds the one
`FunctionApp`, and `loader.process_indexed_function` validates each function's signature against
its bindings) and answers `functions_metadata_request` with one RpcFunctionMetadata per function.

This test drives those two entry points of the real package against this repository's
function_app.py. Only the host's side is stood in: the gRPC-generated protocol classes
(`protos`), as plain records with the enum values of the Functions protocol
(Azure/azure-functions-language-worker-protobuf, FunctionRpc.proto: StatusResult.Status Failure=0,
Success=1; BindingInfo.Direction in=0, out=1, inout=2; BindingInfo.DataType undefined=0). A
function the worker cannot index, a signature that does not fit its bindings, or an import error
fails the init response, and this test with it.

azure-functions-runtime requires Python 3.13, so on 3.11 this file is not collected
(tests/infra/conftest.py).
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import pytest

import azure_functions_runtime as library_worker

from bicepwalk import ROOT

SUCCESS, FAILURE = 1, 0

# Every function the app registers, as the host would route and authorize it:
# name -> (trigger type, route, methods, auth level, schedule app setting).
# Pinned by hand (the blueprints' decorators are what this checks, not where it comes from).
HTTP, TIMER, EVENT_GRID = "httpTrigger", "timerTrigger", "eventGridTrigger"
EXPECTED = {
    "kvca_eventgrid": (EVENT_GRID, None, None, None, None),
    "kvca_sweep": (TIMER, None, None, None, "%KVCA_SWEEP_SCHEDULE%"),
    "kvca_publish_crls": (TIMER, None, None, None, "%KVCA_CRL_SCHEDULE%"),
    "kvca_sign": (HTTP, "certificates/{name}/sign", ["POST"], "FUNCTION", None),
    "kvca_renew": (HTTP, "certificates/{name}/renew", ["POST"], "FUNCTION", None),
    "kvca_cancel": (HTTP, "certificates/{name}/cancel", ["POST"], "FUNCTION", None),
    "kvca_issue": (HTTP, "certificates", ["POST"], "FUNCTION", None),
    "kvca_issue_batch": (HTTP, "certificates/batch", ["POST"], "FUNCTION", None),
    "kvca_inventory": (HTTP, "certificates", ["GET"], "FUNCTION", None),
    "kvca_ca_policy": (HTTP, "cas/{ca}/policy", ["GET"], "FUNCTION", None),
    "kvca_health": (HTTP, "health", ["GET"], "FUNCTION", None),
    "kvca_revoke": (HTTP, "certificates/{name}/revoke", ["POST"], "FUNCTION", None),
    # Relying parties fetch CRLs and ask OCSP without any key (RFC 5280 4.2.1.13, RFC 6960 A.1).
    "kvca_crl": (HTTP, "crl/{ca}.crl", ["GET"], "ANONYMOUS", None),
    "kvca_ocsp_post": (HTTP, "ocsp/{ca}", ["POST"], "ANONYMOUS", None),
    "kvca_ocsp_get": (HTTP, "ocsp/{ca}/{*request}", ["GET"], "ANONYMOUS", None),
}


class _Message:
    """A protocol message: the fields it was built with, as attributes."""

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__!r})"


def _message(name: str, **constants: int) -> type:
    return type(name, (_Message,), dict(constants))


def _protos() -> types.SimpleNamespace:
    """The host's generated protocol classes, with the protocol's enum values."""
    binding_info = _message("BindingInfo", out=1, inout=2, undefined=0, string=1, binary=2, stream=3)
    setattr(binding_info, "in", 0)  # a keyword in Python: generated code has it as an attribute
    return types.SimpleNamespace(
        StatusResult=_message("StatusResult", Failure=FAILURE, Success=SUCCESS, Cancelled=2),
        BindingInfo=binding_info,
        **{name: _message(name) for name in (
            "WorkerInitResponse", "WorkerMetadata", "FunctionMetadataResponse", "RpcFunctionMetadata",
            "RpcRetryOptions", "RpcException", "FunctionLoadResponse", "FunctionEnvironmentReloadResponse")},
    )


def _worker_request(name: str, request: Any, properties: dict[str, Any] | None = None) -> types.SimpleNamespace:
    # proxy_worker/dispatcher.py's WorkerRequest dataclass: name, request, properties.
    return types.SimpleNamespace(name=name, request=request, properties=properties)


def _failure(result: Any) -> str:
    exception = getattr(result, "exception", None)
    return exception.stack_trace if exception is not None else repr(result)


@pytest.fixture(scope="module")
def indexed() -> dict[str, Any]:
    """function_app.py through the worker's init and metadata requests: {name: RpcFunctionMetadata}."""
    import asyncio

    protos = _protos()
    # The host starts the worker in the app's directory with that directory on sys.path.
    sys.path.insert(0, str(ROOT))
    try:
        init = _worker_request("WorkerInitRequest", types.SimpleNamespace(
            worker_init_request=types.SimpleNamespace(capabilities={}, function_app_directory=str(ROOT))),
            {"protos": protos, "host": "127.0.0.1"})
        init_response = asyncio.run(library_worker.worker_init_request(init))
        assert init_response.result.status == SUCCESS, _failure(init_response.result)
        metadata = asyncio.run(library_worker.functions_metadata_request(
            _worker_request("WorkerMetadataRequest", types.SimpleNamespace(functions_metadata_request={}))))
    finally:
        sys.path.remove(str(ROOT))
    assert metadata.result.status == SUCCESS, _failure(metadata.result)
    # The worker indexed the app itself: the host must not look for function.json files.
    assert metadata.use_default_metadata_indexing is False
    assert init_response.worker_metadata.runtime_version == "3.13"
    return {fn.name: fn for fn in metadata.function_metadata_results}


def _trigger(fn: Any) -> dict[str, Any]:
    bindings = [json.loads(raw) for raw in fn.raw_bindings]
    [trigger] = [b for b in bindings if b["direction"] == "IN" and b["type"].endswith("Trigger")]
    return trigger


def test_the_worker_indexes_exactly_the_functions_kvca_registers(indexed):
    assert sorted(indexed) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_function_has_its_trigger_route_methods_and_auth_level(indexed, name):
    fn = indexed[name]
    trigger = _trigger(fn)
    kind, route, methods, auth_level, schedule = EXPECTED[name]
    assert trigger["type"] == kind
    assert trigger.get("route") == route
    assert [m.upper() for m in trigger.get("methods", [])] == (methods or [])
    assert (trigger.get("authLevel") or "").upper() == (auth_level or "")
    assert trigger.get("schedule") == schedule
    # What the host loads: this app's function_app.py, in Python, indexed by the worker.
    assert (fn.language, fn.directory, fn.script_file) == ("python", str(ROOT), "function_app.py")
    assert fn.properties == {"worker_indexed": "True"}
    # The typed bindings the host reads agree with the raw ones.
    assert fn.bindings[trigger["name"]].type == kind
    if kind == HTTP:
        # An HTTP function answers through its return value.
        assert fn.bindings["$return"].type == "http" and fn.bindings["$return"].direction == 1
