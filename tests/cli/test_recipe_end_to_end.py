"""The manual recipe, end to end, both ways: (1) a CA made by `kvca ca create`, (2) the root and
intermediate `step ca init` makes, adopted with `kvca ca import`. For both: `request --sign`,
`renew`, `list` and `export-chain` give chains that `openssl verify` accepts against the root alone."""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from clihelpers import openssl_verify, pem, secret_certificates


def _leaf_and_chain(kv_clients, name: str) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The current version as a client downloads it: the leaf, and the chain merged with it."""
    cert = kv_clients.certificates.get_certificate(name)
    secret = kv_clients.secrets.get_secret(name, cert.properties.version)
    certs = secret_certificates(secret.properties.content_type, secret.value)
    leaf = x509.load_der_x509_certificate(bytes(cert.cer))
    assert certs[0] == leaf
    return leaf, certs[1:]


def _make_ca(way: str, kvca, kv_clients, step_ca) -> x509.Certificate:
    """Set up CA 'corp' one way or the other; return the root a client would trust."""
    if way == "created":
        result = kvca("ca", "create", "corp", "--subject", "CN=Corp Issuing CA, O=Corp", "--permitted-dns",
                      "corp.internal")
        assert result.code == 0, result.err
        return x509.load_der_x509_certificate(bytes(kv_clients.certificates.get_certificate("corp-root").cer))
    result = kvca("ca", "import", "corp", "--cert", str(step_ca.intermediate_crt), "--key",
                  str(step_ca.intermediate_key), "--chain", str(step_ca.root_crt),
                  "--password-file", str(step_ca.password_file))
    assert result.code == 0, result.err
    return x509.load_pem_x509_certificate(step_ca.root_crt.read_bytes())  # the root from step's own file


@pytest.mark.parametrize("way", ["created", "imported-from-step"])
def test_recipe_request_sign_renew_list_export_verify_against_the_root_alone(way, kvca, kv_clients, step_ca,
                                                                            emulator, tmp_path):
    root = _make_ca(way, kvca, kv_clients, step_ca)

    # Request and sign at once (the recipe's portal request + signing script, in one command).
    # `step certificate sign --bundle` merges leaf + intermediate, so the recipe's chain has no root.
    issued = kvca("request", "api", "--dns", "api.corp.internal", "www.corp.internal", "--ca", "corp",
                  "--months", "12", "--no-include-root", "--sign")
    assert issued.code == 0, issued.err
    assert issued.out.startswith("api: issued, version ")
    tags = kv_clients.certificates.get_certificate("api").properties.tags
    assert tags == {"kvca-ca": "corp", "kvca-chain": "without-root",
                    "kvca-ca-version": kv_clients.certificates.get_certificate("corp").properties.version}
    assert kv_clients.certificates.get_certificate_policy("api").issuer_name == "Unknown"
    leaf, chain = _leaf_and_chain(kv_clients, "api")
    assert root not in chain  # the merged chain stops below the root
    verified = openssl_verify(pem(root), pem(leaf), "".join(map(pem, chain)), tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # export-chain: the intermediates as a bundle; with --include-root the root last.
    bundle = kvca("export-chain", "corp")
    assert bundle.code == 0
    assert x509.load_pem_x509_certificates(bundle.out.encode()) == chain
    verified = openssl_verify(pem(root), pem(leaf), bundle.out, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    out_file = tmp_path / "trust.pem"
    assert kvca("export-chain", "corp", "--include-root", "--out", str(out_file)).code == 0
    assert x509.load_pem_x509_certificates(out_file.read_bytes()) == chain + [root]

    # renew: a new version, a new serial, the same trust.
    emulator.clock.advance(seconds=600)  # past the "just renewed" guard against double clicks
    renewed = kvca("renew", "api")
    assert renewed.code == 0, renewed.err
    assert renewed.out.startswith("api: renewed, version ")
    new_leaf, new_chain = _leaf_and_chain(kv_clients, "api")
    assert new_leaf.serial_number != leaf.serial_number
    assert len(list(kv_clients.certificates.list_properties_of_certificate_versions("api"))) == 2
    verified = openssl_verify(pem(root), pem(new_leaf), "".join(map(pem, new_chain)), tmp_path,
                              at=emulator.clock.now())
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # list: the managed certificate, its CA and its state; the CA itself is not listed.
    listing = kvca("list")
    assert listing.code == 0
    rows = listing.out.splitlines()
    assert rows[0].split() == ["NAME", "SUBJECT", "SANS", "CA", "NOT", "AFTER", "DAYS", "LEFT", "STATE", "WHERE"]
    assert len(rows) == 2 and rows[1].split()[0] == "api" and rows[1].split()[-2:] == ["valid", "vault"]
    assert "api.corp.internal, www.corp.internal" in rows[1] and " corp " in rows[1]
    body = json.loads(kvca("--json", "list").out)["certificates"]
    assert [item["serial"] for item in body] == [format(new_leaf.serial_number, "x")]

    # ca show counts what it issued and is still valid.
    assert "issued, still valid: 1" in kvca("ca", "show", "corp").out
