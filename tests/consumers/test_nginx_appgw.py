"""nginx serves a kvca certificate taken from its Key Vault secret exactly as Application Gateway
takes it (versionless secret ID, PFX with the key), and `openssl s_client -verify_return_error`
trusts it with the root `kvca export-chain --which root` gives. After `kvca renew`, a reload
serves the new version."""

from __future__ import annotations

import stat

from consumers import foreign_root, issue, require, secret_credential
from demo.consumers import Nginx, PythonTLSServer, pem_file, s_client, wait_for_serial

NAME, HOST = "web", "web.corp.internal"


def test_nginx_serves_the_secret_as_application_gateway_takes_it_and_a_reload_serves_the_renewal(
        kvca, kv_clients, corp, tmp_path, key_files, servers):
    issue(kvca, NAME, "--dns", HOST, "--ca", corp, "--profile", "server")
    root = tmp_path / "root.pem"
    assert kvca("export-chain", corp, "--which", "root", "--out", str(root)).code == 0

    require("nginx")
    require("openssl")
    cred, _, props = secret_credential(kv_clients, NAME)
    # nginx serves what the secret holds: the leaf, then the issuing CA (and the root, which the
    # server profile's chain carries for API Management; a client needs only its own copy).
    assert [c.subject.rfc4514_string() for c in [cred.leaf, *cred.chain]][:2] == [f"CN={HOST}", "CN=Corp CA"]
    cert, key = cred.write(key_files, tmp_path, NAME)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    (tmp_path / "nginx").mkdir()
    nginx = Nginx(tmp_path / "nginx", cert, key, HOST)
    servers.append(nginx.start())

    shake = s_client(nginx.port, HOST, root)
    assert shake.verified, shake.output
    assert shake.served.serial_number == cred.serial

    # The same handshake trusting another root fails: -verify_return_error makes it fatal.
    refused = s_client(nginx.port, HOST, pem_file(tmp_path / "other-root.pem", [foreign_root()[0]]))
    assert not refused.verified and refused.code != 0

    # Renew at once (--force: the first version is seconds old), as a rotation would.
    renewed = kvca("--json", "renew", NAME, "--force")
    assert renewed.code == 0, renewed.err
    # Before the reload nginx still serves the old version: the reload is what picks it up.
    assert s_client(nginx.port, HOST, root).served.serial_number == cred.serial
    new, _, new_props = secret_credential(kv_clients, NAME)  # the versionless ID now gives the new version
    assert new.serial != cred.serial and new_props.version != props.version
    new.write(key_files, tmp_path, NAME)  # the files replaced, as the gateway's 4-hour poll would
    nginx.reload()
    shake = wait_for_serial(nginx.port, HOST, root, new.serial)
    assert shake.verified, shake.output
    assert shake.served.serial_number == new.serial


def test_the_demo_fallback_tls_server_serves_the_secret_when_nginx_is_missing(kvca, kv_clients, corp, tmp_path,
                                                                              key_files, servers):
    """`make demo` serves the TLS part with Python's ssl module on a machine without nginx."""
    issue(kvca, NAME, "--dns", HOST, "--ca", corp, "--profile", "server")
    root = tmp_path / "root.pem"
    assert kvca("export-chain", corp, "--which", "root", "--out", str(root)).code == 0
    cred, _, _ = secret_credential(kv_clients, NAME)
    cert, key = cred.write(key_files, tmp_path, NAME)
    server = PythonTLSServer(cert, key)
    servers.append(server.start())
    shake = s_client(server.port, HOST, root)
    assert shake.verified, shake.output
    assert shake.served.serial_number == cred.serial
