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
function_app.py, in a process of its own (worker_driver.py). Only the host's side is stood in:
the gRPC-generated protocol classes, as plain records with the protocol's enum values. A function
the worker cannot index, a signature that does not fit its bindings, or an import error fails the
init response, and this test with it.

azure-functions-runtime requires Python 3.13, so on 3.11 this file is not collected
(tests/infra/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bicepwalk import ROOT

DRIVER = Path(__file__).with_name("worker_driver.py")
SUCCESS = 1  # StatusResult.Success

# Every function the app registers, as the host would route and authorize it:
# name -> (trigger type, route, methods, auth level, schedule app setting).
# Pinned by hand (the blueprints' decorators are what this checks, not where it comes from).
HTTP, TIMER, EVENT_GRID = "httpTrigger", "timerTrigger", "eventGridTrigger"
EXPECTED = {
    "kvca_eventgrid": (EVENT_GRID, None, None, None, None),
    "kvca_sweep": (TIMER, None, None, None, "%KVCA_SWEEP_SCHEDULE%"),
    "kvca_publish_crls": (TIMER, None, None, None, "%KVCA_CRL_SCHEDULE%"),
    # host.json sets routePrefix "" so that EST can live at /.well-known/est (RFC 7030 3.2.2);
    # every other route carries the usual "api/" itself.
    "kvca_sign": (HTTP, "api/certificates/{name}/sign", ["POST"], "FUNCTION", None),
    "kvca_renew": (HTTP, "api/certificates/{name}/renew", ["POST"], "FUNCTION", None),
    "kvca_cancel": (HTTP, "api/certificates/{name}/cancel", ["POST"], "FUNCTION", None),
    "kvca_issue": (HTTP, "api/certificates", ["POST"], "FUNCTION", None),
    "kvca_issue_batch": (HTTP, "api/certificates/batch", ["POST"], "FUNCTION", None),
    "kvca_inventory": (HTTP, "api/certificates", ["GET"], "FUNCTION", None),
    "kvca_ca_policy": (HTTP, "api/cas/{ca}/policy", ["GET"], "FUNCTION", None),
    "kvca_health": (HTTP, "api/health", ["GET"], "FUNCTION", None),
    "kvca_revoke": (HTTP, "api/certificates/{name}/revoke", ["POST"], "FUNCTION", None),
    "kvca_revoke_serial": (HTTP, "api/cas/{ca}/revoke", ["POST"], "FUNCTION", None),
    "kvca_sign_csr": (HTTP, "api/cas/{ca}/sign-csr", ["POST"], "FUNCTION", None),
    # Relying parties fetch CRLs and ask OCSP without any key (RFC 5280 4.2.1.13, RFC 6960 A.1).
    "kvca_crl": (HTTP, "api/crl/{ca}.crl", ["GET"], "ANONYMOUS", None),
    "kvca_crl_version": (HTTP, "api/crl/{ca}/{version}.crl", ["GET"], "ANONYMOUS", None),
    "kvca_ocsp_post": (HTTP, "api/ocsp/{ca}", ["POST"], "ANONYMOUS", None),
    "kvca_ocsp_get": (HTTP, "api/ocsp/{ca}/{*request}", ["GET"], "ANONYMOUS", None),
    # EST clients hold no function key: kvca itself authenticates an enrollment (HTTP Basic with
    # an enrollment code, RFC 7030 3.2.3, or the device's current certificate), and /cacerts and
    # /csrattrs need no authentication (RFC 7030 4.1.1, 4.5.1).
    "kvca_est_cacerts": (HTTP, ".well-known/est/{ca}/cacerts", ["GET"], "ANONYMOUS", None),
    "kvca_est_csrattrs": (HTTP, ".well-known/est/{ca}/csrattrs", ["GET"], "ANONYMOUS", None),
    "kvca_est_simpleenroll": (HTTP, ".well-known/est/{ca}/simpleenroll", ["POST"], "ANONYMOUS", None),
    "kvca_est_simplereenroll": (HTTP, ".well-known/est/{ca}/simplereenroll", ["POST"], "ANONYMOUS", None),
}


@pytest.fixture(scope="module")
def indexed() -> dict[str, Any]:
    """function_app.py through the worker's init and metadata requests: {name: function metadata}.

    In a process of its own, as the host starts the worker: FunctionApp.get_functions() indexes an
    app once per process, and other tests of this suite have already indexed it in theirs."""
    result = subprocess.run([sys.executable, str(DRIVER), str(ROOT)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["init_status"] == SUCCESS, answer["init_error"]
    assert answer["metadata_status"] == SUCCESS, answer["metadata_error"]
    # The worker indexed the app itself: the host must not look for function.json files.
    assert answer["use_default_metadata_indexing"] is False
    assert answer["runtime_version"] == "3.13"
    return {fn["name"]: fn for fn in answer["functions"]}


def _trigger(fn: dict[str, Any]) -> dict[str, Any]:
    bindings = [json.loads(raw) for raw in fn["raw_bindings"]]
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
    assert (fn["language"], fn["directory"], fn["script_file"]) == ("python", str(ROOT), "function_app.py")
    assert fn["properties"] == {"worker_indexed": "True"}
    # The typed bindings the host reads agree with the raw ones.
    assert fn["bindings"][trigger["name"]]["type"] == kind
    if kind == HTTP:
        # An HTTP function answers through its return value (BindingInfo.Direction out = 1).
        assert fn["bindings"]["$return"] == {"type": "http", "direction": 1}
