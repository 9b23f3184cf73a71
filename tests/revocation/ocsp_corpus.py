"""Hostile and well-formed OCSP requests, built at test time from DER pieces (RFC 6960 4.1.1), about a
real CA: every CertID carries the CA's true name and key hashes, so a request that slipped past
the checks would be answered (good or unauthorized), never malformedRequest by accident.

    malformed(issuer)   -> [(name, der, what the refusal says)]
    wellformed(issuer)  -> [(name, der)]
"""

from __future__ import annotations

import hashlib
import secrets

from cryptography import x509

from kvca_core.signing.signers import public_key_bits

SHA1, SHA256, SHA384, SHA512 = "1.3.14.3.2.26", "2.16.840.1.101.3.4.2.1", "2.16.840.1.101.3.4.2.2", \
    "2.16.840.1.101.3.4.2.3"
MD5, SHA224, SHA3_256 = "1.2.840.113549.2.5", "2.16.840.1.101.3.4.2.4", "2.16.840.1.101.3.4.2.8"
NONCE = "1.3.6.1.5.5.7.48.1.2"
_HASHLIB = {SHA1: "sha1", SHA256: "sha256", SHA384: "sha384", SHA512: "sha512", MD5: "md5", SHA224: "sha224",
            SHA3_256: "sha3_256"}
NULL = b"\x05\x00"


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes([tag]) + length(len(body)) + body


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, *parts)


