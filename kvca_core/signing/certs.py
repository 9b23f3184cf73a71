"""Questions every layer asks of a certificate: same key? issued by? self-signed? a CA?

One copy for the signing engine, the CA cache (`kvca_core.authority`) and the CA
commands (`kvca_core.ca`). Certificates reaching these may come from the vault
or a user's file (untrusted): each answers False for one it cannot evaluate
(malformed extension, unsupported key or algorithm) rather than raising.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kvca_core.signing.signers import verify_signature

_UNEVALUABLE = (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm)


def same_public_key(a, b) -> bool:
    """Two public keys are the same key (compared as SubjectPublicKeyInfo DER)."""
    fmt = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    try:
        return a.public_bytes(*fmt) == b.public_bytes(*fmt)
    except (AttributeError, *_UNEVALUABLE):
        return False


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """`issuer` is named as the issuer and its key made the signature."""
    try:
        if certificate.issuer != issuer.subject:
            return False
        verify_signature(certificate, issuer.public_key())
        return True
    except _UNEVALUABLE:
        return False


def is_self_signed(certificate: x509.Certificate) -> bool:
    return issued_by(certificate, certificate)


def is_ca_certificate(certificate: x509.Certificate) -> bool:
    """basicConstraints CA:TRUE, and keyCertSign when a keyUsage is present (RFC 5280 4.2.1.3, 4.2.1.9)."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    except ValueError:  # a malformed extension
        return False
    if not constraints.ca:
        return False
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except x509.ExtensionNotFound:
        return True
