"""OCSP (RFC 6960): read a request strictly, build the answer for one CA, sign it with the delegated
responder, and keep signed answers for reuse.

Pure: the revocation record comes in as a value (the same records the CRL lists), the
responder's key signs through a `Signer` (a `RemoteSigner` keeps it in Key Vault).

Requests are untrusted and judged whole before anything reads them (`parse_request`): one
Request (RFC 5019 2.1.1), a CertID hashed with SHA-1, SHA-256, SHA-384 or SHA-512, a positive
serial of at most 20 octets (RFC 5280 4.1.2.2), no extension twice (RFC 5280 4.2, which
RFC 6960 4.4 adopts), a nonce of 1 to 128 octets inside an OCTET STRING (RFC 9654 2.1, which
tells a responder to answer malformedRequest otherwise). Anything else is InvalidRequest, which
the route answers malformedRequest (RFC 6960 4.2.1).

Nonces: a well-formed nonce is accepted and ignored, and answers carry none. That is the
lightweight profile's way (RFC 5019 section 4, kept by RFC 9919 which obsoletes it): clients
tell a fresh answer by its thisUpdate/nextUpdate, and "clients that opt to include a nonce in
the request SHOULD NOT reject a corresponding OCSPResponse solely on the basis of the
nonexistent expected nonce". RFC 9654 2.1 lets a responder ignore the extension. So one
signed answer per (CA certificate version, CertID hash, serial, status) serves every client
until it is refreshed: `ResponseCache` keeps them, and the vault signs once per answer per
half validity instead of once per request.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from kvca_core import clock
from kvca_core.errors import InvalidRequest
from kvca_core.signing import der
from kvca_core.signing.crl import REASONS, RevokedEntry
from kvca_core.signing.signers import Signer, public_key_bits

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 * 1024  # one request of a few certificates is a few hundred bytes
# How long a client may cache an answer (nextUpdate, RFC 6960 2.4): an hour, so a revocation
# reaches OCSP clients within the hour even when they cache, and the vault is asked rarely.
ANSWER_VALIDITY = dt.timedelta(hours=1)
ANSWER_BACKDATE = dt.timedelta(minutes=5)  # clock skew, as for certificates and CRLs

GOOD, REVOKED, UNKNOWN = "good", "revoked", "unknown"
_STATUSES = {GOOD: ocsp.OCSPCertStatus.GOOD, REVOKED: ocsp.OCSPCertStatus.REVOKED,
             UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN}
# CertID hash algorithms answered: SHA-1 (RFC 5019 2.1.1 / RFC 9919 keep it mandatory for
# clients) and the SHA-2 family. MD5, SHA-224, SHA-3 and the rest are refused.
_CERT_ID_HASHES: dict[str, hashes.HashAlgorithm] = {
    "1.3.14.3.2.26": hashes.SHA1(),
    "2.16.840.1.101.3.4.2.1": hashes.SHA256(),
    "2.16.840.1.101.3.4.2.2": hashes.SHA384(),
    "2.16.840.1.101.3.4.2.3": hashes.SHA512(),
}
NONCE_OID = "1.3.6.1.5.5.7.48.1.2"  # id-pkix-ocsp-nonce
MAX_NONCE = 128  # RFC 9654 2.1: Nonce ::= OCTET STRING (SIZE(1..128))
_MAX_SERIAL_OCTETS = 20
_X690_DEFAULT = "(X.690 11.5)"


def parse_request(data: bytes) -> ocsp.OCSPRequest:
    """A DER OCSPRequest (untrusted) that passes every check above, or InvalidRequest saying
    which rule it breaks. Checked by a strict DER walk first, then parsed by cryptography."""
    if not isinstance(data, (bytes, bytearray)) or not data or len(data) > MAX_REQUEST_BYTES:
        raise InvalidRequest(f"an OCSP request is 1 to {MAX_REQUEST_BYTES} bytes of DER", subject="OCSP")
    data = bytes(data)
    try:
        _check_request(data)
    except der.DerError as exc:
        raise InvalidRequest(f"malformed OCSP request: {exc}", subject="OCSP") from None
    try:
        request = ocsp.load_der_ocsp_request(data)
        request.serial_number, request.hash_algorithm, request.extensions  # noqa: B018 - parsed lazily
        return request
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
        raise InvalidRequest(f"the OCSP request cannot be parsed ({type(exc).__name__})", subject="OCSP") from None


def _check_request(data: bytes) -> None:
    """OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] EXPLICIT Signature
    OPTIONAL }; TBSRequest ::= SEQUENCE { version [0] EXPLICIT INTEGER DEFAULT v1, requestorName
    [1] EXPLICIT GeneralName OPTIONAL, requestList SEQUENCE OF Request, requestExtensions [2]
    EXPLICIT Extensions OPTIONAL } (RFC 6960 4.1.1)."""
    parts = der.children(der.expect(der.read(data), der.SEQUENCE, "OCSPRequest"))
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].context(0)):
        raise der.DerError("OCSPRequest holds a TBSRequest and an optional [0] signature, nothing else")
    if len(parts) == 2:  # not verified (kvca asks no client to sign), but well-formed
        signature = der.children(parts[1])
        if len(signature) != 1 or signature[0].tag != der.SEQUENCE:
            raise der.DerError("optionalSignature holds one Signature sequence")
        der.children(signature[0])
    fields = der.children(der.expect(parts[0], der.SEQUENCE, "TBSRequest"))
    if fields and fields[0].context(0):
        version = der.children(fields.pop(0))
        if len(version) == 1 and der.integer(version[0], "version") == 0:
            raise der.DerError(f"version v1 is the default, which DER leaves out {_X690_DEFAULT}")
        raise der.DerError("version is not v1 (0), the only one there is")
    if fields and fields[0].context(1) and len(der.children(fields.pop(0))) != 1:
        raise der.DerError("requestorName holds one GeneralName")
    if not fields:
        raise der.DerError("TBSRequest has no requestList")
    requests = der.children(der.expect(fields.pop(0), der.SEQUENCE, "requestList"))
    if len(requests) != 1:
        raise der.DerError(f"requestList holds {len(requests)} requests; kvca answers exactly one per "
                           f"OCSPRequest (RFC 5019 2.1.1)")
    if fields and fields[0].context(2):
        _check_extensions(fields.pop(0), "requestExtensions")
    if fields:
        raise der.DerError(f"unexpected element at offset {fields[0].offset} in TBSRequest")
    _check_single_request(requests[0])


def _check_single_request(request: der.Element) -> None:
    """Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions
    OPTIONAL }; CertID ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, issuerNameHash OCTET
    STRING, issuerKeyHash OCTET STRING, serialNumber INTEGER }."""
    parts = der.children(der.expect(request, der.SEQUENCE, "Request"))
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].context(0)):
        raise der.DerError("Request holds a CertID and optional [0] extensions, nothing else")
    if len(parts) == 2:
        _check_extensions(parts[1], "singleRequestExtensions")
    cert_id = der.children(der.expect(parts[0], der.SEQUENCE, "CertID"))
    if len(cert_id) != 4:
        raise der.DerError(f"CertID holds {len(cert_id)} elements, not 4")
    algorithm = der.children(der.expect(cert_id[0], der.SEQUENCE, "hashAlgorithm"))
    if not algorithm or len(algorithm) > 2 or (len(algorithm) == 2 and (algorithm[1].tag != der.NULL
                                                                      or algorithm[1].content)):
        raise der.DerError("hashAlgorithm holds an OID and optional NULL parameters")
    name = der.oid(algorithm[0], "hashAlgorithm")
    if name not in _CERT_ID_HASHES:
        raise der.DerError(f"CertID hash algorithm {name} is not SHA-1, SHA-256, SHA-384 or SHA-512")
    size = _CERT_ID_HASHES[name].digest_size
    for index, what in ((1, "issuerNameHash"), (2, "issuerKeyHash")):
        if len(der.octets(cert_id[index], what)) != size:
            raise der.DerError(f"{what} is {len(cert_id[index].content)} octets; the hash gives {size}")
    serial = der.integer(cert_id[3], "serialNumber")
    if serial <= 0 or len(cert_id[3].content) > _MAX_SERIAL_OCTETS:
        raise der.DerError(f"serialNumber is not a positive integer of at most {_MAX_SERIAL_OCTETS} octets "
                           f"(RFC 5280 4.1.2.2)")


def _check_extensions(tagged: der.Element, what: str) -> None:
    """[n] EXPLICIT Extensions; Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension; Extension ::=
    SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }."""
    inner = der.children(tagged)
    if len(inner) != 1:
        raise der.DerError(f"{what} holds one Extensions sequence")
    extensions = der.children(der.expect(inner[0], der.SEQUENCE, what))
    if not extensions:
        raise der.DerError(f"{what} is empty (SIZE (1..MAX))")
    seen: set[str] = set()
    for extension in extensions:
        parts = der.children(der.expect(extension, der.SEQUENCE, "Extension"))
        if len(parts) not in (2, 3):
            raise der.DerError(f"Extension at offset {extension.offset} holds {len(parts)} elements")
        name = der.oid(parts[0], "extnID")
        if len(parts) == 3 and not der.boolean(parts[1], "critical"):
            raise der.DerError(f"critical FALSE is the default, which DER leaves out {_X690_DEFAULT}")
        value = der.octets(parts[-1], "extnValue")
        if name in seen:
            raise der.DerError(f"extension {name} appears twice in {what}")
        seen.add(name)
        if name == NONCE_OID:
            nonce = der.octets(der.read(value), "the nonce (an OCTET STRING in extnValue, RFC 9654 2.1)")
            if not 1 <= len(nonce) <= MAX_NONCE:
                raise der.DerError(f"the nonce is {len(nonce)} octets, not 1 to {MAX_NONCE} (RFC 9654 2.1)")


def asks_about(request: ocsp.OCSPRequest, issuer: x509.Certificate) -> bool:
    """Whether the request's CertID names `issuer` (name hash and key hash, with its hash)."""
    name, key = cert_id_hashes(issuer, request.hash_algorithm)
    return name == request.issuer_name_hash and key == request.issuer_key_hash