def integer(n: int) -> bytes:
    return tlv(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def octets(data: bytes) -> bytes:
    return tlv(0x04, data)


def oid(dotted: str) -> bytes:
    numbers = [int(n) for n in dotted.split(".")]
    body = b""
    for n in [40 * numbers[0] + numbers[1], *numbers[2:]]:
        chunk = [n & 0x7F]
        while n > 0x7F:
            n >>= 7
            chunk.insert(0, 0x80 | (n & 0x7F))
        body += bytes(chunk)
    return tlv(0x06, body)


def cert_id(issuer: x509.Certificate, serial: bytes, *, algorithm: str = SHA1, params: bytes = NULL,
            digest_bytes: int | None = None) -> bytes:
    """CertID with `issuer`'s true hashes (cut to `digest_bytes` when given); `serial` is the
    whole INTEGER element, so that it can be anything."""
    name = hashlib.new(_HASHLIB[algorithm], issuer.subject.public_bytes()).digest()[:digest_bytes]
    key = hashlib.new(_HASHLIB[algorithm], public_key_bits(issuer)).digest()[:digest_bytes]
    return seq(seq(oid(algorithm), params), octets(name), octets(key), serial)


def extension(extn_id: str, value: bytes, *, critical: bytes = b"") -> bytes:
    return seq(oid(extn_id), critical, octets(value))


def nonce(value: bytes) -> bytes:
    return extension(NONCE, octets(value))


def extensions(tag: int, *items: bytes) -> bytes:
    return tlv(tag, seq(*items))


def single(cid: bytes, *, extra: bytes = b"") -> bytes:
    return seq(cid, extra)


def request(*singles: bytes, head: bytes = b"", tail: bytes = b"", signature: bytes = b"") -> bytes:
    """OCSPRequest { TBSRequest { head, requestList, tail }, signature }."""
    return seq(seq(head, seq(*singles), tail), signature)


def malformed(issuer: x509.Certificate) -> list[tuple[str, bytes, str]]:
    serial = integer(secrets.randbits(120) | 1 << 120)
    good = single(cert_id(issuer, serial))
    valid = request(good)
    return [
        ("no-request", request(), "holds 0 requests"),
        ("two-requests", request(good, single(cert_id(issuer, integer(7)))), "holds 2 requests"),
        ("md5-certid", request(single(cert_id(issuer, serial, algorithm=MD5))), "1.2.840.113549.2.5 is not"),
        ("sha224-certid", request(single(cert_id(issuer, serial, algorithm=SHA224))), "is not SHA-1"),
        ("sha3-certid", request(single(cert_id(issuer, serial, algorithm=SHA3_256))), "is not SHA-1"),
        ("unknown-hash-oid", request(single(seq(seq(oid("1.2.3.4"), NULL), octets(b"\0" * 20), octets(b"\0" * 20),
                                                serial))), "1.2.3.4 is not"),
        ("hash-of-wrong-length", request(single(cert_id(issuer, serial, algorithm=SHA256, digest_bytes=20))),
         "issuerNameHash is 20 octets"),
        ("hash-parameters-not-null", request(single(cert_id(issuer, serial, params=integer(0)))),
         "optional NULL parameters"),
        ("duplicate-nonce", request(good, tail=extensions(0xA2, nonce(b"a" * 16), nonce(b"b" * 16))), "appears twice"),
        ("duplicate-single-extension", request(single(cert_id(issuer, serial), extra=extensions(
            0xA0, extension("1.3.6.1.5.5.7.48.1.3", seq()), extension("1.3.6.1.5.5.7.48.1.3", seq())))),
         "appears twice"),
        ("negative-serial", request(single(cert_id(issuer, integer(-5)))), "positive integer"),
        ("zero-serial", request(single(cert_id(issuer, integer(0)))), "positive integer"),
        ("serial-21-octets", request(single(cert_id(issuer, integer(1 << 160)))), "at most 20 octets"),
        ("serial-not-minimal", request(single(cert_id(issuer, tlv(0x02, b"\x00\x05")))), "not minimally encoded"),
        ("serial-empty", request(single(cert_id(issuer, tlv(0x02, b"")))), "is empty"),
        ("empty-nonce", request(good, tail=extensions(0xA2, nonce(b""))), "0 octets"),
        ("nonce-129-octets", request(good, tail=extensions(0xA2, nonce(b"n" * 129))), "129 octets"),
        ("nonce-not-octet-string", request(good, tail=extensions(0xA2, extension(NONCE, integer(12345)))),
         "tag 0x02"),
        ("nonce-raw-bytes", request(good, tail=extensions(0xA2, extension(NONCE, b"\x01" * 16))), "octets after"),
        ("nonce-with-trailing-octets", request(good, tail=extensions(0xA2, extension(
            NONCE, octets(b"n" * 16) + b"\x00"))), "octets after"),
        ("empty-extensions", request(good, tail=extensions(0xA2)), "SIZE (1..MAX)"),
        ("critical-not-boolean", request(good, tail=extensions(0xA2, extension(NONCE, octets(b"n" * 16),
                                                                                  critical=tlv(0x01, b"\x01")))),
         "not 0x00 or 0xFF"),
        ("version-2", request(good, head=tlv(0xA0, integer(1))), "not v1"),
        ("explicit-v1", request(good, head=tlv(0xA0, integer(0))), "DER leaves out"),
        ("critical-false-encoded", request(good, tail=extensions(0xA2, extension(NONCE, octets(b"n" * 16),
                                                                                    critical=tlv(0x01, b"\x00")))),
         "DER leaves out"),
        ("signature-not-a-sequence", request(good, signature=tlv(0xA0, integer(1))), "one Signature sequence"),
        ("unexpected-element", request(good, tail=integer(3)), "unexpected element"),
        ("trailing-octets", valid + b"\x00", "octets after the element"),
        ("truncated", valid[:-3], "claims"),
        ("indefinite-length", b"\x30\x80" + valid[2:] + b"\x00\x00", "indefinite length"),
        ("long-form-short-length", b"\x30\x81" + valid[1:], "shortest form"),
        ("high-tag-number", b"\x3f\x01\x00", "high tag number"),
        ("set-not-sequence", b"\x31" + valid[1:], "tag 0x31"),
        ("oid-not-minimal", request(single(seq(seq(tlv(0x06, b"\x2b\x80\x0e\x03\x02\x1a"), NULL),
                                                octets(b"\0" * 20), octets(b"\0" * 20), serial))),
         "not minimally encoded"),
        ("certid-missing-serial", request(single(seq(seq(oid(SHA1), NULL), octets(b"\0" * 20), octets(b"\0" * 20)))),
         "holds 3 elements"),
    ]


def wellformed(issuer: x509.Certificate) -> list[tuple[str, bytes]]:
    serial = integer(secrets.randbits(120) | 1 << 120)
    good = single(cert_id(issuer, serial))
    return [
        ("sha1", request(good)),
        ("sha256", request(single(cert_id(issuer, serial, algorithm=SHA256)))),
        ("sha384", request(single(cert_id(issuer, serial, algorithm=SHA384)))),
        ("sha512", request(single(cert_id(issuer, serial, algorithm=SHA512)))),
        ("no-hash-parameters", request(single(cert_id(issuer, serial, params=b"")))),
        ("nonce-1-octet", request(good, tail=extensions(0xA2, nonce(b"\x07")))),
        ("nonce-32-octets", request(good, tail=extensions(0xA2, nonce(secrets.token_bytes(32))))),
        ("nonce-128-octets", request(good, tail=extensions(0xA2, nonce(secrets.token_bytes(128))))),
        ("critical-nonce", request(good, tail=extensions(0xA2, extension(NONCE, octets(b"n" * 16),
                                                                         critical=tlv(0x01, b"\xff"))))),
        ("signed", request(good, signature=tlv(0xA0, seq(seq(oid("1.2.840.10045.4.3.2")), tlv(0x03, b"\x00\x01"))))),
        ("serial-20-octets", request(single(cert_id(issuer, integer((1 << 159) - 1))))),
    ]
