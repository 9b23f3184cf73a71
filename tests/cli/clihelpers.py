"""Helpers for the CLI tests: subprocess runs, `openssl verify`, reading secrets, and a CA made
the way `step ca init` makes one."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from azure.keyvault.certificates import CertificatePolicy as SdkPolicy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_subprocess(argv: list[str], env: dict[str, str], cwd: Path, *, use_script: bool = False,
                   timeout: float = 120) -> Result:
    """`python -m kvca_core ARGS` (or the installed `kvca` script) in a fresh process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KVCA_", "IDENTITY_"))}
    full_env.update(env)
    if use_script:
        command = [str(Path(sys.executable).with_name("kvca"))] + argv
    else:
        command = [sys.executable, "-m", "kvca_core"] + argv
    proc = subprocess.run(command, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_on_a_terminal(argv: list[str], env: dict[str, str], cwd, *,
                      answers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str]:
    """`python -m kvca_core ARGS` on a pseudo-terminal (stdin, stdout, stderr, and its controlling
    terminal, so getpass and rich see a real terminal). `answers`: prompt text -> what to type."""
    import fcntl
    import pty
    import select
    import termios
    import time

    primary, secondary = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KVCA_", "IDENTITY_"))}
    full_env.update(env, TERM="xterm-256color", COLUMNS="160")
    full_env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "kvca_core", *argv], env=full_env, cwd=cwd,
                            stdin=secondary, stdout=secondary, stderr=secondary, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(secondary)
    pending = dict(answers or {})
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    data = os.read(primary, 65536)
                except OSError:  # the terminal closed: the process is done
                    break
                if not data:
                    break
                chunks.append(data)
                text = b"".join(chunks).decode("utf-8", "replace")
                for prompt in [p for p in pending if p in text]:
                    os.write(primary, pending.pop(prompt).encode() + b"\n")
            elif proc.poll() is not None:
                break
    finally:
        os.close(primary)
    return proc.wait(timeout=10), b"".join(chunks).decode("utf-8", "replace")


def openssl_verify(root_pem: str, leaf_pem: str, untrusted_pem: str, tmp: Path,
                   at: dt.datetime | None = None) -> subprocess.CompletedProcess:
    """`openssl verify` of the leaf against the root alone; intermediates only as untrusted.
    `at`: check validity at this moment (the emulator's clock) instead of now."""
    (tmp / "root.pem").write_text(root_pem)
    (tmp / "leaf.pem").write_text(leaf_pem)
    (tmp / "untrusted.pem").write_text(untrusted_pem)
    args = ["openssl", "verify", "-x509_strict", "-CAfile", str(tmp / "root.pem")]
    if at is not None:
        args += ["-attime", str(int(at.timestamp()))]
    if untrusted_pem.strip():
        args += ["-untrusted", str(tmp / "untrusted.pem")]
    return subprocess.run(args + [str(tmp / "leaf.pem")], capture_output=True, text=True)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def secret_has_private_key(content_type: str, value: str) -> bool:
    """Does a certificate's secret hold a private key? (PEM block, or a key bag in the PFX)."""
    if "PRIVATE KEY" in value:
        return True
    if "pkcs12" in (content_type or ""):
        key, _, _ = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
        return key is not None
    return False


def secret_certificates(content_type: str, value: str) -> list[x509.Certificate]:
    if "pkcs12" in (content_type or ""):
        _, cert, extra = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
        return ([cert] if cert else []) + list(extra)
    return x509.load_pem_x509_certificates(value.encode())


def vault_snapshot(kv_clients) -> dict[str, list[tuple[str, bool, dict]]]:
    """Every certificate, pending ones included, with its versions' (id, enabled, tags)."""
    certs = kv_clients.certificates
    snapshot = {}
    for props in certs.list_properties_of_certificates(include_pending=True):
        versions = sorted((v.version or "", bool(v.enabled), dict(v.tags or {}))
                          for v in certs.list_properties_of_certificate_versions(props.name))
        snapshot[props.name] = versions
    return snapshot


@dataclass
class StepCA:
    """What `step ca init --deployment-type standalone` leaves on disk (certs/ and secrets/)."""

    root_crt: Path
    root_key: Path
    intermediate_crt: Path
    intermediate_key: Path
    password_file: Path
    password: str
    root: x509.Certificate
    intermediate: x509.Certificate


def make_step_ca(directory: Path, name: str = "Smallstep Test", new_key=None) -> StepCA:
    """A root and an intermediate as `step ca init` makes them: EC P-256, 10 years, root
    pathlen 1, intermediate pathlen 0, keys as encrypted PKCS#8 PEM. The keys are encrypted
    by `openssl pkcs8 -topk8 -v2 aes-256-cbc` (PBES2, as step's pemutil writes them).
    `new_key`: another key generator (step's `--kty RSA`, say)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    new_key = new_key or (lambda: ec.generate_private_key(ec.SECP256R1()))
    root_key = new_key()
    inter_key = new_key()
    root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                           x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root CA")])
    inter_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Intermediate CA")])

    def ca_cert(subject, key, issuer, issuer_key, path_length):
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(ski, critical=False))
        if issuer_key is not key:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    root = ca_cert(root_name, root_key, root_name, root_key, 1)
    inter = ca_cert(inter_name, inter_key, root_name, root_key, 0)
    certs, secrets = directory / "certs", directory / "secrets"
    certs.mkdir(exist_ok=True)
    secrets.mkdir(exist_ok=True)
    password = "correct horse battery staple"
    password_file = directory / "password.txt"
    password_file.write_text(password + "\n")
    (certs / "root_ca.crt").write_text(pem(root))
    (certs / "intermediate_ca.crt").write_text(pem(inter))
    for key, path in ((root_key, secrets / "root_ca_key"), (inter_key, secrets / "intermediate_ca_key")):
        plain = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        proc = subprocess.run(["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout",
                               f"file:{password_file}", "-out", str(path)], input=plain, capture_output=True)
        assert proc.returncode == 0, proc.stderr.decode()
        assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE" + b" KEY-----")
    return StepCA(certs / "root_ca.crt", secrets / "root_ca_key", certs / "intermediate_ca.crt",
                  secrets / "intermediate_ca_key", password_file, password, root, inter)


def import_exportable_leaf(kv_clients, name: str) -> x509.Certificate:
    """A self-signed certificate with an exportable key imported as a PFX (what `download` takes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.example.com")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=90)).sign(key, hashes.SHA256()))
    pfx = pkcs12.serialize_key_and_certificates(b"x", key, cert, None, serialization.NoEncryption())
    policy = SdkPolicy(issuer_name="Unknown", subject=f"CN={name}.example.com", exportable=True,
                       key_type="EC", key_curve_name="P-256", content_type="application/x-pkcs12")
    kv_clients.certificates.import_certificate(name, pfx, policy=policy)
    return cert
