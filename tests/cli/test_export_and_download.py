"""`kvca export-chain` (root, intermediate or both; PEM, DER, PKCS#7) and `kvca download` with a
PFX password: every file is parsed back, and `openssl` reads what Azure services would be given."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from clihelpers import import_exportable_leaf


def _ca_certificates(kv_clients, ca: str) -> tuple[x509.Certificate, x509.Certificate]:
    certs = kv_clients.certificates
    inter = x509.load_der_x509_certificate(certs.get_certificate(ca).cer)
    root = x509.load_der_x509_certificate(certs.get_certificate(f"{ca}-root").cer)
    return inter, root


@pytest.mark.parametrize("which, fmt, expect", [
    ("intermediate", "pem", ["inter"]),
    ("root", "pem", ["root"]),
    ("both", "pem", ["inter", "root"]),
    ("intermediate", "der", ["inter"]),
    ("root", "der", ["root"]),
    ("intermediate", "p7b", ["inter"]),
    ("both", "p7b", ["inter", "root"]),
])
def test_export_chain_gives_the_chosen_certificates_in_the_chosen_format(kvca, kv_clients, corp, tmp_path,
                                                                         which, fmt, expect):
    inter, root = _ca_certificates(kv_clients, corp)
    out = tmp_path / f"trust.{fmt}"
    result = kvca("export-chain", corp, "--which", which, "--format", fmt, "--out", str(out))
    assert result.code == 0, result.err
    assert result.out.strip() == f"wrote {len(expect)} certificate(s) of CA 'corp' ({which}, {fmt}) to {out}"
    data = out.read_bytes()
    parsed = {"pem": x509.load_pem_x509_certificates, "der": lambda d: [x509.load_der_x509_certificate(d)],
              "p7b": pkcs7.load_der_pkcs7_certificates}[fmt](data)
    wanted = [{"inter": inter, "root": root}[e] for e in expect]
    if fmt == "p7b":  # PKCS#7 holds its certificates as a SET OF, so DER encoding sorts them
        assert sorted(parsed, key=lambda c: c.subject.rfc4514_string()) == \
            sorted(wanted, key=lambda c: c.subject.rfc4514_string())
    else:
        assert parsed == wanted
    # openssl reads each as the file type Azure's portals take (.pem/.cer/.p7b).
    if fmt == "p7b":
        check = ["openssl", "pkcs7", "-inform", "DER", "-print_certs", "-noout", "-in", str(out)]
    else:
        check = ["openssl", "x509", "-inform", fmt.upper(), "-noout", "-subject", "-in", str(out)]
    proc = subprocess.run(check, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Corp CA" in proc.stdout


def test_export_chain_der_refuses_two_certificates_and_writes_nothing(kvca, corp, tmp_path):
    out = tmp_path / "both.cer"
    result = kvca("export-chain", corp, "--which", "both", "--format", "der", "--out", str(out))
    assert result.code == 2  # refused before the vault is read: the command line asks for the impossible
    assert result.err_lines == ["kvca: error: export-chain: DER (.cer) holds exactly one certificate, and --which "
                                "both is two or more (hint: choose --which root or intermediate, or --format pem "
                                "or p7b)"]
    assert not out.exists()


def test_export_chain_include_root_is_both_and_contradicting_which_is_a_usage_error(kvca, corp):
    assert kvca("export-chain", corp, "--include-root").out == kvca("export-chain", corp, "--which", "both").out
    assert kvca("export-chain", corp).out == kvca("export-chain", corp, "--which", "intermediate").out
    bad = kvca("export-chain", corp, "--include-root", "--which", "root")
    assert bad.code == 2
    assert bad.err_lines == ["kvca: error: export-chain: --include-root contradicts --which root"]


def test_export_chain_json_carries_binary_formats_as_base64(kvca, kv_clients, corp):
    inter, _ = _ca_certificates(kv_clients, corp)
    body = json.loads(kvca("--json", "export-chain", corp, "--format", "der").out)
    assert body["which"] == "intermediate" and body["certificates"] == 1
    assert x509.load_der_x509_certificate(base64.b64decode(body["base64"])) == inter


def test_export_chain_writes_binary_to_a_pipe(cli_env, corp, tmp_path, kv_clients):
    _, root = _ca_certificates(kv_clients, corp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVCA_", "IDENTITY_"))} | cli_env
    proc = subprocess.run([sys.executable, "-m", "kvca_core", "export-chain", corp, "--which", "root", "--format",
                           "der"], env=env, cwd=tmp_path, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert x509.load_der_x509_certificate(proc.stdout) == root


def test_download_pfx_with_a_password_file_is_encrypted_with_that_password(kvca, kv_clients, tmp_path):
    cert = import_exportable_leaf(kv_clients, "portal")
    password_file = tmp_path / "pw.txt"
    password_file.write_text("s3cret pfx\nignored second line\n")
    out = tmp_path / "portal.pfx"
    result = kvca("--json", "download", "portal", "--out", str(out), "--format", "pfx",
                  "--password-file", str(password_file))
    assert result.code == 0, result.err
    assert json.loads(result.out)["encrypted"] is True
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = out.read_bytes()
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(data, None)
    key, loaded, _ = pkcs12.load_key_and_certificates(data, b"s3cret pfx")
    assert loaded == cert and key.public_key() == cert.public_key()
    # openssl (what Windows, App Service uploads and most tools follow) opens it with the password.
    proc = subprocess.run(["openssl", "pkcs12", "-in", str(out), "-passin", "pass:s3cret pfx", "-nokeys",
                           "-clcerts"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "portal.example.com" in proc.stdout


@pytest.mark.parametrize("fmt, content, message", [
    ("pem", "pw\n", "kvca: error: download: --password-file applies to --format pfx only (a PEM key is written "
                    "unencrypted, mode 0600)"),
    ("pfx", "\n", "kvca: error: password file '{pw}' is empty; leave --password-file out for a PFX without a "
                  "password"),
])
def test_download_password_misuse_is_a_usage_error_before_the_secret_is_read(kvca, kv_clients, tmp_path, fmt,
                                                                            content, message):
    import_exportable_leaf(kv_clients, "portal")
    password_file = tmp_path / "pw.txt"
    password_file.write_text(content)
    out = tmp_path / f"portal.{fmt}"
    result = kvca("download", "portal", "--out", str(out), "--format", fmt, "--password-file", str(password_file))
    assert result.code == 2
    assert result.err_lines == [message.format(pw=password_file)]
    assert not out.exists()
