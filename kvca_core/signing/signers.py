"""Signers: who holds the CA key. One protocol, two implementations.

`LocalSigner` holds a private key in memory (loaded from the intermediate's
Key Vault secret; never written anywhere). `RemoteSigner` holds only the
public key and a coroutine that is Key Vault's keys API `sign`: the private key
never leaves the vault, only a digest goes out. Both are given the same
CertificateBuilder by the same pipeline and both results are verified against
the issuer's public key before anyone sees them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Awaitable, Callable, Protocol, runtime_checkable

from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kvca_core.errors import InvalidRequest, UpstreamError

log = logging.getLogger(__name__)

# The keys API's algorithm names (JWA, RFC 7518 3.1) and what each means.
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512,
    "PS256": hashes.SHA256, "PS384": hashes.SHA384, "PS512": hashes.SHA512,
    "ES256": hashes.SHA256, "ES384": hashes.SHA384, "ES512": hashes.SHA512,
}
ALGORITHMS = tuple(_HASHES)
# The curve each ES algorithm is defined on (RFC 7518 3.4); Key Vault refuses other pairs.
_ES_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}

SignFunction = Callable[[str, bytes], Awaitable[bytes]]
IssuerPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
IssuerPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def default_algorithm(public_key: IssuerPublicKey) -> str:
    """The signature algorithm for an issuer key.

    EC: the hash that matches the curve's strength (P-256 -> ES256, P-384 ->
    ES384, P-521 -> ES512; RFC 5480 4 and Key Vault's ES* pairing). RSA:
    RS256, PKCS#1 v1.5 with SHA-256 (RFC 4055), because that is what every TLS
    stack, OpenSSL, MQTT brokers and pkilint accept without question; PSS
    (PS256) is available by asking for it, but its AlgorithmIdentifier
    parameters trip up older clients and some hardware.
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        for algorithm, curve in _ES_CURVES.items():
            if public_key.curve.name == curve:
                return algorithm
        raise InvalidRequest(f"CA key on curve {public_key.curve.name!r} cannot sign certificates "
                             f"(use P-256, P-384 or P-521)", step="sign")
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RS256"
    raise InvalidRequest(f"CA key of type {type(public_key).__name__} cannot sign certificates (use RSA or EC)",
                         step="sign")


def _check_algorithm(public_key: IssuerPublicKey, algorithm: str) -> str:
    algorithm = algorithm.upper()
    if algorithm not in _HASHES:
        raise InvalidRequest(f"signature algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}",
                             step="sign")
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if _ES_CURVES.get(algorithm) != public_key.curve.name:
            raise InvalidRequest(f"signature algorithm {algorithm!r} does not fit a CA key on "
                                 f"{public_key.curve.name}", step="sign")
    elif not algorithm.startswith(("RS", "PS")):
        raise InvalidRequest(f"signature algorithm {algorithm!r} does not fit an RSA CA key", step="sign")
    return algorithm


def hash_for(algorithm: str) -> hashes.HashAlgorithm:
    return _HASHES[algorithm]()


def _padding_for(algorithm: str) -> padding.AsymmetricPadding | None:
    if algorithm.startswith("PS"):
        # Salt length = digest length: what Key Vault's PS* use (and RFC 8017's
        # recommendation for RSASSA-PSS; also what RFC 4055 parameters encode).
        return padding.PSS(mgf=padding.MGF1(hash_for(algorithm)), salt_length=padding.PSS.DIGEST_LENGTH)
    if algorithm.startswith("RS"):
        return padding.PKCS1v15()
    return None


@runtime_checkable
class Signer(Protocol):
    """Signs certificates for one CA key."""

    @property
    def public_key(self) -> IssuerPublicKey: ...

    @property
    def algorithm(self) -> str:
        """JWA name: RS256/384/512, PS256/384/512, ES256/384/512."""

    async def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """The certificate `builder` describes, signed with this key."""

    async def sign_crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList:
        """The CRL `builder` describes, signed with this key."""

    async def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder, responder: x509.Certificate) -> ocsp.OCSPResponse:
        """The OCSP response `builder` describes (RFC 6960 4.2.1), signed with this key, which is
        `responder`'s: the responder is named by key hash and its certificate included."""


class _KeyOwner:
    """What both signers share: the CA's public key and the algorithm chosen for it."""

    def __init__(self, public_key: IssuerPublicKey, algorithm: str | None) -> None:
        if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            raise InvalidRequest(f"CA key of type {type(public_key).__name__} cannot sign certificates "
                                 f"(use RSA or EC)", step="sign")
        self._public_key = public_key
        self._algorithm = _check_algorithm(public_key, algorithm or default_algorithm(public_key))

    @property
    def public_key(self) -> IssuerPublicKey:
        return self._public_key

    @property
    def algorithm(self) -> str:
        return self._algorithm


