"""A tiny test CA that signs the emulator's CSRs, and checks used by the emulator tests."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID



class TestCA:
    """A root that signs leaves from CSRs (only what the emulator tests need)."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "kvemulator test root") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def sign(self, public_key, subject: x509.Name, *, days: int = 90,
             not_before: dt.datetime | None = None) -> x509.Certificate:
        nb = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(nb).not_valid_after(nb + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))

    def sign_csr(self, csr_der: bytes, **kwargs) -> x509.Certificate:
        csr = x509.load_der_x509_csr(csr_der)
        assert csr.is_signature_valid
        return self.sign(csr.public_key(), csr.subject, **kwargs)
