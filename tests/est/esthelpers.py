"""Helpers for the device-enrollment tests: a device that makes its own key with openssl in a folder of
its own (its key file is given to openssl, curl and mosquitto and to nothing else), the ledger's
contents, and the chain checks (`openssl verify`, pkilint)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

FLEET = "fleet"
# The fleet CA's policy: external CSRs on (client profile only), a device ID may be a CN, names
# under fleet.example; the defaults for the rest.
FLEET_POLICY = {"external_csrs": True, "external_profiles": ["client"],
                "cn_forms": ["dns-name", "ip-address", "device-id"], "allowed_domains": ["fleet.example"],
                "allow_uri": True}


def openssl(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    result = subprocess.run(["openssl", *args], cwd=cwd, input=input, capture_output=True, timeout=60)
    assert result.returncode == 0, (args, result.stderr.decode(errors="replace"))
    return result.stdout


@dataclass
class Device:
    """A device's own folder: `device.key` made there by openssl, never read by anything but the
    programs the device runs (openssl, curl, mosquitto_pub)."""

    folder: Path
    device_id: str

    @property
    def key(self) -> Path:
        return self.folder / "device.key"

    @classmethod
    def make(cls, root: Path, device_id: str, *, key: str = "ec") -> "Device":
        folder = root / device_id
        folder.mkdir(parents=True)
        folder.chmod(0o700)
        device = cls(folder, device_id)
        algorithm = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" \
            else ["-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{key.removeprefix('rsa-') or 2048}"]
        openssl("genpkey", *algorithm, "-out", str(device.key), cwd=folder)
        device.key.chmod(0o600)
        return device

    def csr(self, *, subject: str | None = None, sans: Sequence[str] = (), name: str = "device.csr") -> bytes:
        """`openssl req` with the device's key: PEM, subject /CN=<device id> unless given, SANs as
        openssl spells them (DNS:..., URI:...)."""
        args = ["req", "-new", "-key", str(self.key), "-subj", subject or f"/CN={self.device_id}", "-out", name]
        if sans:
            args += ["-addext", "subjectAltName=" + ",".join(sans)]
        openssl(*args, cwd=self.folder)
        return (self.folder / name).read_bytes()

    def csr_file(self, **kwargs) -> Path:
        self.csr(name="device.csr", **kwargs)
        return self.folder / "device.csr"

    def csr_der_base64(self, **kwargs) -> bytes:
        """The CSR as RFC 7030 4.2.1 sends it: base64 of the DER, in lines (`openssl base64` wraps at 64)."""
        self.csr(name="device.csr", **kwargs)
        der = openssl("req", "-in", "device.csr", "-outform", "DER", cwd=self.folder)
        return openssl("base64", cwd=self.folder, input=der)

    def public_key_pem(self) -> bytes:
        return openssl("pkey", "-in", str(self.key), "-pubout", cwd=self.folder)


async def ledger_rows(ctx) -> list:
    """Every certificate record the ledger holds: compared before and after a refusal."""
    return [record async for record in ctx.ledger.certificates()]


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certificates)


def openssl_verify(leaf: x509.Certificate, chain: Sequence[x509.Certificate], root: x509.Certificate, tmp: Path,
                   *, purpose: str | None = "sslclient", at: int | None = None) -> subprocess.CompletedProcess:
    """`openssl verify -x509_strict -CAfile root -untrusted intermediates [-purpose ...] leaf`."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "root.pem").write_bytes(pem(root))
    (tmp / "untrusted.pem").write_bytes(pem(*chain))
    (tmp / "leaf.pem").write_bytes(pem(leaf))
    args = ["openssl", "verify", "-x509_strict", "-CAfile", str(tmp / "root.pem"), "-untrusted",
            str(tmp / "untrusted.pem")]
    if purpose:
        args += ["-purpose", purpose]
    if at is not None:
        args += ["-attime", str(at)]
    return subprocess.run([*args, str(tmp / "leaf.pem")], capture_output=True, text=True, timeout=30)


async def revoke_in_ledger(ctx, record, reason: str) -> None:
    """Revoke an external certificate by its CA and serial from the ledger (`kvca revoke --ca --serial`)."""
    from kvca_core import revocation

    result = await revocation.revoke(ctx, reason=reason, ca=record.ca, serial=record.serial)
    assert (result.action, result.serial) == ("revoked", record.serial), result


async def crl_from_ledger(ctx, ca: str) -> bytes:
    """The CA's CRL (PEM) as kvca publishes it, built from the ledger's revocations."""
    from kvca_core import revocation

    return revocation.crl_pem(await revocation.publish_crl(ctx, ca)).encode("ascii")
