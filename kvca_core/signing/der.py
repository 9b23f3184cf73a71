"""A strict DER reader (ITU-T X.690 section 10) for untrusted input: one element at a time, nothing lazy.

    top = der.read(data)                 # exactly one element, nothing after it
    for child in der.children(top): ...  # its content, element by element
    der.integer(child), der.oid(child), der.boolean(child), der.octets(child)

cryptography parses some structures lazily and refuses what is wrong only when a field is
first touched, sometimes with an exception that is not a ValueError; a request an HTTP
route answers must be judged whole before anything reads it. Only what DER allows passes:
low tag numbers (every tag of the structures kvca reads is below 31), definite lengths in
their shortest form (10.1), minimal INTEGER and OID encodings (8.3.2, 8.19.2), BOOLEAN as
0x00 or 0xFF (11.1). Every refusal is a DerError (a ValueError) saying what and where.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCE, INTEGER, OCTET_STRING, NULL, OID, BOOLEAN, ENUMERATED = 0x30, 0x02, 0x04, 0x05, 0x06, 0x01, 0x0A
_MAX_LENGTH_OCTETS = 4  # no element of an OCSP request comes near 4 GiB


class DerError(ValueError):
    pass


@dataclass(frozen=True)
class Element:
    tag: int  # the identifier octet: class, constructed bit and tag number
    content: bytes
    offset: int  # where the element starts in the outermost input, for messages

    def context(self, number: int, *, constructed: bool = True) -> bool:
        """Whether this is the context-specific tag [number]."""
        return self.tag == (0xA0 if constructed else 0x80) | number


def _element(data: bytes, at: int, base: int) -> tuple[Element, int]:
    if at + 2 > len(data):
        raise DerError(f"truncated element at offset {base + at}")
    tag = data[at]
    if tag & 0x1F == 0x1F:
        raise DerError(f"high tag number at offset {base + at}")
    first = data[at + 1]
    if first < 0x80:
        start, length = at + 2, first
    elif first == 0x80:
        raise DerError(f"indefinite length at offset {base + at} (BER, not DER)")
    else:
        count = first & 0x7F
        if count > _MAX_LENGTH_OCTETS or at + 2 + count > len(data):
            raise DerError(f"length of {count} octets at offset {base + at}")
        raw = data[at + 2:at + 2 + count]
        length = int.from_bytes(raw, "big")
        if raw[0] == 0 or length < 0x80:
            raise DerError(f"length not in its shortest form at offset {base + at}")
        start = at + 2 + count
    end = start + length
    if end > len(data):
        raise DerError(f"element at offset {base + at} claims {length} octets, {len(data) - start} remain")
    return Element(tag, bytes(data[start:end]), base + at), end


def read(data: bytes) -> Element:
    """The one element `data` holds, or DerError (nothing may follow it)."""
    element, end = _element(data, 0, 0)
    if end != len(data):
        raise DerError(f"{len(data) - end} octets after the element")
    return element


def children(parent: Element) -> list[Element]:
    """The elements a constructed element holds, in order."""
    if not parent.tag & 0x20:
        raise DerError(f"primitive element at offset {parent.offset} where a constructed one belongs")
    found, at = [], 0
    header = _header_length(parent)
    while at < len(parent.content):
        element, at = _element(parent.content, at, parent.offset + header)
        found.append(element)
    return found


def _header_length(element: Element) -> int:
    length = len(element.content)
    return 2 if length < 0x80 else 2 + (length.bit_length() + 7) // 8


def expect(element: Element, tag: int, what: str) -> Element:
    if element.tag != tag:
        raise DerError(f"{what} at offset {element.offset}: tag 0x{element.tag:02x}, not 0x{tag:02x}")
    return element


def integer(element: Element, what: str = "INTEGER") -> int:
    content = expect(element, INTEGER, what).content
    if not content:
        raise DerError(f"{what} at offset {element.offset} is empty")
    if len(content) > 1 and (content[0] == 0 and content[1] < 0x80 or content[0] == 0xFF and content[1] >= 0x80):
        raise DerError(f"{what} at offset {element.offset} is not minimally encoded")
    return int.from_bytes(content, "big", signed=True)


def oid(element: Element, what: str = "OBJECT IDENTIFIER") -> str:
    """Dotted text of an OID whose subidentifiers are minimally encoded."""
    content = expect(element, OID, what).content
    if not content or content[-1] & 0x80:
        raise DerError(f"{what} at offset {element.offset} is empty or truncated")
    numbers, value, fresh = [], 0, True
    for octet in content:
        if fresh and octet == 0x80:
            raise DerError(f"{what} at offset {element.offset} is not minimally encoded")
        value, fresh = (value << 7) | (octet & 0x7F), not octet & 0x80
        if fresh:
            numbers.append(value)
            value = 0
    first = min(numbers[0] // 40, 2)
    return ".".join(str(n) for n in (first, numbers[0] - 40 * first, *numbers[1:]))


def boolean(element: Element, what: str = "BOOLEAN") -> bool:
    content = expect(element, BOOLEAN, what).content
    if content not in (b"\x00", b"\xff"):
        raise DerError(f"{what} at offset {element.offset} is not 0x00 or 0xFF")
    return content == b"\xff"


def octets(element: Element, what: str = "OCTET STRING") -> bytes:
    return expect(element, OCTET_STRING, what).content
