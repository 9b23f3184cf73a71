"""The issuance policy stored with the CA: `ca create/import --policy`, `kvca ca policy
show|set`, and a CLI that signs under the CA's stored policy whatever its own KVCA_ISSUANCE_POLICY says."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from azure.core.exceptions import ResourceNotFoundError
from cryptography import x509

from clihelpers import vault_snapshot

STRICT = {"allowed_domains": ["corp.internal"], "allow_wildcards": False, "max_validity_days": 90}


def policy_versions(kv_clients, ca: str) -> list[str]:
    try:
        return sorted(v.version for v in kv_clients.secrets.list_properties_of_secret_versions(f"{ca}-policy"))
    except ResourceNotFoundError:
        return []


def ca_tags(kv_clients, ca: str) -> dict:
    return dict(kv_clients.certificates.get_certificate(ca).properties.tags)


@pytest.fixture
def strict(kvca):
    result = kvca("ca", "create", "strict", "--subject", "CN=Strict CA", "--policy", json.dumps(STRICT))
    assert result.code == 0, result.err
    assert "note: issuance policy stored with the CA" in result.out
    return "strict"


def test_ca_create_stores_the_policy_and_show_names_its_secret_version(kvca, kv_clients, strict):
    shown = kvca("--json", "ca", "policy", "show", strict)
    assert shown.code == 0, shown.err
    body = json.loads(shown.out)
    assert set(body) == {"schema_version", "object", "ca", "source", "secret_version", "policy"}
    assert body["ca"] == strict and body["source"] == "stored"
    assert body["secret_version"] == ca_tags(kv_clients, strict)["kvca-policy"]
    assert policy_versions(kv_clients, strict) == [body["secret_version"]]
    assert body["policy"]["allowed_domains"] == ["corp.internal"] and body["policy"]["max_validity_days"] == 90
    secret = kv_clients.secrets.get_secret("strict-policy")
    assert secret.properties.content_type == "application/json" and secret.properties.tags == {"kvca-ca": "strict"}
    # What is stored leaves out only the default lifetime derived from the maximum (90 days here).
    stored = json.loads(secret.value)
    assert body["policy"]["default_validity_days"] == 90 and "default_validity_days" not in stored["policy"]
    assert stored == {"version": 1, "ca": "strict",
                      "policy": {k: v for k, v in body["policy"].items() if k != "default_validity_days"}}
    text = kvca("ca", "policy", "show", strict)
    assert f"source: stored (secret strict-policy, version {body['secret_version']})" in text.out
    assert "  allowed_domains: corp.internal" in text.out and "  max_validity_days: 90" in text.out


def test_the_stored_policy_wins_over_a_looser_setting(kvca, kv_clients, strict, monkeypatch):
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", json.dumps({"*": {"max_validity_days": 3650}}))  # anything goes
    before = vault_snapshot(kv_clients)
    refused = kvca("request", "evil", "--dns", "www.example.com", "--ca", strict, "--sign")
    assert refused.code == 1 and "'www.example.com'" in refused.err and "corp.internal" in refused.err
    assert vault_snapshot(kv_clients) == before
    issued = kvca("request", "api", "--dns", "api.corp.internal", "--ca", strict, "--months", "24", "--sign")
    assert issued.code == 0, issued.err
    leaf = x509.load_der_x509_certificate(kv_clients.certificates.get_certificate("api").cer)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= dt.timedelta(days=90, minutes=5)


def test_without_the_setting_the_cli_still_signs_under_the_stored_policy(kvca, kv_clients, strict, monkeypatch):
    """The issue's finding: a CLI run without KVCA_ISSUANCE_POLICY. Now the CA's policy holds."""
    monkeypatch.delenv("KVCA_ISSUANCE_POLICY")
    assert kvca("request", "evil", "--dns", "www.example.com", "--ca", strict, "--sign").code == 1
    assert kvca("request", "ok", "--dns", "ok.corp.internal", "--ca", strict, "--sign").code == 0


@pytest.mark.parametrize("argv, code, named", [
    # A policy that is not one is a bad input (exit 2), refused before any vault call...
    (["--policy", '{"allowed_domain": ["corp.internal"]}'], 2, "unknown issuance policy field(s) 'allowed_domain'"),
    (["--policy", '{"policy": {}, "allowed_domains": []}'], 2, "unknown issuance policy field(s) 'policy'"),
    (["--policy", '{"max_validity_days": 0}'], 2, "max_validity_days=0 must be a whole number of at least 1"),
    (["--policy", '{"profiles": ["ocsp"]}'], 2, "profile 'ocsp' is not one of server, client, server-client"),
    (["--set", "allow_wildcards=maybe"], 2, "allow_wildcards='maybe' must be true or false"),
    (["--set", "key_types=dsa"], 2, "key type 'dsa' is not one of"),
    # ...and a valid one the CA's name constraints leave nothing to allow is refused by the operation.
    (["--set", "allowed_domains=www.example.com"], 1, "lies within the CA's name constraints"),
])
def test_set_refuses_an_invalid_policy_and_writes_nothing(kvca, kv_clients, corp, argv, code, named):
    versions, tags = policy_versions(kv_clients, corp), ca_tags(kv_clients, corp)
    result = kvca("ca", "policy", "set", corp, *argv)
    assert result.code == code and named in result.err, result.err
    assert len(result.err_lines) == 1 and "Traceback" not in result.err
    assert policy_versions(kv_clients, corp) == versions and ca_tags(kv_clients, corp) == tags


def test_set_with_field_assignments_changes_the_policy_in_force_at_the_next_signing(kvca, kv_clients, corp):
    assert kvca("request", "wild", "--dns", "*.a.corp.internal", "--ca", corp, "--sign").code == 0
    result = kvca("--json", "ca", "policy", "set", corp, "--set", "allow_wildcards=false",
                  "--set", "allowed_domains=a.corp.internal,b.corp.internal", "--set", "max_validity_days=30")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["source"] == "stored" and body["secret_version"] == ca_tags(kv_clients, corp)["kvca-policy"]
    assert body["policy"]["allowed_domains"] == ["a.corp.internal", "b.corp.internal"]
    assert len(policy_versions(kv_clients, corp)) == 2
    assert ca_tags(kv_clients, corp)["kvca-role"] == "intermediate"  # the other tags stay
    refused = kvca("request", "wild2", "--dns", "*.b.corp.internal", "--ca", corp, "--sign")
    assert refused.code == 1 and "wildcard" in refused.err
    assert kvca("request", "c", "--dns", "c.corp.internal", "--ca", corp, "--sign").code == 1
    assert kvca("request", "b", "--dns", "b.corp.internal", "--ca", corp, "--sign").code == 0
    # Setting the same policy again writes no new version.
    again = kvca("ca", "policy", "set", corp, "--policy", json.dumps(body))
    assert again.code == 0, again.err
    assert len(policy_versions(kv_clients, corp)) == 2


def test_a_tag_naming_a_missing_secret_version_refuses_signing(kvca, kv_clients, corp):
    tags = {**ca_tags(kv_clients, corp), "kvca-policy": "0" * 32}
    kv_clients.certificates.update_certificate_properties(corp, tags=tags)
    before = vault_snapshot(kv_clients)
    result = kvca("request", "api", "--dns", "api.corp.internal", "--ca", corp, "--sign")
    assert result.code == 1
    assert f"tag kvca-policy names version {'0' * 32} of the secret 'corp-policy'" in result.err
    assert "refuses to sign rather than fall back to KVCA_ISSUANCE_POLICY" in result.err
    assert vault_snapshot(kv_clients) == before
    assert kvca("ca", "policy", "show", corp).code == 1


def test_a_broken_stored_policy_refuses_signing(kvca, kv_clients, corp):
    secret = kv_clients.secrets.set_secret("corp-policy", '{"version": 1, "ca": "corp", "policy": {"max_sans": -1}}',
                                           content_type="application/json")
    kv_clients.certificates.update_certificate_properties(
        corp, tags={**ca_tags(kv_clients, corp), "kvca-policy": secret.properties.version})
    result = kvca("request", "api", "--dns", "api.corp.internal", "--ca", corp, "--sign")
    assert result.code == 1 and "max_sans=-1" in result.err and "secret 'corp-policy'" in result.err


def test_without_policy_or_setting_create_stores_the_name_constraints(kvca, kv_clients, monkeypatch):
    monkeypatch.delenv("KVCA_ISSUANCE_POLICY")
    result = kvca("ca", "create", "nc", "--subject", "CN=NC CA", "--permitted-dns", "nc.internal")
    assert result.code == 0, result.err
    assert "stored a policy allowing nc.internal (the name constraints)" in result.out
    body = json.loads(kvca("--json", "ca", "policy", "show", "nc").out)
    assert body["source"] == "stored" and body["policy"]["allowed_domains"] == ["nc.internal"]


def test_without_anything_create_stores_no_policy_and_the_ca_issues_nothing(kvca, kv_clients, monkeypatch):
    monkeypatch.delenv("KVCA_ISSUANCE_POLICY")
    result = kvca("ca", "create", "bare", "--subject", "CN=Bare CA")
    assert result.code == 0, result.err
    assert "no issuance policy stored: the CA issues nothing until `kvca ca policy set bare`" in result.out
    assert "kvca-policy" not in ca_tags(kv_clients, "bare") and policy_versions(kv_clients, "bare") == []
    body = json.loads(kvca("--json", "ca", "policy", "show", "bare").out)
    assert body == {"schema_version": 1, "object": "ca_policy", "ca": "bare", "source": "none",
                    "secret_version": None, "policy": None}
    refused = kvca("request", "x", "--dns", "x.bare.internal", "--ca", "bare", "--sign")
    assert refused.code == 1 and "has no issuance policy" in refused.err
    # A default in the signer's own setting still applies to a CA without a stored policy.
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", json.dumps({"bare": {}}))
    assert json.loads(kvca("--json", "ca", "policy", "show", "bare").out)["source"] == "default"
    assert kvca("request", "x", "--dns", "x.bare.internal", "--ca", "bare", "--sign").code == 0


def test_create_with_an_invalid_policy_writes_nothing(kvca, kv_clients, tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"allowed_domains": ["corp.internal"], "max_validity_day": 90}))
    result = kvca("ca", "create", "corp", "--subject", "CN=Corp CA", "--policy", str(path))
    assert result.code == 2 and "unknown issuance policy field(s) 'max_validity_day'" in result.err
    assert vault_snapshot(kv_clients) == {} and policy_versions(kv_clients, "corp") == []
    path.write_text("{not json")
    result = kvca("ca", "create", "corp", "--subject", "CN=Corp CA", "--policy", str(path))
    assert result.code == 2 and "is not valid JSON" in result.err
    assert vault_snapshot(kv_clients) == {}


def test_ca_import_stores_its_policy(kvca, kv_clients, step_ca):
    result = kvca("ca", "import", "step", "--cert", str(step_ca.intermediate_crt), "--key",
                  str(step_ca.intermediate_key), "--chain", str(step_ca.root_crt), "--password-file",
                  str(step_ca.password_file), "--policy", json.dumps(STRICT))
    assert result.code == 0, result.err
    body = json.loads(kvca("--json", "ca", "policy", "show", "step").out)
    assert body["source"] == "stored" and body["secret_version"] == ca_tags(kv_clients, "step")["kvca-policy"]
    assert body["policy"]["max_validity_days"] == 90


@pytest.mark.parametrize("argv", [
    ["request", "corp-policy", "--dns", "p.corp.internal", "--ca", "corp"],
    ["ca", "create", "other-policy", "--subject", "CN=Other"],
])
def test_names_ending_in_the_policy_suffix_are_reserved(kvca, kv_clients, corp, argv):
    before = vault_snapshot(kv_clients)
    result = kvca(*argv)
    assert result.code == 2 and "ends in '-policy', which kvca reserves" in result.err
    assert vault_snapshot(kv_clients) == before


def test_policy_set_usage_errors_exit_2(kvca, corp):
    assert kvca("ca", "policy", "set", corp).code == 2
    assert kvca("ca", "policy", "set", corp, "--set", "no-equals-sign").code == 2
    assert kvca("ca", "policy", "show").code == 2


def test_only_an_issuing_ca_has_a_policy(kvca, kv_clients, corp):
    assert kvca("request", "api", "--dns", "api.corp.internal", "--ca", corp, "--sign").code == 0
    for name in ("api", "corp-root"):
        result = kvca("ca", "policy", "set", name, "--set", "max_validity_days=30")
        assert result.code == 1 and "is not an issuing CA" in result.err, result.err
        assert policy_versions(kv_clients, name) == []
    assert "CA 'nope': no CA certificate of this name in the vault" in kvca("ca", "policy", "show", "nope").err
