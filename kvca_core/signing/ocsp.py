"""OCSP (RFC 6960): read a request, build the answer for one CA, sign it with the delegated responder.

Pure: the revocation record comes in as a value (the same records the CRL lists),
the responder's key signs through a `Signer` (a `RemoteSigner` keeps it in Key Vault).
"""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from kvca_core.errors import InvalidRequest
from kvca_core.signing.crl import REASONS, RevokedEntry
from kvca_core.signing.signers import Signer, public_key_bits

MAX_REQUEST_BYTES = 16 * 1024  # one request of a few certificates is a few hundred bytes
# How long a client may cache an answer (nextUpdate, RFC 6960 2.4): an hour, so a revocation
# reaches OCSP clients within the hour even when they cache, and the vault is asked rarely.
ANSWER_VALIDITY = dt.timedelta(hours=1)
ANSWER_BACKDATE = dt.timedelta(minutes=5)  # clock skew, as for certificates and CRLs


def parse_request(der: bytes) -> ocsp.OCSPRequest:
    """A DER OCSPRequest (untrusted), or InvalidRequest. cryptography reads exactly one
    certificate per request and refuses more, which kvca then answers malformedRequest."""
    if not isinstance(der, (bytes, bytearray)) or not der or len(der) > MAX_REQUEST_BYTES:
        raise InvalidRequest(f"an OCSP request is 1 to {MAX_REQUEST_BYTES} bytes of DER", subject="OCSP")
    try:
        request = ocsp.load_der_ocsp_request(bytes(der))
        request.serial_number  # noqa: B018 - parsed lazily; a malformed request raises here
        request.extensions  # noqa: B018
        return request
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"the OCSP request cannot be parsed ({type(exc).__name__})", subject="OCSP") from None


def asks_about(request: ocsp.OCSPRequest, issuer: x509.Certificate) -> bool:
    """Whether the request's CertID names `issuer` (name hash and key hash, with its hash)."""
    name = hashlib.new(request.hash_algorithm.name, issuer.subject.public_bytes()).digest()
    key = hashlib.new(request.hash_algorithm.name, public_key_bits(issuer)).digest()
    return name == request.issuer_name_hash and key == request.issuer_key_hash


def response_builder(request: ocsp.OCSPRequest, *, entry: RevokedEntry | None,
                     now: dt.datetime) -> ocsp.OCSPResponseBuilder:
    """good, or revoked with time and reason (RFC 6960 4.2.1). "good" means not revoked: kvca
    answers for the CA it issued from, and 2.2 allows good for any serial not revoked."""
    status = ocsp.OCSPCertStatus.REVOKED if entry is not None else ocsp.OCSPCertStatus.GOOD
    reason = None
    if entry is not None and entry.reason != "unspecified":
        reason = REASONS[entry.reason]
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=request.issuer_name_hash, issuer_key_hash=request.issuer_key_hash,
        serial_number=request.serial_number, algorithm=request.hash_algorithm, cert_status=status,
        this_update=now - ANSWER_BACKDATE, next_update=now + ANSWER_VALIDITY,
        revocation_time=entry.revoked_at if entry is not None else None, revocation_reason=reason)
    try:
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value
        builder = builder.add_extension(nonce, critical=False)  # echo the nonce (RFC 8954 / 6960 4.4.1)
    except x509.ExtensionNotFound:
        pass
    return builder


async def sign_response(signer: Signer, builder: ocsp.OCSPResponseBuilder, responder: x509.Certificate) -> bytes:
    """Signed by `responder`'s key, named by key hash (ResponderID byKey, 4.2.2.3), with its
    certificate in `certs` so clients check the delegation (4.2.2.2) without fetching anything."""
    return (await signer.sign_ocsp(builder, responder)).public_bytes(Encoding.DER)


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """malformedRequest, unauthorized, tryLater, ...: unsigned, as RFC 6960 4.2.1 defines them."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)
