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
    """The CRL number kvca used before the ledger numbered CRLs: microseconds since the epoch of
    the signing time, and above `previous`. Still the number of a CRL whose caller gives none,
    and the floor the ledger starts its numbering from (a CA's first ledger-numbered CRL must be
    above every number it published before; kvca_core/ledger says how).

    Derived from the clock, it needs no shared state and increases as long as the instances'
    clocks do; `previous` (the number of the copy being replaced) guards against a clock that
    stepped back. It fits the 20 octets RFC 5280 5.2.3 allows.
    """
    number = int(signed_at.timestamp() * 1_000_000)
    return max(number, (previous or 0) + 1)


# RFC 5280 5.2.3: "CRL issuers MUST NOT use CRLNumber values longer than 20 octets" (a DER
# INTEGER, so the top bit of the first octet is the sign: below 2**159).
MAX_CRL_NUMBER = 2**159 - 1


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The CRL's AKI (5.2.1, MUST): from the issuer's SKI, or its key where it has none."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]


def revoked_certificates(entries: Iterable[RevokedEntry]) -> list[x509.RevokedCertificate]:
    """One entry per serial (5.1.2.6), the earliest record winning, in revocation order, each
    with its reason code (5.3.1; absent for unspecified, as the RFC asks)."""
    seen: set[int] = set()
    revoked: list[x509.RevokedCertificate] = []
    for entry in sorted(entries, key=lambda e: (e.revoked_at, e.serial)):
        if entry.serial in seen:
            continue
        seen.add(entry.serial)
        one = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
        if entry.reason != "unspecified":
            one = one.add_extension(x509.CRLReason(REASONS[entry.reason]), critical=False)
        revoked.append(one.build())
    return revoked


def crl_builder(issuer: x509.Certificate, entries: Iterable[RevokedEntry], *, number: int,
                this_update: dt.datetime,
                next_update: dt.datetime) -> x509.CertificateRevocationListBuilder:
    """A v2 CRL (5.1.2.1) for `issuer`'s certificates: issuer = its subject, the AKI (5.2.1),
    the CRL number (5.2.3, MUST, non-critical) and the entries of `revoked_certificates`.

    The entry list goes into the builder's constructor in one piece. Its
    `add_revoked_certificate` returns a new builder holding a copy of the list plus one
    (cryptography's x509/base.py, `[*self._revoked_certificates, revoked_certificate]`), so
    adding N entries one by one copies O(N^2) references: 50,000 entries took seconds. The
    constructor keeps the list it is given, and the setters below pass it on as it is."""
    if not 0 <= number <= MAX_CRL_NUMBER:
        raise InvalidRequest(f"CRL number {number} is outside 0..2**159-1 (RFC 5280 5.2.3: at most 20 octets)",
                             subject=f"CRL of '{issuer.subject.rfc4514_string()}'")
    return (x509.CertificateRevocationListBuilder(revoked_certificates=revoked_certificates(entries))
            .issuer_name(issuer.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(_aki(issuer), critical=False)
            .add_extension(x509.CRLNumber(number), critical=False))


async def sign_crl(issuer: x509.Certificate, signer: Signer, entries: Iterable[RevokedEntry], *,
                   now: dt.datetime, number: int | None = None, previous_number: int | None = None,
                   validity: dt.timedelta = CRL_VALIDITY) -> x509.CertificateRevocationList:
    """Build and sign `issuer`'s CRL in one pass (one signature, whatever the entry count).

    `number`: the CRL number, which the caller allocates (the ledger's `next_crl_number`,
    strictly increasing across every instance that signs). Without one, the clock-derived
    `crl_number(now, previous_number)` of the callers that predate the ledger."""
    if number is None:
        number = crl_number(now, previous_number)
    builder = crl_builder(issuer, entries, number=number, this_update=now - CRL_BACKDATE,
                          next_update=now + validity)
    return await signer.sign_crl(builder)
