"""`kvca request NAME` with the options consumers need: email and URI SANs, a device-ID CN, the
key's exportability and the root in the chain, each read back from what the vault holds."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from clihelpers import vault_snapshot


@pytest.fixture
def devices(kvca, monkeypatch):
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", json.dumps({"devices": {
        "allow_uri": True, "allow_email": True, "cn_forms": ["dns-name", "ip-address", "device-id"]}}))
    assert kvca("ca", "create", "devices", "--subject", "CN=Devices CA").code == 0
    return "devices"


def _secret(kv_clients, name):
    key, leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(kv_clients.secrets.get_secret(name).value),
                                                        None)
    return key, [c for c in [leaf, *extra] if c is not None]


def test_email_and_uri_sans_from_the_command_line(kvca, kv_clients, devices):
    result = kvca("request", "mail-1", "--dns", "m1.devices.example", "--email", "ops@devices.example",
                  "--uri", "spiffe://devices.example/m1", "--profile", "client", "--ca", devices, "--sign")
    assert result.code == 0, result.err
    cert = x509.load_der_x509_certificate(kv_clients.certificates.get_certificate("mail-1").cer)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.RFC822Name) == ["ops@devices.example"]
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://devices.example/m1"]


def test_a_device_id_cn_with_no_dns_name_is_issued_exportable_and_without_the_root(kvca, kv_clients, devices):
    result = kvca("--json", "request", "device-001", "--subject", "CN=device-001", "--profile", "client",
                  "--ca", devices, "--sign")
    assert result.code == 0, result.err
    assert json.loads(result.out)["action"] == "issued"
    key, certs = _secret(kv_clients, "device-001")
    assert key is not None  # exportable: the device gets its key
    assert [c.subject.rfc4514_string() for c in certs] == ["CN=device-001", "CN=Devices CA"]
    with pytest.raises(x509.ExtensionNotFound):
        certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_no_exportable_and_include_root_are_kept_in_the_vault(kvca, kv_clients, devices):
    result = kvca("request", "sealed", "--subject", "CN=sealed-7", "--profile", "client", "--ca", devices,
                  "--no-exportable", "--include-root", "--sign")
    assert result.code == 0, result.err
    key, certs = _secret(kv_clients, "sealed")
    assert key is None
    assert [c.subject.rfc4514_string() for c in certs] == ["CN=sealed-7", "CN=Devices CA", "CN=Devices CA Root"]
    assert kv_clients.certificates.get_certificate_policy("sealed").exportable is False


def test_a_device_id_cn_is_refused_before_anything_is_created_where_the_policy_does_not_allow_it(kvca, kv_clients,
                                                                                                 corp):
    before = vault_snapshot(kv_clients)
    result = kvca("request", "device-002", "--subject", "CN=device-002", "--profile", "client", "--ca", corp,
                  "--sign")
    assert result.code == 1
    assert len(result.err_lines) == 1 and "cn_forms" in result.err_lines[0], result.err
    assert vault_snapshot(kv_clients) == before
