"""How many password-KDF rounds an imported PFX or encrypted PKCS#8 key would cost, read
from its DER before anything is decrypted (cryptography runs as many as the file asks)."""

from __future__ import annotations

from kvemulator._errors import bad_parameter

# Password-based KDFs run as many rounds as the file asks: a PFX or encrypted PKCS#8 key
# asking for billions stalls the emulator's loop. Common exporters use about 2,000
# (Windows 2,000, OpenSSL 2,048), OWASP advises 600,000 for PBKDF2-SHA256; the emulator
# runs at most this many rounds in total over one file, and refuses more before decrypting.
MAX_KDF_ROUNDS = 2_000_000
_DER_NODES = 200_000  # a 1 MB body holds far fewer real elements; more is an attack
_DER_DEPTH = 48


def check_kdf_rounds(der: bytes, what: str) -> None:
    """Refuse `der` (PKCS#12, or an encrypted PKCS#8 key) when its password KDFs would run
    more than MAX_KDF_ROUNDS rounds in all. An iteration count is an INTEGER that directly
    follows an OCTET STRING salt in one SEQUENCE: PBKDF2-params, pkcs-12PbeParams and
    MacData (RFC 8018 A.2, RFC 7292 appendix C and section 4) all have that shape."""
    try:
        counts = _iteration_counts(der)
    except (ValueError, _TooComplex):
        raise bad_parameter(f"The specified {what} content can not be read: it is not valid "
                            "DER/BER, or nests too many elements.") from None
    total = sum(max(0, c) for c in counts)
    if total > MAX_KDF_ROUNDS:
        raise bad_parameter(f"The specified {what} content asks for {total} password-KDF "
                            f"iterations; this emulator runs at most {MAX_KDF_ROUNDS}. "
                            "Export it with a common iteration count (about 2,000).")


class _TooComplex(Exception):
    """Over the node or depth bound: never swallowed like a bad nested parse is, so nothing
    can hide an iteration count behind an exhausted budget."""


def _iteration_counts(der: bytes) -> list[int]:
    counts: list[int] = []
    nodes = [0]

    def elements(buf: bytes, depth: int) -> list[tuple[int, bool, bytes]]:
        """(tag, constructed, content) of each element in buf; BER indefinite lengths too."""
        out, pos = [], 0
        while pos < len(buf):
            if buf[pos] == 0 and buf[pos + 1:pos + 2] == b"\0":  # end-of-contents
                break
            element, pos = one(buf, pos, depth)
            out.append(element)
        return out

    def one(buf: bytes, pos: int, depth: int) -> tuple[tuple[int, bool, bytes], int]:
        nodes[0] += 1
        if nodes[0] > _DER_NODES or depth > _DER_DEPTH:
            raise _TooComplex()
        if pos + 2 > len(buf):
            raise ValueError("truncated")
        tag, first = buf[pos], buf[pos + 1]
        if tag & 0x1F == 0x1F:
            raise ValueError("high tag numbers do not occur in PKCS#12")
        constructed, pos = bool(tag & 0x20), pos + 2
        if first == 0x80:  # indefinite length (BER): children up to end-of-contents
            if not constructed:
                raise ValueError("indefinite primitive")
            start = pos
            while True:
                if buf[pos:pos + 2] == b"\0\0":
                    return (tag, True, buf[start:pos]), pos + 2
                _, pos = one(buf, pos, depth + 1)
        if first & 0x80:
            size = first & 0x7F
            if size == 0 or size > 4 or pos + size > len(buf):
                raise ValueError("bad length")
            length, pos = int.from_bytes(buf[pos:pos + size], "big"), pos + size
        else:
            length = first
        if pos + length > len(buf):
            raise ValueError("truncated")
        return (tag, constructed, buf[pos:pos + length]), pos + length

    def octets(tag: int, constructed: bool, content: bytes, depth: int) -> bytes:
        if not constructed:
            return content
        return b"".join(octets(t, c, body, depth + 1) for t, c, body in elements(content, depth + 1))

    def visit(items: list[tuple[int, bool, bytes]], depth: int) -> None:
        for tag, constructed, content in items:
            if tag in (0x04, 0x24):  # OCTET STRING: often DER inside (authSafe, SafeContents)
                try:
                    visit(elements(octets(tag, constructed, content, depth), depth + 1), depth + 1)
                except ValueError:
                    pass  # opaque bytes (a salt, a digest, a key) that only look like DER for a while
                continue
            if not constructed:
                continue
            children = elements(content, depth + 1)
            for before, child in zip(children, children[1:]):
                if before[0] in (0x04, 0x24) and child[0] == 0x02:
                    counts.append(int.from_bytes(child[2], "big", signed=True) if child[2] else 0)
            visit(children, depth + 1)

    visit(elements(der, 0), 0)
    return counts
