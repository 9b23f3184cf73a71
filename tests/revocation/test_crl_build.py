"""signing/crl.py on its own: the entry list built in one pass says exactly what the entry-by-entry
build said, the CRL number is the caller's, and the RFC 5280 profile holds (pkilint)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from kvca_core.errors import InvalidRequest
from kvca_core.signing import LocalSigner, create_root
from kvca_core.signing.crl import (
    CRL_BACKDATE,
    MAX_CRL_NUMBER,
    REASONS,
    RevokedEntry,
    crl_builder,
    crl_number,
    revoked_certificates,
    sign_crl,
)

from revhelpers import pkilint_crl_findings

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def issuer():
    key = ec.generate_private_key(ec.SECP256R1())
    cert = asyncio.run(create_root("CN=CRL Build CA", LocalSigner(key), years=5, now=NOW - dt.timedelta(days=1)))
    return cert, key


def _entries() -> list[RevokedEntry]:
    """Every reason, out of order, with a serial revoked twice (the earlier record must win) and
    two revoked in the same second (ordered by serial)."""
    reasons = list(REASONS)
    entries = [RevokedEntry(0x1000 + i, NOW - dt.timedelta(hours=i), reasons[i % len(reasons)]) for i in range(20)]
    entries.append(RevokedEntry(0x1003, NOW - dt.timedelta(days=3), "keyCompromise"))  # earlier: wins
    entries.append(RevokedEntry(0x1004, NOW, "superseded"))  # later: dropped
    entries.append(RevokedEntry(0x0fff, NOW - dt.timedelta(hours=5), "cACompromise"))  # same second as 0x1005
    return entries[::-1]


def _entry_by_entry(issuer: x509.Certificate, entries: list[RevokedEntry], number: int):
    """The build as it was: the same entries, one `add_revoked_certificate` each (quadratic in cryptography)."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(NOW - CRL_BACKDATE).next_update(NOW + dt.timedelta(days=7))
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                   issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value), critical=False)
               .add_extension(x509.CRLNumber(number), critical=False))
    for revoked in revoked_certificates(entries):
        builder = builder.add_revoked_certificate(revoked)
    return builder


async def test_one_pass_build_lists_what_the_entry_by_entry_build_listed(issuer):
    cert, key = issuer
    entries = _entries()
    crl = await sign_crl(cert, LocalSigner(key), entries, now=NOW, number=42)
    reference = _entry_by_entry(cert, entries, 42).sign(key, hashes.SHA256())
    assert crl.tbs_certlist_bytes == reference.tbs_certlist_bytes  # byte for byte, entries and order
    assert crl.is_signature_valid(key.public_key())
    # One entry per serial, in revocation order (same second: by serial).
    listed = [(r.revocation_date_utc, r.serial_number) for r in crl]
    assert listed == sorted(listed) and len({serial for _, serial in listed}) == len(listed) == 21
    won = crl.get_revoked_certificate_by_serial_number(0x1003)
    assert won.revocation_date_utc == NOW - dt.timedelta(days=3)
    assert won.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    kept = crl.get_revoked_certificate_by_serial_number(0x1004)
    assert kept.revocation_date_utc == NOW - dt.timedelta(hours=4)
    unspecified = crl.get_revoked_certificate_by_serial_number(0x1000)  # reasons[0]: no reason code
    assert len(unspecified.extensions) == 0
    assert pkilint_crl_findings(crl.public_bytes(Encoding.DER)) == []


async def test_the_build_never_adds_entries_one_at_a_time(issuer, monkeypatch):
    """The quadratic path stays closed: a build of many entries never calls add_revoked_certificate."""
    cert, key = issuer

    def refuse(self, revoked):
        raise AssertionError("add_revoked_certificate copies the whole list on every call")

    monkeypatch.setattr(x509.CertificateRevocationListBuilder, "add_revoked_certificate", refuse)
    entries = [RevokedEntry(i + 1, NOW - dt.timedelta(seconds=i), "superseded") for i in range(3000)]
    crl = await sign_crl(cert, LocalSigner(key), entries, now=NOW, number=7)
    assert len(crl) == 3000 and crl.is_signature_valid(key.public_key())


async def test_the_crl_number_is_the_callers(issuer):
    cert, key = issuer
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(await sign_crl(cert, LocalSigner(key), [], now=NOW, number=5)) == 5
    assert number(await sign_crl(cert, LocalSigner(key), [], now=NOW, number=MAX_CRL_NUMBER)) == MAX_CRL_NUMBER
    # Callers that give none keep the clock-derived number, above the previous copy's.
    clock_number = crl_number(NOW)
    assert number(await sign_crl(cert, LocalSigner(key), [], now=NOW)) == clock_number
    assert number(await sign_crl(cert, LocalSigner(key), [], now=NOW, previous_number=clock_number)) == \
        clock_number + 1


@pytest.mark.parametrize("bad", [-1, MAX_CRL_NUMBER + 1, 2**200])
def test_a_crl_number_beyond_20_octets_is_refused(issuer, bad):
    cert, _ = issuer
    with pytest.raises(InvalidRequest, match="RFC 5280 5.2.3"):
        crl_builder(cert, [], number=bad, this_update=NOW, next_update=NOW + dt.timedelta(days=1))
