"""nginx (`ssl_verify_client on` + `ssl_crl`) and mosquitto (`crlfile`) refuse a client certificate
kvca revoked and accept one it did not, with the CRLs kvca published. Both run on loopback, on
free ports, with their pid, logs and key files in tmp_path (keys mode 0600, removed after)."""

from __future__ import annotations

import getpass
import http.client
import os
import ssl
import subprocess
from pathlib import Path

import pytest

from demo.consumers import find, free_port, install_hint, wait_for_port
from kvca_core import revocation

from revhelpers import CA, crl_pem, fetch_crl, make_leaf, pem



def _binary(name: str) -> str:
    found = find(name)
    if not found:
        pytest.fail(f"{name} is not installed ({install_hint(name)}; .ci/run does)")
    return found


def _private(path: Path, data: bytes) -> Path:
    path.touch(mode=0o600)
    path.write_bytes(data)
    return path


@pytest.fixture
async def material(revocation_ca, leaves, tmp_path):
    """Server certificate, CA bundle and CRL files; `bad` revoked, `good` not."""
    ctx = revocation_ca
    server = await make_leaf(ctx, "server", CA)
    await revocation.revoke(ctx, "bad", reason="keyCompromise")
    status, der, _ = await fetch_crl(CA)
    assert status == 200
    root_crl = revocation.crl_der(await revocation.sign_root_crl(ctx, CA))
    d = tmp_path / "tls"
    d.mkdir()
    files = {
        "ca": d / "ca.pem", "server_cert": d / "server.pem", "crl": d / "crl.pem",
        "server_key": _private(d / "server.key", server.key_pem),
    }
    files["ca"].write_bytes(pem(server.intermediate, server.root))
    files["server_cert"].write_bytes(pem(server.cert, server.intermediate))
    files["crl"].write_bytes(crl_pem(der) + crl_pem(root_crl))  # one CRL per level of the chain
    for name, leaf in leaves.items():
        files[f"{name}_cert"] = d / f"{name}.pem"
        files[f"{name}_cert"].write_bytes(pem(leaf.cert, leaf.intermediate))
        files[f"{name}_key"] = _private(d / f"{name}.key", leaf.key_pem)
    try:
        yield files
    finally:
        for path in files.values():
            path.unlink(missing_ok=True)  # the keys, above all


@pytest.fixture
def nginx(material, tmp_path):
    binary = _binary("nginx")
    port = free_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 16; }}
http {{
  access_log {prefix}/access.log;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy; fastcgi_temp_path {prefix}/fcgi;
  uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {material['server_cert']};
    ssl_certificate_key {material['server_key']};
    ssl_client_certificate {material['ca']};
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_crl {material['crl']};
    location / {{ return 200 "hello $ssl_client_s_dn\\n"; }}
  }}
}}
""")
    process = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process, prefix / "error.log")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _https_get(port: int, material, who: str) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(material["ca"]))
    context.check_hostname = False  # the server is reached by 127.0.0.1; its name is server.rev.internal
    context.load_cert_chain(str(material[f"{who}_cert"]), str(material[f"{who}_key"]))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_nginx_refuses_the_revoked_client_certificate_and_accepts_the_valid_one(nginx, material):
    status, body = _https_get(nginx, material, "good")
    assert status == 200 and "good.rev.internal" in body
    status, body = _https_get(nginx, material, "bad")
    # nginx answers a failed client verification with 400 "The SSL certificate error".
    assert status == 400 and "SSL certificate error" in body, body


@pytest.fixture
def mosquitto(material, tmp_path):
    binary = _binary("mosquitto")
    _binary("mosquitto_pub")
    port = free_port()
    d = tmp_path / "mosquitto"
    d.mkdir()
    log = d / "mosquitto.log"
    conf = d / "mosquitto.conf"
    # Started as root (a CI container), mosquitto drops to user "mosquitto", who can read neither
    # tmp_path nor the 0600 key files: keep the test's own user.
    user = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
    conf.write_text(f"""{user}
pid_file {d}/mosquitto.pid
log_dest file {log}
log_type all
persistence false
listener {port} 127.0.0.1
cafile {material['ca']}
certfile {material['server_cert']}
keyfile {material['server_key']}
require_certificate true
use_identity_as_username true
crlfile {material['crl']}
allow_anonymous false
""")
    stderr = (d / "stderr.log").open("wb")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=stderr, stderr=stderr)
    try:
        wait_for_port(port, process, d / "stderr.log")
        yield port, log
    finally:
        process.terminate()
        process.wait(timeout=10)
        stderr.close()


def _publish(port: int, material, who: str) -> subprocess.CompletedProcess:
    return subprocess.run([_binary("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), "--cafile", str(material["ca"]),
                           "--cert", str(material[f"{who}_cert"]), "--key", str(material[f"{who}_key"]),
                           "--insecure",  # hostname only: the server is reached by 127.0.0.1
                           "-t", "kvca/test", "-m", who, "-q", "1"], capture_output=True, text=True, timeout=30)


def test_mosquitto_refuses_the_revoked_client_certificate_and_accepts_the_valid_one(mosquitto, material):
    port, log = mosquitto
    good = _publish(port, material, "good")
    assert good.returncode == 0, good.stdout + good.stderr + log.read_text()
    bad = _publish(port, material, "bad")
    assert bad.returncode != 0, bad.stdout + bad.stderr
    # mosquitto logs only "certificate verify failed"; the two clients differ in nothing but the CRL entry.
    assert "certificate verify failed" in log.read_text()