class LocalSigner(_KeyOwner):
    """A CA private key held in memory. It is never serialised by kvca."""

    def __init__(self, private_key: IssuerPrivateKey, *, algorithm: str | None = None) -> None:
        if not isinstance(private_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise InvalidRequest(f"CA key of type {type(private_key).__name__} cannot sign certificates "
                                 f"(use RSA or EC)", step="sign")
        super().__init__(private_key.public_key(), algorithm)
        self._private_key = private_key

    def __repr__(self) -> str:  # never the key itself
        return f"LocalSigner({self._algorithm})"

    async def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self._private_key, hash_for(self._algorithm), rsa_padding=_padding_for(self._algorithm))

    async def sign_crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList:
        return builder.sign(self._private_key, hash_for(self._algorithm), rsa_padding=_padding_for(self._algorithm))

    async def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder, responder: x509.Certificate) -> ocsp.OCSPResponse:
        if self._algorithm.startswith("PS"):  # cryptography's OCSP builder signs PKCS#1 v1.5 or ECDSA only
            raise InvalidRequest("an OCSP responder key signs with RS* or ES*, not PS*", step="sign")
        return _with_responder(builder, responder).sign(self._private_key, hash_for(self._algorithm))

    def sign_bytes(self, data: bytes) -> bytes:
        """A raw signature over `data` (for benchmarks and tests: what one signature costs)."""
        if isinstance(self._private_key, ec.EllipticCurvePrivateKey):
            return self._private_key.sign(data, ec.ECDSA(hash_for(self._algorithm)))
        return self._private_key.sign(data, _padding_for(self._algorithm), hash_for(self._algorithm))


# ---------------------------------------------------------------- remote signing
#
# cryptography (50) cannot sign a certificate with a key it does not hold:
# CertificateBuilder.sign() wants a private key object, and there is no API to
# get the TBSCertificate out of a builder or to attach a signature computed
# elsewhere (pyca/cryptography#11616, #12108). The maintainers' suggestion
# there, a private-key subclass whose sign() calls out, does not fit either:
# cryptography calls sign() synchronously, Key Vault's sign is a coroutine, and
# bridging the two would block the event loop or need a thread per signature.
# Rather than hand-encode the whole TBSCertificate (every extension, name and
# time encoding would then be ours to get right), we let cryptography encode
# it: the builder is signed with a throwaway key of the same key type and the
# same hash/padding, which yields exactly the TBSCertificate and
# signatureAlgorithm the real issuer would produce (neither depends on the
# signing key's value or size: the AlgorithmIdentifier names only hash,
# padding and key family, RFC 4055 / RFC 5758). Then the throwaway signature is replaced by Key Vault's, with a
# three-element DER SEQUENCE written here, and the result is verified against
# the issuer's public key. The throwaway keys live in this process only and
# sign nothing but these discarded drafts.

_throwaway_lock = threading.Lock()
_throwaway: dict[str, IssuerPrivateKey] = {}


def _throwaway_key(kind: str) -> IssuerPrivateKey:
    with _throwaway_lock:
        key = _throwaway.get(kind)
        if key is None:
            key = (ec.generate_private_key(ec.SECP256R1()) if kind == "EC"
                   else rsa.generate_private_key(public_exponent=65537, key_size=2048))
            _throwaway[kind] = key
        return key


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_read(data: bytes, offset: int) -> tuple[int, int]:
    """(start of content, end of element) of the DER element at `offset`."""
    first = data[offset + 1]
    if first < 0x80:
        start, length = offset + 2, first
    else:
        count = first & 0x7F
        start = offset + 2 + count
        length = int.from_bytes(data[offset + 2:start], "big")
    return start, start + length


