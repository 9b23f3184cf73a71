"""EST (RFC 7030) on the wire: what its requests carry and what its answers are. Pure: bytes in,
bytes out; no I/O.

    read_pkcs10(body)            a simpleenroll / simplereenroll body -> the CSR's DER (base64, 4.2.1)
    certs_only(certificates)     an answer body: base64 of a certs-only PKCS#7 (4.1.3, 4.2.3)
    csr_attributes(oids)         a csrattrs body: base64 of a DER SEQUENCE of OIDs (4.5.2)
    basic_credentials(header)    (user, password) of an HTTP Basic Authorization header (3.2.3)
    client_certificate(header)   the DER of App Service's X-ARR-ClientCert header (base64)

Every refusal is an InvalidRequest whose message is one line naming the rule, never the bytes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from kvca_core.errors import InvalidRequest
from kvca_core.signing import MAX_CSR_BYTES

# RFC 7030 4.2.1: the request is `application/pkcs10`; 4.1.3 / 4.2.3: the answer
# `application/pkcs7-mime; smime-type=certs-only`; 4.5.2: `application/csrattrs`. Each body is base64
# (RFC 7030's Content-Transfer-Encoding: base64; RFC 8951 3.2: always base64, whatever that header says).
PKCS10 = "application/pkcs10"
CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
CSRATTRS = "application/csrattrs"
TRANSFER_ENCODING = {"Content-Transfer-Encoding": "base64"}
# The base64 of a CSR of at most MAX_CSR_BYTES, with line breaks every 64 characters.
MAX_BODY = MAX_CSR_BYTES * 4 // 3 + MAX_CSR_BYTES // 32 + 64
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_LINE = 64  # RFC 2045 6.8 allows 76 characters a line; openssl writes 64


def media_type(header: str | None) -> str:
    """The type/subtype of a Content-Type header, lower case, without parameters."""
    return (header or "").split(";", 1)[0].strip().lower()


def read_pkcs10(body: bytes) -> bytes:
    """The DER of the PKCS#10 request a simpleenroll body carries: base64, line breaks and other white
    space allowed (RFC 2045 6.8). Anything else is refused here, before it reaches a parser."""
    if not body or not body.strip():
        raise InvalidRequest("the body is empty: send the CSR, base64 of its DER (RFC 7030 4.2.1)", subject="request")
    if len(body) > MAX_BODY:
        raise InvalidRequest(f"the body is {len(body)} bytes; a CSR's base64 is at most {MAX_BODY}", subject="request")
    compact = b"".join(body.split())
    if compact.startswith(b"-----BEGIN"):
        raise InvalidRequest("the body is PEM; RFC 7030 4.2.1 sends the base64 of the DER alone", subject="request",
                             hint="leave out the -----BEGIN/-----END lines, or send `openssl req -outform DER | "
                                  "base64`")
    if not set(compact) <= _BASE64:
        raise InvalidRequest("the body is not base64 (RFC 7030 4.2.1: the CSR's DER, base64-encoded)",
                             subject="request")
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the body is not well-formed base64 (its length or padding is wrong)",
                             subject="request") from None
    if der[:1] != b"\x30":
        raise InvalidRequest("the decoded body is not a DER SEQUENCE, so no PKCS#10 request", subject="request")
    return der


def _lines(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"".join(text[i:i + _LINE] + b"\r\n" for i in range(0, len(text), _LINE))


def certs_only(certificates: Sequence[x509.Certificate]) -> bytes:
    """A certs-only PKCS#7 (a SignedData with certificates and no signers), base64 in lines."""
    return _lines(pkcs7.serialize_certificates(list(certificates), Encoding.DER))


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return b"\x06" + _length(len(body)) + bytes(body)


def csr_attributes(oids: Iterable[x509.ObjectIdentifier]) -> bytes:
    """CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID, here OIDs only (RFC 7030 4.5.2), DER, base64."""
    content = b"".join(_oid(o.dotted_string) for o in oids)
    return _lines(b"\x30" + _length(len(content)) + content)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of `Authorization: Basic ...` (RFC 7617 2: base64 of user ':' password, UTF-8);
    None when the header is absent or another scheme. A Basic header that cannot be read is refused."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidRequest("the Authorization header is not Basic base64 of user:password (RFC 7617)",
                             subject="request") from None
    user, sep, password = text.partition(":")
    if not sep:
        raise InvalidRequest("the Authorization header's credentials have no ':' between user and password",
                             subject="request")
    return user, password


def client_certificate(header: str) -> bytes:
    """The DER App Service puts in X-ARR-ClientCert: the TLS client certificate, base64
    (learn.microsoft.com/azure/app-service/app-service-web-configure-tls-mutual-auth)."""
    try:
        der = base64.b64decode("".join(header.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the X-ARR-ClientCert header is not base64", subject="request") from None
    if der[:1] != b"\x30" or len(der) > 64 * 1024:
        raise InvalidRequest("the X-ARR-ClientCert header does not hold a DER certificate", subject="request")
    return der
