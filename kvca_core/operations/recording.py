"""The ledger's side of signing: every certificate kvca signs is recorded before it is merged into
the vault or handed to anyone (kvca_core/ledger/), so a certificate the ledger does not hold is
never released, and revocation, CRLs and OCSP answer from the ledger alone."""

from __future__ import annotations

from cryptography import x509

from kvca_core import clock, telemetry
from kvca_core.errors import ConfigurationError
from kvca_core.ledger import CertificateRecord


async def record_issued(ctx, certificate: x509.Certificate, *, ca: str, ca_version: str | None, profile: str,
                        location: str, name: str, version: str | None = None) -> CertificateRecord:
    """Record `certificate` as signed by CA `ca` (its version `ca_version`) for `name` (`location`:
    ledger.VAULT for a Key Vault certificate, ledger.EXTERNAL for a device's or service's own key).
    Idempotent: the same certificate recorded again is the stored record. Raises when the ledger
    cannot take it, and then the caller releases nothing."""
    if ctx.ledger is None:
        raise ConfigurationError("no ledger: kvca releases no certificate it has not recorded",
                                 subject="settings", hint="set KVCA_LEDGER_TABLE_URL")
    record = CertificateRecord.of(certificate, ca=ca, ca_version=ca_version or "unknown", profile=profile,
                                  location=location, name=name, version=version,
                                  requested_by=telemetry.actor(), recorded_at=clock.now())
    return await ctx.ledger.record_certificate(record)