def splice_signature(draft_der: bytes, signature: bytes) -> bytes:
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
    (RFC 5280 4.1): keep the first two elements of `draft_der`, put `signature` in the third."""
    content, end = _der_read(draft_der, 0)
    _, tbs_end = _der_read(draft_der, content)
    _, algorithm_end = _der_read(draft_der, tbs_end)
    return _tlv(0x30, draft_der[content:algorithm_end] + _bit_string(signature))


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(body)) + body


def _bit_string(signature: bytes) -> bytes:
    return _tlv(0x03, b"\x00" + signature)  # 0 unused bits


def _ocsp_basic(draft_der: bytes) -> tuple[bytes, int, int, bytes]:
    """(status TLV, start and end of BasicOCSPResponse, responseType TLV) of an OCSPResponse:
    SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT SEQUENCE { responseType OID,
    response OCTET STRING } } (RFC 6960 4.2.1)."""
    outer, _ = _der_read(draft_der, 0)
    _, status_end = _der_read(draft_der, outer)
    tagged, _ = _der_read(draft_der, status_end)
    response_bytes, _ = _der_read(draft_der, tagged)
    _, oid_end = _der_read(draft_der, response_bytes)
    octets, octets_end = _der_read(draft_der, oid_end)
    return draft_der[outer:status_end], octets, octets_end, draft_der[response_bytes:oid_end]


def _ocsp_parts(draft_der: bytes) -> tuple[bytes, bytes]:
    """(tbsResponseData TLV, signatureAlgorithm TLV) of the BasicOCSPResponse ::= SEQUENCE {
    tbsResponseData, signatureAlgorithm, signature BIT STRING, certs [0] OPTIONAL }."""
    _, start, end, _ = _ocsp_basic(draft_der)
    basic = draft_der[start:end]
    content, _ = _der_read(basic, 0)
    _, tbs_end = _der_read(basic, content)
    _, algorithm_end = _der_read(basic, tbs_end)
    return basic[content:tbs_end], basic[tbs_end:algorithm_end]


def splice_ocsp_signature(draft_der: bytes, tbs: bytes, signature: bytes, responder_der: bytes) -> bytes:
    """The draft OCSPResponse with `tbs`, `signature` and certs = [responder], lengths re-encoded."""
    status, _, _, response_type = _ocsp_basic(draft_der)
    _, algorithm = _ocsp_parts(draft_der)
    basic = _tlv(0x30, tbs + algorithm + _bit_string(signature) + _tlv(0xA0, _tlv(0x30, responder_der)))
    return _tlv(0x30, status + _tlv(0xA0, _tlv(0x30, response_type + _tlv(0x04, basic))))


def public_key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's value: what OCSP's KeyHash and issuerKeyHash hash (RFC 6960 4.1.1)."""
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    content, _ = _der_read(spki, 0)
    _, algorithm_end = _der_read(spki, content)
    bits, bits_end = _der_read(spki, algorithm_end)
    return spki[bits + 1:bits_end]  # skip the unused-bits octet


def _key_hash_id(certificate: x509.Certificate) -> bytes:
    """ResponderID byKey: [2] EXPLICIT KeyHash (OCTET STRING, SHA-1 of the key bits)."""
    return _tlv(0xA2, _tlv(0x04, hashlib.sha1(public_key_bits(certificate)).digest()))  # noqa: S324 - RFC 6960


def _with_responder(builder: ocsp.OCSPResponseBuilder, responder: x509.Certificate) -> ocsp.OCSPResponseBuilder:
    return builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder).certificates([responder])


_throwaway_certs: dict[str, x509.Certificate] = {}


