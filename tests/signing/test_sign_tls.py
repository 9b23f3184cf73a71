"""Real TLS handshakes with Python's ssl (OpenSSL underneath): the server
presents leaf + intermediate, the client trusts only the root and checks the
host name; mTLS with a `client` profile certificate."""

from __future__ import annotations

import ssl

import pytest

from kvca_core.signing import Profile, issue_leaf
from signing_helpers import make_csr, tls_handshake, write_key, write_pem


def server_context(tmp, name, issued, key, *, client_ca=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(write_pem(tmp / f"{name}-chain.pem", *issued.chain), write_key(tmp / f"{name}.key", key))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(write_pem(tmp / "client-root.pem", client_ca)))
    return ctx


def client_context(tmp, root, *, cert=None, key=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(write_pem(tmp / "trust-root.pem", root)))  # the root only
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    if cert is not None:
        ctx.load_cert_chain(write_pem(tmp / "client-chain.pem", *cert.chain), write_key(tmp / "client.key", key))
    return ctx


@pytest.mark.parametrize("issuer,subject", [("rsa", "rsa"), ("rsa", "ec"), ("ec", "rsa"), ("ec", "ec")])
async def test_tls_client_trusting_only_the_root_accepts_the_server(issuer, subject, pkis, keys, tmp_path):
    pki = pkis[issuer]
    key = keys.get(f"{subject}:leaf")
    issued = await issue_leaf(make_csr(key, dns=("api.kvca.test",)), ca=pki.ca("remote"))
    outcome = tls_handshake(server_context(tmp_path, "server", issued, key), client_context(tmp_path, pki.root),
                            "api.kvca.test")
    assert "client_error" not in outcome, outcome
    assert outcome["data"] == b"hello"
    assert ("DNS", "api.kvca.test") in outcome["client_peer"]["subjectAltName"]


async def test_tls_client_refuses_a_host_name_the_certificate_does_not_name(pkis, keys, tmp_path):
    pki = pkis["ec"]
    key = keys.get("ec:leaf")
    issued = await issue_leaf(make_csr(key, dns=("api.kvca.test",)), ca=pki.ca())
    outcome = tls_handshake(server_context(tmp_path, "server", issued, key), client_context(tmp_path, pki.root),
                            "other.kvca.test")
    assert isinstance(outcome.get("client_error"), ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(outcome["client_error"])


async def test_wildcard_certificate_serves_a_host_below_it(pkis, keys, tmp_path):
    pki = pkis["rsa"]
    key = keys.get("rsa:leaf")
    issued = await issue_leaf(make_csr(key, subject=None, dns=("*.kvca.test",)), ca=pki.ca())
    outcome = tls_handshake(server_context(tmp_path, "server", issued, key), client_context(tmp_path, pki.root),
                            "anything.kvca.test")
    assert "client_error" not in outcome, outcome


@pytest.mark.parametrize("issuer", ["rsa", "ec"])
async def test_mtls_server_accepts_a_client_profile_certificate(issuer, pkis, keys, tmp_path):
    pki = pkis[issuer]
    server_key, client_key = keys.get("ec:leaf"), keys.get("rsa:client")
    server = await issue_leaf(make_csr(server_key), ca=pki.ca("local"))
    # An Event Grid MQTT client: its authentication name is the CN (or a DNS SAN).
    client = await issue_leaf(make_csr(client_key, subject="CN=device-01.clients.kvca.test",
                                       dns=("device-01.clients.kvca.test",)),
                              ca=pki.ca("remote"), requested_ekus=["1.3.6.1.5.5.7.3.2"])
    assert client.profile is Profile.CLIENT
    outcome = tls_handshake(server_context(tmp_path, "server", server, server_key, client_ca=pki.root),
                            client_context(tmp_path, pki.root, cert=client, key=client_key), "api.kvca.test")
    assert "server_error" not in outcome and "client_error" not in outcome, outcome
    assert dict(x[0] for x in outcome["server_peer"]["subject"])["commonName"] == "device-01.clients.kvca.test"


async def test_mtls_server_refuses_a_server_only_certificate_as_client(pkis, keys, tmp_path):
    pki = pkis["ec"]
    server_key, client_key = keys.get("ec:leaf"), keys.get("ec:client")
    server = await issue_leaf(make_csr(server_key), ca=pki.ca())
    not_a_client = await issue_leaf(make_csr(client_key, subject="CN=device-02.kvca.test",
                                             dns=("device-02.kvca.test",)), ca=pki.ca(), profile="server")
    outcome = tls_handshake(server_context(tmp_path, "server", server, server_key, client_ca=pki.root),
                            client_context(tmp_path, pki.root, cert=not_a_client, key=client_key), "api.kvca.test")
    assert "unsuitable certificate purpose" in str(outcome.get("server_error", ""))