def cert_id_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """issuerNameHash and issuerKeyHash of `issuer` (RFC 6960 4.1.1)."""
    return (hashlib.new(algorithm.name, issuer.subject.public_bytes()).digest(),
            hashlib.new(algorithm.name, public_key_bits(issuer)).digest())


def response_builder(request: ocsp.OCSPRequest, *, entry: RevokedEntry | None, now: dt.datetime,
                     status: str | None = None) -> ocsp.OCSPResponseBuilder:
    """The answer to `request`'s CertID (RFC 6960 4.2.1): `status` good, revoked (with `entry`'s
    time and reason) or unknown, the serial the CA never issued (2.2: "the responder doesn't
    know about the certificate being requested"). Without `status`: revoked when there is an
    entry, else good. No nonce, whatever the request held (module docstring)."""
    status = status or (REVOKED if entry is not None else GOOD)
    if status not in _STATUSES or (status == REVOKED) != (entry is not None):
        raise ValueError(f"status {status!r} with entry {entry!r}")  # a kvca bug, never request data
    reason = REASONS[entry.reason] if entry is not None and entry.reason != "unspecified" else None
    return ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=request.issuer_name_hash, issuer_key_hash=request.issuer_key_hash,
        serial_number=request.serial_number, algorithm=request.hash_algorithm, cert_status=_STATUSES[status],
        this_update=now - ANSWER_BACKDATE, next_update=now + ANSWER_VALIDITY,
        revocation_time=entry.revoked_at if entry is not None else None, revocation_reason=reason)