def _throwaway_certificate(kind: str) -> x509.Certificate:
    """A self-signed certificate of the throwaway key: it names the drafts' responder, never anything real."""
    with _throwaway_lock:
        cert = _throwaway_certs.get(kind)
    if cert is None:
        import datetime as dt

        key = _throwaway_key(kind)
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "kvca throwaway draft signer")])
        moment = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(moment).not_valid_after(moment + dt.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        with _throwaway_lock:
            _throwaway_certs[kind] = cert
    return cert


def raw_to_der_ecdsa(raw: bytes, curve: ec.EllipticCurve) -> bytes:
    """Key Vault's ES* answer is r||s, each the curve's byte length (RFC 7518 3.4);
    X.509 wants ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 5758 3.2)."""
    size = (curve.key_size + 7) // 8
    if len(raw) != 2 * size:
        raise UpstreamError(f"the vault's ECDSA signature is {len(raw)} bytes; {curve.name} needs {2 * size} (r||s)",
                            step="sign")
    return encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big"))


class RemoteSigner(_KeyOwner):
    """A CA key that stays in Key Vault; `sign(algorithm, digest)` is the keys API's sign."""

    def __init__(self, public_key: IssuerPublicKey, sign: SignFunction, *, algorithm: str | None = None,
                 key_id: str | None = None) -> None:
        super().__init__(public_key, algorithm)
        self._sign = sign
        self.key_id = key_id  # for log lines only

    def __repr__(self) -> str:
        return f"RemoteSigner({self._algorithm}, key_id={self.key_id!r})"

    async def sign_digest(self, data: bytes) -> bytes:
        """The DER-ready signature over `data`: hashed here, signed in the vault."""
        algorithm = self._algorithm
        digest = hashlib.new(hash_for(algorithm).name, data).digest()
        signature = await self._sign(algorithm, digest)
        if not isinstance(signature, (bytes, bytearray)):
            raise UpstreamError(f"the vault's sign answered {type(signature).__name__}, not bytes", step="sign")
        if isinstance(self._public_key, ec.EllipticCurvePublicKey):
            return raw_to_der_ecdsa(bytes(signature), self._public_key.curve)
        if len(signature) != (self._public_key.key_size + 7) // 8:
            raise UpstreamError(f"the vault's {algorithm} signature is {len(signature)} bytes; an RSA-"
                                f"{self._public_key.key_size} signature is {(self._public_key.key_size + 7) // 8}",
                                step="sign")
        return bytes(signature)

    async def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        algorithm = self._algorithm
        kind = "EC" if algorithm.startswith("ES") else "RSA"
        draft = builder.sign(_throwaway_key(kind), hash_for(algorithm), rsa_padding=_padding_for(algorithm))
        signature = await self.sign_digest(draft.tbs_certificate_bytes)
        certificate = x509.load_der_x509_certificate(
            splice_signature(draft.public_bytes(Encoding.DER), signature))
        try:
            verify_signature(certificate, self._public_key)
        except InvalidSignature:
            log.warning("remote signature does not verify: key_id=%s algorithm=%s", self.key_id, algorithm)
            raise UpstreamError(f"the vault's {algorithm} signature does not verify with the CA's public key",
                                step="sign", hint="is the key id the CA certificate's key?") from None
        return certificate

    async def sign_crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList:
        """As sign_certificate: CertificateList has the same three-element shape
        (tbsCertList, signatureAlgorithm, signatureValue; RFC 5280 5.1), so the same splice works."""
        algorithm = self._algorithm
        kind = "EC" if algorithm.startswith("ES") else "RSA"
        draft = builder.sign(_throwaway_key(kind), hash_for(algorithm), rsa_padding=_padding_for(algorithm))
        signature = await self.sign_digest(draft.tbs_certlist_bytes)
        crl = x509.load_der_x509_crl(splice_signature(draft.public_bytes(Encoding.DER), signature))
        if not crl.is_signature_valid(self._public_key):
            log.warning("remote CRL signature does not verify: key_id=%s algorithm=%s", self.key_id, algorithm)
            raise UpstreamError(f"the vault's {algorithm} signature over the CRL does not verify with the CA's "
                                f"public key", step="sign", hint="is the key id the CA certificate's key?")
        return crl

    async def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder, responder: x509.Certificate) -> ocsp.OCSPResponse:
        """As sign_certificate, for the BasicOCSPResponse inside an OCSPResponse. cryptography
        also insists that the responder certificate holds the signing key, so the draft names a
        throwaway certificate of the throwaway key; its ResponderID byKey (a SHA-1, 20 bytes
        either way, RFC 6960 4.2.1) is swapped for the real responder's in the TBS, and the
        real certificate goes into `certs`."""
        algorithm = self._algorithm
        if algorithm.startswith("PS"):
            raise InvalidRequest("an OCSP responder key signs with RS* or ES*, not PS*", step="sign")
        kind = "EC" if algorithm.startswith("ES") else "RSA"
        stand_in = _throwaway_certificate(kind)
        draft = _with_responder(builder, stand_in).sign(_throwaway_key(kind), hash_for(algorithm)).public_bytes(
            Encoding.DER)
        swap = (_key_hash_id(stand_in), _key_hash_id(responder))
        if draft.count(swap[0]) != 1:
            raise UpstreamError("the OCSP draft's responder id cannot be located", step="sign")
        tbs, rest = _ocsp_parts(draft)
        tbs = tbs.replace(*swap)
        signature = await self.sign_digest(tbs)
        response = ocsp.load_der_ocsp_response(
            splice_ocsp_signature(draft, tbs, signature, responder.public_bytes(Encoding.DER)))
        try:
            if isinstance(self._public_key, ec.EllipticCurvePublicKey):
                self._public_key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hash_for(algorithm)))
            else:
                self._public_key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(),
                                        hash_for(algorithm))
        except InvalidSignature:
            log.warning("remote OCSP signature does not verify: key_id=%s algorithm=%s", self.key_id, algorithm)
            raise UpstreamError(f"the vault's {algorithm} signature over the OCSP response does not verify",
                                step="sign", hint="is the key id the responder certificate's key?") from None
        return response


def verify_signature(certificate: x509.Certificate, public_key: IssuerPublicKey) -> None:
    """Raise InvalidSignature unless `public_key` signed `certificate` (any of RS*, PS*, ES*)."""
    algorithm = certificate.signature_hash_algorithm
    if algorithm is None:
        raise InvalidSignature("no hash algorithm")
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(algorithm))
    else:
        pad = certificate.signature_algorithm_parameters
        public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, pad, algorithm)

