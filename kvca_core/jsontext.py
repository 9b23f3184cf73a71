"""JSON from outside, parsed with a nesting limit checked before the parser runs.

`json.loads` recurses once per `[` or `{`: thirty thousand of them in a 64 KB
body raise RecursionError from inside the C scanner (an HTTP 500 and a stack
trace in the log), and catching it afterwards would still have spent the
stack. So the raw text is scanned first, without recursion, and anything
nested deeper than the limit is refused as bad input, naming the rule.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

# kvca's own documents are shallow: an issue request is an object of lists (depth 2), the
# access rules are three levels, a batch of requests four. 32 leaves room and stays far from
# the interpreter's recursion limit (1000).
MAX_DEPTH = 32

_STRUCTURE = re.compile(rb'["\[\]{}]')
# A JSON string: a quote, runs of anything but quote or backslash, each backslash with the
# byte it escapes (Friedl's "unrolled loop", so long strings are matched in C, not per byte).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DELTA = [1 if b in b"[{" else -1 for b in range(256)]  # only brackets reach it


class TooDeep(ValueError):
    """The document nests arrays/objects deeper than the limit (a ValueError, like json's own errors)."""

    def __init__(self, what: str, limit: int, position: int) -> None:
        self.limit = limit
        self.position = position
        super().__init__(f"{what} nests arrays or objects more than {limit} levels deep "
                         f"(at byte {position}); the limit is {limit}")


def depth_exceeded_at(raw: bytes, limit: int = MAX_DEPTH) -> int | None:
    """Byte offset of the first `[` or `{` that opens level `limit + 1`, or None.

    Brackets inside strings do not count. Malformed text is left to the parser
    (an unterminated string simply ends the scan)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return None  # the usual case, decided without a loop
    # A bound on the depth computed in C: strings removed, only brackets kept. It can
    # only overestimate (an unterminated string's brackets still count), so the exact
    # scan below runs only for a document that may be too deep.
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if max(accumulate(map(_DELTA.__getitem__, brackets)), default=0) <= limit:
        return None
    return _exact_scan(raw, limit)


def _exact_scan(raw: bytes, limit: int) -> int | None:
    depth = 0
    position = 0
    while True:
        found = _STRUCTURE.search(raw, position)
        if found is None:
            return None
        at = found.start()
        char = raw[at]
        if char == 0x22:  # '"'
            string = _STRING.match(raw, at)
            if string is None:
                return None
            position = string.end()
            continue
        if char in (0x5B, 0x7B):  # '[', '{'
            depth += 1
            if depth > limit:
                return at
        else:
            depth -= 1
        position = at + 1


class DuplicateKey(ValueError):
    """An object names the same key twice. RFC 8259 4 leaves the meaning open and parsers differ
    (json keeps the last, others the first): a body `{"name": "a", "name": "b"}` could mean one
    thing to a proxy that checked it and another to kvca, so it is refused."""

    def __init__(self, what: str, key: str) -> None:
        self.key = key
        super().__init__(f"{what} names the key {key[:60]!r} twice in one object")


def loads(raw: bytes | str, *, what: str = "the JSON text", limit: int = MAX_DEPTH) -> Any:
    """`json.loads` after the depth check, refusing repeated keys; raises TooDeep, DuplicateKey or
    json.JSONDecodeError (all ValueError)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    at = depth_exceeded_at(data, limit)
    if at is not None:
        raise TooDeep(what, limit, at)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                raise DuplicateKey(what, key)
            obj[key] = value
        return obj

    return json.loads(raw, object_pairs_hook=pairs)
