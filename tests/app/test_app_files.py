"""The Functions app's files agree with the code: settings, host.json, .funcignore, registered triggers."""

import json
from pathlib import Path

from apphelpers import FUNCTIONS
from kvca_core.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]


def test_local_settings_sample_lists_every_setting_with_its_default():
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    kvca = {k: v for k, v in values.items() if k not in ("FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage")}
    assert set(kvca) == {s.name for s in SETTINGS}
    for setting in SETTINGS:
        if setting.default is not None:
            assert kvca[setting.name] == setting.default, setting.name
        else:
            assert kvca[setting.name], f"{setting.name} is required: the sample must show a value"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_host_json_uses_extension_bundle_v4():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host["extensionBundle"]["version"].startswith("[4.")


def test_funcignore_keeps_dev_tools_out_of_the_package():
    lines = {line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    for entry in ("kvemulator/", "tests/", "bench/", "demo/", "infra/", ".venv*", "local.settings.json"):
        assert entry in lines
    for kept in ("kvca_core/", "blueprints/", "function_app.py", "host.json", "requirements.txt"):
        assert kept not in lines


def _functions():
    return FUNCTIONS


def test_registered_triggers_have_the_names_and_bindings_the_infra_expects():
    fns = _functions()
    revocation = {"kvca_revoke", "kvca_revoke_serial", "kvca_crl", "kvca_crl_version", "kvca_ocsp_post",
                  "kvca_ocsp_get", "kvca_publish_crls"}  # tests/revocation
    est = set(EST_ROUTES)  # below
    assert set(fns) - revocation - est == {"kvca_eventgrid", "kvca_sweep", "kvca_sign", "kvca_renew", "kvca_issue",
                                     "kvca_inventory", "kvca_health", "kvca_cancel", "kvca_issue_batch",
                                     "kvca_ca_policy", "kvca_sign_csr"}
    assert fns["kvca_eventgrid"].get_trigger().get_binding_name() == "eventGridTrigger"
    timer = json.loads(fns["kvca_sweep"].get_function_json())["bindings"][0]
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%KVCA_SWEEP_SCHEDULE%"
    routes = {}
    for name in ("kvca_sign", "kvca_renew", "kvca_issue", "kvca_inventory", "kvca_health", "kvca_cancel",
                 "kvca_issue_batch", "kvca_ca_policy", "kvca_sign_csr"):
        binding = json.loads(fns[name].get_function_json())["bindings"][0]
        assert binding["authLevel"].lower() == "function", name
        routes[name] = (binding["route"], tuple(m.upper() for m in binding["methods"]))
    assert routes == {
        "kvca_sign": ("api/certificates/{name}/sign", ("POST",)),
        "kvca_renew": ("api/certificates/{name}/renew", ("POST",)),
        "kvca_issue": ("api/certificates", ("POST",)),
        "kvca_inventory": ("api/certificates", ("GET",)),
        "kvca_health": ("api/health", ("GET",)),
        "kvca_cancel": ("api/certificates/{name}/cancel", ("POST",)),
        "kvca_issue_batch": ("api/certificates/batch", ("POST",)),
        "kvca_ca_policy": ("api/cas/{ca}/policy", ("GET",)),
        "kvca_sign_csr": ("api/cas/{ca}/sign-csr", ("POST",)),
    }


EST_ROUTES = {
    "kvca_est_cacerts": (".well-known/est/{ca}/cacerts", ("GET",), "anonymous"),
    "kvca_est_csrattrs": (".well-known/est/{ca}/csrattrs", ("GET",), "anonymous"),
    "kvca_est_simpleenroll": (".well-known/est/{ca}/simpleenroll", ("POST",), "anonymous"),
    "kvca_est_simplereenroll": (".well-known/est/{ca}/simplereenroll", ("POST",), "anonymous"),
}


def test_est_has_rfc_7030s_fixed_paths_and_every_other_route_spells_its_api_prefix():
    # RFC 7030 3.2.2: /.well-known/est/<label>/<operation>, the CA's name as the label. The host's
    # default prefix `api` is off (host.json routePrefix ""), so the path is the route itself.
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""
    routes = {}
    for name, function in _functions().items():
        binding = json.loads(function.get_function_json())["bindings"][0]
        if binding["type"] == "httpTrigger":
            routes[name] = (binding["route"], tuple(m.upper() for m in binding["methods"]),
                            binding["authLevel"].lower())
    assert {n: r for n, r in routes.items() if n.startswith("kvca_est_")} == EST_ROUTES
    others = {n: r[0] for n, r in routes.items() if n not in EST_ROUTES}
    assert others and all(route.startswith("api/") for route in others.values()), others


def test_only_the_rim_talks_to_outside_services():
    """azure.* SDKs and aiohttp (the webhook) are imported in kvca_core/rim/ alone; everything else is
    typed against kvca_core/ports.py. The context builds the rim, importing it where it is used."""
    offenders = []
    for path in (ROOT / "kvca_core").rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("kvca_core/rim/"):
            continue
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import azure", "from azure", "import aiohttp", "from aiohttp")):
                offenders.append(f"{relative}: {stripped}")
    assert offenders == []
    rim = {p.name for p in (ROOT / "kvca_core" / "rim").glob("*.py")}
    assert {"keyvault.py", "blob.py", "eventgrid.py", "webhook.py", "monitor.py"} <= rim


def test_host_json_never_samples_away_the_issuance_trail():
    # kvca's per-issuance and per-revocation lines ("kvca op=... serial=...") reach Application
    # Insights as Trace telemetry: the Python worker's logging goes through the Functions host,
    # whose adaptive sampling drops a share of every type not in excludedTypes
    # (learn.microsoft.com/azure/azure-functions/functions-host-json#applicationinsightssamplingsettings).
    sampling = json.loads((ROOT / "host.json").read_text())["logging"]["applicationInsights"]["samplingSettings"]
    if sampling.get("isEnabled", True):
        excluded = {t.strip() for t in sampling.get("excludedTypes", "").split(";")}
        assert {"Trace", "Exception", "Request"} <= excluded, excluded
        assert "includedTypes" not in sampling, "includedTypes would override the exclusions"
