"""`kvca ca import`: adopting the CA the manual recipe made (`step ca init`: EC P-256, encrypted
PKCS#8 PEM), or one in a PFX; everything checked before the vault is touched."""

from __future__ import annotations

import datetime as dt
import json
from unittest.mock import ANY  # the policy tag names a secret version made at run time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtensionOID, NameOID

from clihelpers import make_step_ca, run_on_a_terminal, secret_certificates, secret_has_private_key, vault_snapshot


def _pfx(step_ca, password: bytes | None, *, with_root: bool = True) -> bytes:
    key = serialization.load_pem_private_key(step_ca.intermediate_key.read_bytes(), step_ca.password.encode())
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"step", key, step_ca.intermediate,
                                                 [step_ca.root] if with_root else None, encryption)


def test_import_step_ca_pem_files_with_password_file(kvca, kv_clients, step_ca):
    result = kvca("ca", "import", "step", "--cert", str(step_ca.intermediate_crt),
                  "--key", str(step_ca.intermediate_key), "--chain", str(step_ca.root_crt),
                  "--password-file", str(step_ca.password_file))
    assert result.code == 0, result.err
    assert "CN=Smallstep Test Intermediate CA,O=Smallstep Test" in result.out
    assert "origin:              imported" in result.out
    assert "exportable by nature" in result.out  # the user is told the key has lived outside the vault

    cert = kv_clients.certificates.get_certificate("step")
    assert cert.properties.tags == {"kvca-role": "intermediate", "kvca-policy": ANY}
    assert x509.load_der_x509_certificate(bytes(cert.cer)) == step_ca.intermediate
    secret = kv_clients.secrets.get_secret("step")
    assert secret_certificates(secret.properties.content_type, secret.value) == [step_ca.intermediate, step_ca.root]
    assert secret_has_private_key(secret.properties.content_type, secret.value)
    # `ca import` never makes a NAME-root: the root's key stays where it is.
    assert [p.name for p in kv_clients.certificates.list_properties_of_certificates()] == ["step"]


@pytest.mark.parametrize("kind, expected", [("rsa-3072", "RSA 3072"), ("ec-p384", "EC P-384")])
def test_import_other_key_types_keeps_the_key_type_in_the_vault_policy(kvca, kv_clients, tmp_path, kind,
                                                                      expected):
    from cryptography.hazmat.primitives.asymmetric import rsa

    new_key = (lambda: rsa.generate_private_key(65537, 3072)) if kind.startswith("rsa") \
        else (lambda: ec.generate_private_key(ec.SECP384R1()))
    ca = make_step_ca(tmp_path / "step", new_key=new_key)
    result = kvca("--json", "ca", "import", "other", "--cert", str(ca.intermediate_crt), "--key",
                  str(ca.intermediate_key), "--chain", str(ca.root_crt), "--password-file", str(ca.password_file))
    assert result.code == 0, result.err
    assert json.loads(result.out)["key"] == expected
    policy = kv_clients.certificates.get_certificate_policy("other")
    if kind.startswith("rsa"):
        assert (policy.key_type, policy.key_size) == ("RSA", 3072)
    else:
        assert (policy.key_type, policy.key_curve_name) == ("EC", "P-384")


def test_import_pfx_with_password(kvca, kv_clients, step_ca, tmp_path):
    (tmp_path / "ca.pfx").write_bytes(_pfx(step_ca, b"pfx-secret"))
    (tmp_path / "pw").write_text("pfx-secret\n")
    result = kvca("--json", "ca", "import", "step", "--pfx", str(tmp_path / "ca.pfx"),
                  "--password-file", str(tmp_path / "pw"))
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["subject"] == "CN=Smallstep Test Intermediate CA,O=Smallstep Test"
    assert body["chain"] == ["CN=Smallstep Test Root CA,O=Smallstep Test"] and body["path_length"] == 0
    assert body["key"] == "EC P-256" and body["key_exportable"] is True
    assert kv_clients.certificates.get_certificate("step").properties.tags == {"kvca-role": "intermediate", "kvca-policy": ANY}


def test_import_cert_file_holding_the_chain_needs_no_chain_file(kvca, kv_clients, step_ca, tmp_path):
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(step_ca.intermediate_crt.read_bytes() + step_ca.root_crt.read_bytes())
    result = kvca("ca", "import", "step", "--cert", str(bundle), "--key", str(step_ca.intermediate_key),
                  "--password-file", str(step_ca.password_file))
    assert result.code == 0, result.err
    assert "root:                CN=Smallstep Test Root CA" in result.out


