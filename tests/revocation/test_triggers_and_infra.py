"""The revocation triggers' bindings, and the Bicep that publishes: CDP and OCSP URLs derived from
the deployment, and exactly one new grant (the CA key signer role on the responder's key)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))  # bicepwalk

from apphelpers import FUNCTIONS  # noqa: E402
from bicepwalk import app_settings, load  # noqa: E402


def test_revoke_needs_a_function_key_and_crl_and_ocsp_are_anonymous():
    routes = {}
    for name in ("kvca_revoke", "kvca_crl", "kvca_ocsp_post", "kvca_ocsp_get"):
        binding = json.loads(FUNCTIONS[name].get_function_json())["bindings"][0]
        routes[name] = (binding["route"], tuple(m.upper() for m in binding["methods"]), binding["authLevel"].lower())
    assert routes == {
        "kvca_revoke": ("certificates/{name}/revoke", ("POST",), "function"),
        "kvca_crl": ("crl/{ca}.crl", ("GET",), "anonymous"),
        "kvca_ocsp_post": ("ocsp/{ca}", ("POST",), "anonymous"),
        "kvca_ocsp_get": ("ocsp/{ca}/{*request}", ("GET",), "anonymous"),
    }


def test_crl_and_ocsp_urls_are_derived_from_the_app_name():
    main = load("main.bicep")
    text = (Path(main.path)).read_text()
    assert "var appBaseUrl = 'https://${functionAppName}.azurewebsites.net'" in text
    assert "'${appBaseUrl}/api/crl/${caName}.crl'" in text and "'${appBaseUrl}/api/ocsp'" in text
    params = main.modules["functionApp"].body["params"]
    assert params["crlUrl"] == "derivedCrlUrl"
    settings = app_settings(load("app/function.bicep").one("Microsoft.Web/sites"))
    assert settings["KVCA_OCSP_URL"] == "ocspUrl" and settings["KVCA_CRL_URL"] == "crlUrl"


def test_the_responder_key_role_is_one_key_and_only_when_ocsp_is_enabled():
    template = load("app/ocsp-access.bicep")
    (ra,) = template.role_assignments()
    assert ra.role == "kvca CA key signer" and ra.scope.type == "Microsoft.KeyVault/vaults/keys"
    assert ra.scope.existing and ra.scope.parent.type == "Microsoft.KeyVault/vaults"
    main = load("main.bicep")
    assert main.params["ocspEnabled"].default is False
    assert "ocspEnabled" in json.dumps(main.modules["ocspAccess"].condition)
