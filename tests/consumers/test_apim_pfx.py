"""The PFX that API Management (and App Service) would take from the certificate's secret carries
the full chain, root included, in the order leaf, intermediate, root, with the key in it; the
choice is per request and the profile's default otherwise. Checked by parsing the PFX, with
cryptography and with `openssl pkcs12`."""

from __future__ import annotations

import base64
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from consumers import issue, require, secret_credential
from kvca_core.signing.certs import is_self_signed, issued_by


def test_the_pfx_api_management_takes_holds_key_leaf_intermediate_and_root_in_order(kvca, kv_clients, corp,
                                                                                     tmp_path):
    issue(kvca, "api", "--dns", "api.corp.internal", "--ca", corp, "--key", "rsa-2048", "--profile", "server")
    cred, content_type, _ = secret_credential(kv_clients, "api")
    assert content_type == "application/x-pkcs12"
    # API Management: an RSA key of at least 2048 bits, every intermediate and the root.
    assert isinstance(cred.key, rsa.RSAPrivateKey) and cred.key.key_size >= 2048
    assert cred.key.public_key().public_numbers() == cred.leaf.public_key().public_numbers()
    chain = [cred.leaf, *cred.chain]
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=api.corp.internal", "CN=Corp CA", "CN=Corp CA Root"]
    assert all(issued_by(child, parent) for child, parent in zip(chain, chain[1:]))
    assert is_self_signed(chain[-1])
    # The same, as openssl reads the PFX kvca download writes (what is uploaded by hand).
    out = tmp_path / "api.pfx"
    assert kvca("download", "api", "--format", "pfx", "--out", str(out)).code == 0
    _, leaf, extra = pkcs12.load_key_and_certificates(out.read_bytes(), None)
    assert [leaf, *extra] == chain
    proc = subprocess.run([require("openssl"), "pkcs12", "-in", str(out), "-passin", "pass:", "-nokeys"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("BEGIN CERTIFICATE") == 3


@pytest.mark.parametrize("argv, with_root", [
    (["--profile", "server"], True),  # serves TLS: API Management and App Service need the root
    (["--profile", "server-client"], True),
    (["--profile", "client"], False),  # a device presents its chain to a server that has the anchor
    (["--profile", "client", "--include-root"], True),
    (["--profile", "server", "--no-include-root"], False),
])
def test_the_root_is_in_the_secret_by_profile_default_or_as_asked(kvca, kv_clients, corp, argv, with_root):
    issue(kvca, "c1", "--dns", "c1.corp.internal", "--ca", corp, *argv)
    cred, _, _ = secret_credential(kv_clients, "c1")
    assert [c.subject.rfc4514_string() for c in cred.chain] == ["CN=Corp CA"] + (["CN=Corp CA Root"] if with_root
                                                                                  else [])


def test_a_non_exportable_request_puts_no_key_in_the_secret(kvca, kv_clients, corp, tmp_path):
    result = kvca("request", "sealed", "--dns", "sealed.corp.internal", "--ca", corp, "--no-exportable", "--sign")
    assert result.code == 0, result.err
    secret = kv_clients.secrets.get_secret("sealed")
    key, leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert key is None and [c.subject.rfc4514_string() for c in [leaf, *extra] if c][0] == "CN=sealed.corp.internal"
    assert kv_clients.certificates.get_certificate_policy("sealed").exportable is False
    refused = kvca("download", "sealed", "--format", "pfx", "--out", str(tmp_path / "sealed.pfx"))
    assert refused.code == 1 and "not exportable" in refused.err
    assert not (tmp_path / "sealed.pfx").exists()
