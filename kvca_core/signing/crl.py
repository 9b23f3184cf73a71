"""Certificate revocation lists: RFC 5280 section 5 profile, built here, signed by a Signer.

Pure like the rest of the signing engine: the revocation records come in as
values, the CA's key signs through the same `Signer` as leaves (a
`RemoteSigner` keeps it in Key Vault; see signers.py for how the TBS is made).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from cryptography import x509

from kvca_core.errors import InvalidRequest
from kvca_core.signing.signers import Signer

# RFC 5280 5.3.1 CRLReason, in its own spelling. Left out on purpose:
# certificateHold (kvca has no "unhold"; a hold that is never released is a
# revocation with a misleading reason), removeFromCRL (delta CRLs only) and
# aACompromise (attribute certificates).
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}
_BY_LOWER = {name.lower(): name for name in REASONS}

# A CRL is valid for a week and re-signed once it is a day old (on a revocation at
# once): clients that cache it until nextUpdate see a revocation within a day at
# worst, and six missed re-signings still leave a valid CRL in place (a CRL past
# its nextUpdate fails every client that checks, nginx and OpenSSL included).
CRL_VALIDITY = dt.timedelta(days=7)
CRL_REFRESH = dt.timedelta(days=1)
# thisUpdate backdated like notBefore (issue.BACKDATE): clients slightly behind must not see a future CRL.
CRL_BACKDATE = dt.timedelta(minutes=5)


def parse_reason(text: str) -> str:
    """`keyCompromise`, `key-compromise`, `KEY_COMPROMISE` -> RFC 5280's spelling, or InvalidRequest."""
    key = str(text).strip().replace("-", "").replace("_", "").lower()
    if key not in _BY_LOWER:
        raise InvalidRequest(f"revocation reason {str(text)[:60]!r} is not one of {', '.join(REASONS)} "
                             f"(RFC 5280 5.3.1)", subject="revocation")
    return _BY_LOWER[key]


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: dt.datetime
    reason: str  # a key of REASONS


def crl_number(signed_at: dt.datetime, previous: int | None = None) -> int:
    """The CRL number: microseconds since the epoch of the signing time, and above `previous`.

    RFC 5280 5.2.3 wants it monotonically increasing per CA across every
    instance that signs. Key Vault has no compare-and-swap, so a counter kept
    in the vault would let two instances hand out the same number for
    different lists; a number derived from the signing time needs no shared
    state and increases as long as the instances' clocks do (Azure hosts are
    NTP-synchronised). `previous` (the number of the copy being replaced)
    guards against a clock that stepped back. It fits the 20 octets 5.2.3 allows.
    """
    number = int(signed_at.timestamp() * 1_000_000)
    return max(number, (previous or 0) + 1)


def crl_builder(issuer: x509.Certificate, entries: Iterable[RevokedEntry], *, number: int,
                this_update: dt.datetime,
                next_update: dt.datetime) -> x509.CertificateRevocationListBuilder:
    """A v2 CRL (5.1.2.1) for `issuer`'s certificates: issuer = its subject, the AKI
    from its SKI (5.2.1, MUST), the CRL number (5.2.3, MUST, non-critical) and one
    entry per serial with its reason code (5.3.1; absent for unspecified, as the
    RFC asks)."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.subject)
               .last_update(this_update)
               .next_update(next_update)
               .add_extension(aki, critical=False)
               .add_extension(x509.CRLNumber(number), critical=False))
    seen: set[int] = set()
    for entry in sorted(entries, key=lambda e: (e.revoked_at, e.serial)):
        if entry.serial in seen:  # one entry per serial (5.1.2.6), the earliest record wins
            continue
        seen.add(entry.serial)
        revoked = (x509.RevokedCertificateBuilder()
                   .serial_number(entry.serial)
                   .revocation_date(entry.revoked_at))
        if entry.reason != "unspecified":
            revoked = revoked.add_extension(x509.CRLReason(REASONS[entry.reason]), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder


async def sign_crl(issuer: x509.Certificate, signer: Signer, entries: Iterable[RevokedEntry], *,
                   now: dt.datetime, previous_number: int | None = None,
                   validity: dt.timedelta = CRL_VALIDITY) -> x509.CertificateRevocationList:
    """Build and sign `issuer`'s CRL in one pass (one signature, whatever the entry count)."""
    this_update = now - CRL_BACKDATE
    builder = crl_builder(issuer, entries, number=crl_number(now, previous_number),
                          this_update=this_update, next_update=now + validity)
    return await signer.sign_crl(builder)
