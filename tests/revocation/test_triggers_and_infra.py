"""The revocation triggers' bindings, and the Bicep that publishes: CDP and OCSP URLs derived from
the deployment, the CRL-only storage account (public blobs over http, identity-only writes), and
the grants (blob writes on the CRL container; OCSP needs none of its own)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))  # bicepwalk

from apphelpers import FUNCTIONS  # noqa: E402
from bicepwalk import INFRA, app_settings, load  # noqa: E402


def test_revoke_needs_a_function_key_and_crl_and_ocsp_are_anonymous():
    routes = {}
    for name in ("kvca_revoke", "kvca_revoke_serial", "kvca_crl", "kvca_crl_version", "kvca_ocsp_post", "kvca_ocsp_get"):
        binding = json.loads(FUNCTIONS[name].get_function_json())["bindings"][0]
        routes[name] = (binding["route"], tuple(m.upper() for m in binding["methods"]), binding["authLevel"].lower())
    assert routes == {
        "kvca_revoke": ("api/certificates/{name}/revoke", ("POST",), "function"),
        "kvca_revoke_serial": ("api/cas/{ca}/revoke", ("POST",), "function"),
        "kvca_crl": ("api/crl/{ca}.crl", ("GET",), "anonymous"),
        "kvca_crl_version": ("api/crl/{ca}/{version}.crl", ("GET",), "anonymous"),
        "kvca_ocsp_post": ("api/ocsp/{ca}", ("POST",), "anonymous"),
        "kvca_ocsp_get": ("api/ocsp/{ca}/{*request}", ("GET",), "anonymous"),
    }


def test_the_crl_timer_reads_its_schedule_from_the_app_settings():
    binding = json.loads(FUNCTIONS["kvca_publish_crls"].get_function_json())["bindings"][0]
    assert binding["type"] == "timerTrigger" and binding["schedule"] == "%KVCA_CRL_SCHEDULE%"


def test_the_cdp_is_the_crl_blob_over_http_and_ocsp_is_derived_from_the_app_name():
    main = load("main.bicep")
    text = (Path(main.path)).read_text()
    assert "var appBaseUrl = 'https://${functionAppName}.azurewebsites.net'" in text
    assert "var crlBlobHost = '${crlStorageName}.blob.${environment().suffixes.storage}'" in text
    assert "'http://${crlBlobHost}/${crlContainerName}/{ca}/{version}.crl'" in text  # kvca fills these in
    assert "var crlContainerUrl = 'https://${crlBlobHost}/${crlContainerName}'" in text
    assert "'${appBaseUrl}/api/ocsp'" in text
    params = main.modules["functionApp"].body["params"]
    assert params["crlUrl"] == "derivedCrlUrl" and params["crlContainerUrl"] == "crlContainerUrl"
    crl_params = main.modules["crlStorage"].body["params"]
    assert crl_params["name"] == "crlStorageName" and crl_params["containerName"] == "crlContainerName"
    settings = app_settings(load("app/function.bicep").one("Microsoft.Web/sites"))
    assert settings["KVCA_OCSP_URL"] == "ocspUrl" and settings["KVCA_CRL_URL"] == "crlUrl"
    assert settings["KVCA_CRL_CONTAINER_URL"] == "crlContainerUrl" and settings["KVCA_CRL_SCHEDULE"] == "crlSchedule"


def test_the_crl_account_serves_public_blobs_over_http_and_takes_writes_by_identity_only():
    template = load("app/crl-storage.bicep")
    account = template.one("Microsoft.Storage/storageAccounts")
    assert account.get("properties.allowBlobPublicAccess") is True
    assert account.get("properties.supportsHttpsTrafficOnly") is False
    assert account.get("properties.allowSharedKeyAccess") is False
    assert account.get("properties.minimumTlsVersion") == "TLS1_2"
    (container,) = template.of_type("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert container.get("properties.publicAccess") == "Blob"  # read a named CRL, never list
    (ra,) = template.role_assignments()
    assert (ra.role, ra.scope.symbol, ra.principal) == ("Storage Blob Data Contributor", container.symbol,
                                                        "functionPrincipalId")
    # The host's account keeps its private, https-only settings: public CRLs live apart.
    host = load("app/storage.bicep").one("Microsoft.Storage/storageAccounts")
    assert host.get("properties.allowBlobPublicAccess") is False
    assert host.get("properties.supportsHttpsTrafficOnly") is True


def test_ocsp_needs_no_role_of_its_own_and_the_cdp_names_each_key_versions_crl():
    """OCSP answers are signed by the CA's own key, which the app signs leaves with (ca-access.bicep):
    turning OCSP on only sets the URL. The CDP kvca writes names {ca} and {version}, which kvca fills
    in per leaf, so every key version's CRL is the one its leaves name."""
    assert not (INFRA / "app" / "ocsp-access.bicep").exists()
    main = load("main.bicep")
    assert main.params["ocspEnabled"].default is False
    assert "ocspAccess" not in main.modules
    derived = json.dumps(main.variables["derivedCrlUrl"])
    assert "{ca}/{version}.crl" in derived
