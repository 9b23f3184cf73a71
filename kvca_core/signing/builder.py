"""The one certificate builder: root, intermediate and leaf differ only in the
role's extensions, and every one of those is written out here.

Each KeyUsage flag is spelled out and each `critical` decided on purpose
(trustme does the same in a page). References: RFC 5280 section 4.2.1.x.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from dataclasses import dataclass
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID

from kvca_core.signing.policy import Profile


class Role(str, enum.Enum):
    ROOT = "root"
    INTERMEDIATE = "intermediate"
    LEAF = "leaf"


@dataclass(frozen=True)
class IssuanceUrls:
    """Optional URLs from configuration (KVCA_CRL_URL, KVCA_AIA_URL) written into leaves."""

    crl: str | None = None
    aia: str | None = None
    ocsp: str | None = None  # KVCA_OCSP_URL/<CA>: the responder (revocation.py), RFC 5280 4.2.2.1


def random_serial() -> int:
    """A positive serial of 159 random bits: at least 64 bits of CSPRNG output
    (CA/B Forum BR 7.1) and at most 20 octets once DER-encoded with its sign
    bit (RFC 5280 4.1.2.2)."""
    while True:
        serial = secrets.randbits(159)
        if serial >= 1 << 64:  # never a short (or zero) serial, however unlikely
            return serial


def key_usage_for(role: Role, public_key) -> x509.KeyUsage:
    """RFC 5280 4.2.1.3. Every flag written out on purpose."""
    if role is not Role.LEAF:
        # A CA signs certificates and CRLs, nothing else (pathLen and this are what clients check).
        return x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                             encipher_only=False, decipher_only=False)
    # RSA leaves: digitalSignature (ECDHE/TLS 1.3) and keyEncipherment (TLS 1.2 RSA key
    # transport, still offered by old clients). EC leaves: digitalSignature only;
    # keyAgreement would be for static ECDH, which no TLS suite kvca serves uses.
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def build(*, role: Role, subject: x509.Name, issuer: x509.Name, public_key, issuer_public_key,
          issuer_ski: x509.SubjectKeyIdentifier | None, not_before: dt.datetime, not_after: dt.datetime,
          path_length: int | None = None, profile: Profile | None = None,
          sans: Sequence[x509.GeneralName] = (), permitted_dns: Sequence[str] = (),
          urls: IssuanceUrls = IssuanceUrls(), serial: int | None = None) -> x509.CertificateBuilder:
    """The unsigned certificate for any role. Inputs are already checked."""
    if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise TypeError("public_key must be RSA or EC")  # checked earlier; a programming error if reached
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    if issuer_ski is None:
        issuer_ski = x509.SubjectKeyIdentifier.from_public_key(issuer_public_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial if serial is not None else random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # basicConstraints: critical in every role. RFC 5280 4.2.1.9 requires it for
        # CAs; for leaves CA:FALSE critical stops any client from reading it as a CA.
        .add_extension(x509.BasicConstraints(ca=role is not Role.LEAF,
                                             path_length=None if role is Role.LEAF else path_length),
                       critical=True)
        # keyUsage: critical (RFC 5280 4.2.1.3 SHOULD, CA/B BR 7.1.2 MUST for CAs).
        .add_extension(key_usage_for(role, public_key), critical=True)
        # SKI: MUST be non-critical (RFC 5280 4.2.1.2); method 1 (SHA-1 of the key bits).
        .add_extension(ski, critical=False)
        # AKI: MUST be non-critical (4.2.1.1); the issuer's own SKI so chain building
        # matches the key even for CAs imported from elsewhere (step ca init).
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False)
    )
    if role is Role.LEAF:
        profile = profile or Profile.SERVER
        # EKU non-critical: RFC 5280 4.2.1.12 allows either; CA/B BR 7.1.2.7 says
        # non-critical, and some clients refuse critical EKUs.
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(profile.ekus)), critical=False)
        if sans:
            # SAN is critical exactly when the subject is empty (RFC 5280 4.2.1.6).
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=len(subject) == 0)
        if urls.crl:
            builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(urls.crl)], relative_name=None, reasons=None,
                crl_issuer=None)]), critical=False)  # 4.2.1.13: SHOULD be non-critical
        access = [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(url))
                  for url in (urls.ocsp,) if url]
        access += [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                          x509.UniformResourceIdentifier(url)) for url in (urls.aia,) if url]
        if access:
            builder = builder.add_extension(x509.AuthorityInformationAccess(access),
                                            critical=False)  # 4.2.2.1: MUST be non-critical
    if role is Role.INTERMEDIATE and permitted_dns:
        # nameConstraints: MUST be critical (RFC 5280 4.2.1.10).
        builder = builder.add_extension(x509.NameConstraints(
            permitted_subtrees=[x509.DNSName(d) for d in permitted_dns], excluded_subtrees=None), critical=True)
    return builder
