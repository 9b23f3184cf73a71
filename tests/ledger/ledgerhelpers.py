"""Real certificates and the records of them, for the ledger tests."""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kvca_core.ledger import CertificateRecord, RevocationRecord
from kvca_core.signing import random_serial

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
_KEY = ec.generate_private_key(ec.SECP256R1())
_ISSUER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ledger Test CA")])


def certificate(serial: int | None = None, *, days: int = 90, cn: str = "device-1.ledger.test") -> x509.Certificate:
    """A leaf with DNS, IP, URI and email names (signed by a throwaway key: the ledger keeps
    certificates, it does not verify them)."""
    sans = x509.SubjectAlternativeName([
        x509.DNSName(cn), x509.IPAddress(ipaddress.ip_address("10.0.0.7")),
        x509.UniformResourceIdentifier("spiffe://ledger.test/device-1"), x509.RFC822Name("ops@ledger.test")])
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(_ISSUER).public_key(_KEY.public_key())
            .serial_number(serial if serial is not None else random_serial())
            .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=days))
            .add_extension(sans, critical=False)
            .sign(_KEY, hashes.SHA256()))


def record(cert: x509.Certificate | None = None, *, ca: str = "rev-ca", location: str = "vault",
           name: str = "device-1", version: str | None = "0123456789abcdef0123456789abcdef",
           requested_by: str = "cli", recorded_at: dt.datetime = NOW) -> CertificateRecord:
    return CertificateRecord.of(cert or certificate(), ca=ca, ca_version="fedcba9876543210fedcba9876543210",
                                profile="server-client", location=location, name=name, version=version,
                                requested_by=requested_by, recorded_at=recorded_at)


def revocation(serial: str, *, ca: str = "rev-ca", reason: str = "keyCompromise", by: str = "alice@contoso",
               at: dt.datetime = NOW) -> RevocationRecord:
    return RevocationRecord(ca=ca, serial=serial, reason=reason, revoked_at=at.replace(microsecond=0),
                            revoked_by=by, recorded_at=at)