async def sign_response(signer: Signer, builder: ocsp.OCSPResponseBuilder, responder: x509.Certificate) -> bytes:
    """Signed by `responder`'s key, named by key hash (ResponderID byKey, 4.2.2.3), with its
    certificate in `certs` so clients check the delegation (4.2.2.2) without fetching anything."""
    return (await signer.sign_ocsp(builder, responder)).public_bytes(Encoding.DER)


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """malformedRequest, unauthorized, tryLater, ...: unsigned, as RFC 6960 4.2.1 defines them."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)


# --- signed answers, kept for reuse ---------------------------------------------------------------
@dataclass(frozen=True)
class AnswerKey:
    """What a signed answer depends on, and nothing else (no nonce: see the module docstring)."""

    ca_version: str  # the CA certificate version: its name and key are what the CertID hashes
    algorithm: str  # the CertID's hash ("sha1", "sha256", ...): the answer repeats the CertID
    serial: int
    status: str  # GOOD, REVOKED or UNKNOWN

    @classmethod
    def of(cls, ca_version: str, request: ocsp.OCSPRequest, status: str) -> "AnswerKey":
        return cls(ca_version, request.hash_algorithm.name, request.serial_number, status)


@dataclass(frozen=True)
class _Signed:
    der: bytes
    signed_at: dt.datetime


class ResponseCache:
    """Signed OCSP answers of this process, per AnswerKey: an answer is served while more than
    half its validity is left and signed afresh after, so a client caching it until nextUpdate
    still gets one valid for at least half an ANSWER_VALIDITY. At most `max_entries` answers,
    the least recently served dropped first. Two requests for one key at once sign once (the
    second waits for the first's signature). A signing that fails falls back to the kept answer
    while it is valid: an answer that cannot be fetched fails clients that insist on one.

    Per event loop (the Functions worker runs one): not for use across threads."""

    def __init__(self, *, max_entries: int = 4096, validity: dt.timedelta = ANSWER_VALIDITY,
                 now: Callable[[], dt.datetime] = clock.now) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.validity = validity
        self._now = now
        self._answers: collections.OrderedDict[AnswerKey, _Signed] = collections.OrderedDict()
        self._signing: dict[AnswerKey, asyncio.Future[bytes]] = {}
        self.hits = 0
        self.signed = 0

    def __len__(self) -> int:
        return len(self._answers)

    async def answer(self, key: AnswerKey, sign: Callable[[dt.datetime], Awaitable[bytes]]) -> bytes:
        """The kept answer for `key`, or the one `sign(now)` makes (a DER OCSPResponse whose
        thisUpdate and nextUpdate derive from `now`, as response_builder's do)."""
        kept = self._answers.get(key)
        if kept is not None and self._now() - kept.signed_at < self.validity / 2:
            self._answers.move_to_end(key)
            self.hits += 1
            return kept.der
        flight = self._signing.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._sign(key, sign))
            self._signing[key] = flight
            flight.add_done_callback(lambda done: self._signing.pop(key, None) if self._signing.get(key) is done
                                     else None)
        return await asyncio.shield(flight)  # one caller cancelled does not cancel the others' signing

    async def _sign(self, key: AnswerKey, sign: Callable[[dt.datetime], Awaitable[bytes]]) -> bytes:
        now = self._now()
        try:
            signed = await sign(now)
        except Exception as exc:
            kept = self._answers.get(key)
            if kept is not None and self._now() < kept.signed_at + self.validity:
                logger.warning("kvca op=ocsp serial=%x status=%s outcome=stale reason=%s", key.serial, key.status, exc)
                return kept.der
            raise
        self.signed += 1
        self._answers[key] = _Signed(signed, now)
        self._answers.move_to_end(key)
        while len(self._answers) > self.max_entries:
            self._answers.popitem(last=False)
        return signed