def _leaf_with_key(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-a-ca.example.com")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "leaf.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


def _ca_with_malformed_basic_constraints() -> bytes:
    """A CA certificate whose basicConstraints value is not a SEQUENCE (ASN.1 NULL instead):
    cryptography parses extensions lazily, so this used to surface as a bare ValueError."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Broken CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x05\x00"), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("case, code, message", [
    ("wrong-password", 2, "CA 'step': cannot decrypt the key file: wrong password"),
    ("no-password", 2, "CA 'step': key file is encrypted and no password was given"),
    ("malformed-cert", 2, "CA 'step': certificate file holds no PEM 'CERTIFICATE' block and is not a DER certificate"),
    ("truncated-cert", 2, "CA 'step': certificate file is not valid PEM"),
    ("key-of-another-cert", 2, "CA 'step': the private key does not belong to the certificate"),
    ("malformed-pfx", 2, "CA 'step': cannot read the PFX: wrong password or not a PKCS#12 file"),
    ("wrong-pfx-password", 2, "CA 'step': cannot read the PFX: wrong password or not a PKCS#12 file"),
    ("not-a-ca", 2, "is not a CA certificate"),
    ("stranger-in-chain", 2, "is not an issuer of"),
    ("malformed-extension", 2, "CA 'step': certificate file: certificate 'CN=Broken CA' has a malformed extension"),
    ("password-file-too-big", 2, "is more than 1048576 bytes"),
    ("missing-file", 2, "does not exist"),
    ("pfx-and-pem", 2, "give either --pfx or --cert/--key, not both"),
    ("key-without-cert", 2, "give --pfx FILE, or --cert FILE and --key FILE"),
])
def test_import_bad_input_exits_nonzero_with_one_line_and_leaves_the_vault_unchanged(
        kvca, kv_clients, step_ca, tmp_path, case, code, message):
    kvca("ca", "create", "other", "--subject", "CN=Other CA")  # the vault is not empty
    before = vault_snapshot(kv_clients)
    wrong_pw = tmp_path / "wrong-pw"
    wrong_pw.write_text("not the password\n")
    cert, key, pw = str(step_ca.intermediate_crt), str(step_ca.intermediate_key), str(step_ca.password_file)
    if case == "wrong-password":
        argv = ["--cert", cert, "--key", key, "--password-file", str(wrong_pw)]
    elif case == "no-password":
        argv = ["--cert", cert, "--key", key]  # stdin is not a terminal here: no prompt
    elif case == "malformed-cert":
        (tmp_path / "bad.crt").write_text("hello, I am not a certificate\n")
        argv = ["--cert", str(tmp_path / "bad.crt"), "--key", key, "--password-file", pw]
    elif case == "truncated-cert":
        text = step_ca.intermediate_crt.read_text()
        (tmp_path / "cut.crt").write_text(text[: len(text) // 2] + "\n-----END CERTIFICATE-----\n")
        argv = ["--cert", str(tmp_path / "cut.crt"), "--key", key, "--password-file", pw]
    elif case == "key-of-another-cert":
        argv = ["--cert", str(step_ca.root_crt), "--key", key, "--password-file", pw]
    elif case == "malformed-pfx":
        (tmp_path / "bad.pfx").write_bytes(b"\x30\x82garbage" * 10)
        argv = ["--pfx", str(tmp_path / "bad.pfx")]
    elif case == "wrong-pfx-password":
        (tmp_path / "ca.pfx").write_bytes(_pfx(step_ca, b"right"))
        argv = ["--pfx", str(tmp_path / "ca.pfx"), "--password-file", str(wrong_pw)]
    elif case == "not-a-ca":
        _leaf_with_key(tmp_path)
        argv = ["--cert", str(tmp_path / "leaf.crt"), "--key", str(tmp_path / "leaf.key")]
    elif case == "stranger-in-chain":
        _leaf_with_key(tmp_path)
        argv = ["--cert", cert, "--key", key, "--password-file", pw, "--chain", str(tmp_path / "leaf.crt")]
    elif case == "malformed-extension":
        (tmp_path / "broken.crt").write_bytes(_ca_with_malformed_basic_constraints())
        argv = ["--cert", str(tmp_path / "broken.crt"), "--key", key, "--password-file", pw]
    elif case == "password-file-too-big":
        (tmp_path / "huge").write_bytes(b"x" * (1024 * 1024 + 1))
        argv = ["--cert", cert, "--key", key, "--password-file", str(tmp_path / "huge")]
    elif case == "missing-file":
        argv = ["--cert", str(tmp_path / "nope.crt"), "--key", key, "--password-file", pw]
    elif case == "pfx-and-pem":
        argv = ["--pfx", str(tmp_path / "x.pfx"), "--cert", cert]
    else:
        argv = ["--key", key]
    result = kvca("ca", "import", "step", *argv)
    assert result.code == code
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("kvca: error: ")
    assert message in result.err
    assert "Traceback" not in result.err and "PRIVATE KEY" not in result.err + result.out
    assert vault_snapshot(kv_clients) == before


def test_import_over_an_existing_ca_is_refused(kvca, kv_clients, step_ca):
    argv = ["ca", "import", "step", "--cert", str(step_ca.intermediate_crt), "--key",
            str(step_ca.intermediate_key), "--chain", str(step_ca.root_crt), "--password-file",
            str(step_ca.password_file)]
    assert kvca(*argv).code == 0
    before = vault_snapshot(kv_clients)
    again = kvca(*argv)
    assert again.code == 1 and "CA 'step': already exists in the vault" in again.err
    assert vault_snapshot(kv_clients) == before


def test_import_asks_for_the_key_password_on_a_terminal_without_echo(cli_env, kv_clients, step_ca, tmp_path):
    code, text = run_on_a_terminal(
        ["ca", "import", "step", "--cert", str(step_ca.intermediate_crt), "--key", str(step_ca.intermediate_key),
         "--chain", str(step_ca.root_crt)], cli_env, tmp_path,
        answers={f"password for {step_ca.intermediate_key}: ": step_ca.password})
    assert code == 0, text
    assert step_ca.password not in text  # getpass turned the echo off
    assert kv_clients.certificates.get_certificate("step").properties.tags == {"kvca-role": "intermediate", "kvca-policy": ANY}


def test_import_asks_for_the_pfx_password_on_a_terminal(cli_env, kv_clients, step_ca, tmp_path):
    (tmp_path / "ca.pfx").write_bytes(_pfx(step_ca, b"pfx-secret"))
    code, text = run_on_a_terminal(["ca", "import", "step", "--pfx", str(tmp_path / "ca.pfx")], cli_env, tmp_path,
                                   answers={"password for ": "pfx-secret"})
    assert code == 0, text
    assert "pfx-secret" not in text
    assert kv_clients.certificates.get_certificate("step").properties.tags == {"kvca-role": "intermediate", "kvca-policy": ANY}


def test_import_of_a_ca_key_the_signing_engine_refuses_is_refused_before_any_write(kvca, kv_clients, tmp_path):
    ca = make_step_ca(tmp_path / "k1", new_key=lambda: ec.generate_private_key(ec.SECP256K1()))
    result = kvca("ca", "import", "k1", "--cert", str(ca.intermediate_crt), "--key", str(ca.intermediate_key),
                  "--chain", str(ca.root_crt), "--password-file", str(ca.password_file))
    assert result.code == 2  # the files are refused before the vault is opened
    assert result.err_lines == ["kvca: error: CA 'k1': check-key: EC curve 'secp256k1' is not supported (use "
                                "P-256, P-384 or P-521; P-256K/secp256k1 is not accepted by TLS clients)"]
    assert vault_snapshot(kv_clients) == {}


def test_import_of_a_ca_whose_name_holds_rfc4514_special_characters(kvca, kv_clients, tmp_path):
    from kvca_core.signing import parse_subject

    ca = make_step_ca(tmp_path / "odd", name='#1 A+B "C"; D')
    result = kvca("ca", "import", "odd", "--cert", str(ca.intermediate_crt), "--key", str(ca.intermediate_key),
                  "--chain", str(ca.root_crt), "--password-file", str(ca.password_file))
    assert result.code == 0, result.err
    # The policy's subject, read back the way kvca reads subjects, is the certificate's subject.
    assert parse_subject(kv_clients.certificates.get_certificate_policy("odd").subject) == ca.intermediate.subject
