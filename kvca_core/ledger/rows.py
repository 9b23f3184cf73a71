"""The ledger's semantics over an insert-only store of rows: written once here, for every store.

A store (table.py, sqlite.py) gives three primitives over rows addressed by a partition key
and a row key, like Azure Table Storage's entities: insert (False when the key exists; never
overwrites), read one, and list a partition (or a range of partitions) in key order. On
those, `RowLedger` keeps one table of rows:

    PartitionKey                   RowKey                 the row
    cert:<ca>                      <serial>               a CertificateRecord
    serial:<serial>                <ca>                   index: which CA holds that serial
    revoked:<ca>                   <serial>               a RevocationRecord
    crlnumber:<ca>:<scope>         <999..9 - number>      one row per CRL number handed out
    crlnumber:<ca>:<scope>         origin                 the partition's first number
    once:<kind>                    <key>                  an insert_once marker and its data

<ca> is the CA's name in lower case (Key Vault names are case-insensitive), <serial>
lower-case hex without leading zeros, <scope> the CA key version in lower case. Every part
is drawn from [0-9a-z-], so no key holds what Table Storage forbids in keys ('/', '\\',
'#', '?', control characters) and ':' always separates. Each question the operations ask
is one partition: a CA's certificates, a serial's CAs, a CA's revocations (never its
certificates: a CRL costs what the CA has revoked), one CRL numbering.

Retried and concurrent calls: an insert that finds its key taken reads the row back. A
certificate is the same one when its sha256 is; a revocation, marker or CRL number carries
the random `writer` of the call that inserted it, so a call whose insert succeeded but whose
answer was lost (the SDK then retries and meets its own row) still knows it was the one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import secrets
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

from kvca_core import clock
from kvca_core.errors import Conflict, InvalidRequest, UpstreamError
from kvca_core.vocabulary import NAME_RE
from kvca_core.ledger.records import (
    LOCATIONS,
    MAX_TEXT,
    CertificateRecord,
    RevocationRecord,
    Row,
    ca_key,
    certificate_of,
    certificate_row,
    malformed,
    revocation_of,
    revocation_row,
    serial_text,
    time_text,
)
from kvca_core.signing.crl import MAX_CRL_NUMBER, crl_number

# A condition a store may apply server-side: (property or "RowKey", "eq" | "lt" | "ge", text).
# RowLedger checks every record again, so a store may also ignore them.
Condition = tuple[str, str, str]

CERT, SERIAL, REVOKED, CRL, ONCE = "cert", "serial", "revoked", "crlnumber", "once"
# Every CA's certificate partition lies in ["cert:", "cert;"): ';' is the character after ':'.
_ALL_CERTS = ("cert:", "cert;")
# CRL numbers are at most 2**159 - 1 (RFC 5280 5.2.3), 48 decimal digits: the row key is
# 10**48 - 1 - number, zero-padded, so that the partition's first row holds the highest.
_DIGITS = 48
_CEILING = 10**_DIGITS - 1
_ORIGIN = "origin"  # sorts after every number: the first row only while none is handed out
# Tries of read-highest-then-insert when other processes take the number in between. Calls of
# one process queue on a lock first, so each try loses only to another process's insert.
_CRL_TRIES = 64
_SCOPE = re.compile(r"[0-9a-z]{1,64}")
_KIND = re.compile(r"[a-z][a-z0-9-]{0,39}")
_MARKER_KEY = re.compile(r"[0-9A-Za-z][0-9A-Za-z._~=-]{0,255}")


_READERS = {CERT: certificate_of, REVOKED: revocation_of}


def _pk(*parts: str) -> str:
    return ":".join(parts)


class RowLedger:
    """The Ledger port (port.py) over a store's three primitives; subclasses give those."""

    def __init__(self, *, now: Callable[[], dt.datetime] = clock.now) -> None:
        self._now = now
        self._locks: dict[str, asyncio.Lock] = {}

    # --- the store's primitives ---------------------------------------------------------------
    async def _insert(self, pk: str, rk: str, row: Row) -> bool:
        """Insert the row; False (and nothing written) when (pk, rk) exists."""
        raise NotImplementedError

    async def _read(self, pk: str, rk: str) -> Mapping | None:
        raise NotImplementedError

    def _query(self, low: str, high: str | None = None, *, where: Sequence[Condition] = (),
               top: int | None = None) -> AsyncIterator[tuple[str, str, Mapping]]:
        """(pk, rk, row) of partition `low` (or of every partition in [low, high)), in key order."""
        raise NotImplementedError

    def _where(self, pk: str, rk: str) -> str:
        """The row's name in messages: the store and both keys."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    # --- certificates -------------------------------------------------------------------------
    async def record_certificate(self, record: CertificateRecord) -> CertificateRecord:
        row = certificate_row(record)
        ca, serial = ca_key(record.ca), str(row["serial"])
        # The index first: a crash between the two inserts leaves an index row pointing at
        # nothing (find_serial skips it, a retry fills it), never a record the index misses.
        await self._insert(_pk(SERIAL, serial), ca, {"kind": "serial-index", "ca": record.ca})
        if await self._insert(_pk(CERT, ca), serial, row):
            return certificate_of(row, self._where(_pk(CERT, ca), serial))
        stored = self._record_at(_pk(CERT, ca), serial, await self._read_back(_pk(CERT, ca), serial))
        if stored.sha256 != row["sha256"]:
            raise Conflict(f"serial {serial} is already recorded for CA '{stored.ca}' with another certificate "
                           f"(sha256 {stored.sha256}, this one {row['sha256']})", subject="ledger",
                           hint="a serial names one certificate of a CA: sign again with a fresh serial")
        return stored

    def _record_at(self, pk: str, rk: str, row: Mapping) -> Any:
        """The record a row of a `cert:` or `revoked:` partition holds; one that names another CA
        or serial than its keys is malformed (a row copied under another key)."""
        kind = pk.split(":", 1)[0]
        record = _READERS[kind](row, self._where(pk, rk))
        if _pk(kind, record.ca.lower()) != pk or record.serial != rk:
            raise malformed(self._where(pk, rk), f"it holds CA '{record.ca}' serial {record.serial}")
        return record

    async def _one(self, kind: str, ca: str, serial: int | str) -> Any:
        pk, rk = _pk(kind, ca_key(ca)), serial_text(serial)
        row = await self._read(pk, rk)
        return None if row is None else self._record_at(pk, rk, row)

    async def _read_back(self, pk: str, rk: str) -> Mapping:
        """The row an insert found in place (insert-only: it is still there)."""
        row = await self._read(pk, rk)
        if row is None:
            raise UpstreamError("the row exists but cannot be read back", subject=self._where(pk, rk))
        return row

    async def certificate(self, ca: str, serial: int | str) -> CertificateRecord | None:
        return await self._one(CERT, ca, serial)

    async def find_serial(self, serial: int | str) -> list[CertificateRecord]:
        pk = _pk(SERIAL, serial_text(serial))
        found = []
        async for _, rk, _row in self._query(pk):
            if not NAME_RE.match(rk) or rk != rk.lower():
                raise malformed(self._where(pk, rk), "the row key is not a CA name")
            record = await self.certificate(rk, serial)
            if record is not None:
                found.append(record)
        return found

    async def certificates(self, ca: str | None = None, *, expiring_before: dt.datetime | None = None,
                           expiring_after: dt.datetime | None = None,
                           location: str | None = None) -> AsyncIterator[CertificateRecord]:
        where: list[Condition] = []
        if expiring_before is not None:
            where.append(("not_after", "lt", time_text(expiring_before)))
        if expiring_after is not None:
            where.append(("not_after", "ge", time_text(expiring_after)))
        if location is not None:
            if location not in LOCATIONS:
                raise InvalidRequest(f"location {str(location)[:40]!r} is not one of {', '.join(LOCATIONS)}",
                                     subject="ledger")
            where.append(("location", "eq", location))
        low, high = (_pk(CERT, ca_key(ca)), None) if ca is not None else _ALL_CERTS
        async for pk, rk, row in self._query(low, high, where=where):
            record = self._record_at(pk, rk, row)
            if expiring_before is not None and not record.not_after < expiring_before:
                continue
            if expiring_after is not None and not record.not_after >= expiring_after:
                continue
            if location is not None and record.location != location:
                continue
            yield record

    # --- revocations --------------------------------------------------------------------------
    async def record_revocation(self, record: RevocationRecord) -> tuple[RevocationRecord, bool]:
        row = revocation_row(record)
        pk, rk = _pk(REVOKED, ca_key(record.ca)), str(row["serial"])
        writer = secrets.token_hex(16)
        if await self._insert(pk, rk, {**row, "writer": writer}):
            return revocation_of(row, self._where(pk, rk)), True
        stored = await self._read_back(pk, rk)
        return self._record_at(pk, rk, stored), stored.get("writer") == writer

    async def revocation(self, ca: str, serial: int | str) -> RevocationRecord | None:
        return await self._one(REVOKED, ca, serial)

    async def revocations(self, ca: str) -> list[RevocationRecord]:
        pk = _pk(REVOKED, ca_key(ca))
        return [self._record_at(pk, rk, row) async for _, rk, row in self._query(pk)]

    # --- CRL numbers --------------------------------------------------------------------------
    async def next_crl_number(self, ca: str, scope: str) -> int:
        """Read the highest number handed out, insert the next; when another process inserted it
        first, read again. The partition's first number is its `origin` row's, fixed by the first
        process to insert it: the clock-derived number (microseconds since the epoch) kvca's
        CRLs carried before the ledger, so the first ledger number is above all of those."""
        if not isinstance(scope, str) or not _SCOPE.fullmatch(scope.lower()):
            raise InvalidRequest(f"CRL scope {str(scope)[:70]!r} is not a key version (1-64 letters and digits)",
                                 subject="ledger")
        pk = _pk(CRL, ca_key(ca), scope.lower())
        writer = secrets.token_hex(16)
        async with self._locks.setdefault(pk, asyncio.Lock()):
            for _ in range(_CRL_TRIES):
                number = await self._after_highest(pk)
                if number > MAX_CRL_NUMBER:
                    raise UpstreamError("the CRL numbers are used up (RFC 5280 5.2.3: 20 octets)",
                                        subject=self._where(pk, _ORIGIN))
                rk = f"{_CEILING - number:0{_DIGITS}d}"
                if await self._insert(pk, rk, {"kind": "crl-number", "number": str(number), "writer": writer}):
                    return number
                stored = await self._read(pk, rk)
                if stored is not None and stored.get("writer") == writer:
                    return number  # our own insert, whose answer was lost and retried
        raise UpstreamError(f"other processes took every CRL number tried ({_CRL_TRIES} tries)",
                            subject=self._where(pk, _ORIGIN))

    async def _after_highest(self, pk: str) -> int:
        async for _, rk, row in self._query(pk, top=1):
            if rk != _ORIGIN:
                if not (len(rk) == _DIGITS and rk.isdigit() and rk.isascii()) or \
                        row.get("number") != str(_CEILING - int(rk)):
                    raise malformed(self._where(pk, rk), "not a CRL number row")
                return _CEILING - int(rk) + 1
            return self._origin_number(pk, row)
        await self._insert(pk, _ORIGIN, {"kind": "crl-origin", "number": str(crl_number(self._now()))})
        return self._origin_number(pk, await self._read_back(pk, _ORIGIN))

    def _origin_number(self, pk: str, row: Mapping) -> int:
        number = row.get("number")
        if row.get("kind") != "crl-origin" or not isinstance(number, str) or not number.isascii() \
                or not number.isdigit() or len(number) > _DIGITS:
            raise malformed(self._where(pk, _ORIGIN), "not a CRL numbering origin")
        return int(number)

    # --- markers ------------------------------------------------------------------------------
    def _marker_key(self, kind: str, key: str) -> tuple[str, str]:
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise InvalidRequest(f"marker kind {str(kind)[:50]!r} must match {_KIND.pattern}", subject="ledger")
        if not isinstance(key, str) or not _MARKER_KEY.fullmatch(key):
            raise InvalidRequest(f"marker key {str(key)[:50]!r} must match {_MARKER_KEY.pattern}", subject="ledger")
        return _pk(ONCE, kind), key

    async def insert_once(self, kind: str, key: str, data: Mapping[str, str]) -> bool:
        pk, rk = self._marker_key(kind, key)
        if not isinstance(data, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in data.items()):
            raise InvalidRequest("marker data must map strings to strings", subject=f"ledger marker {kind}")
        text = json.dumps(dict(data), sort_keys=True)
        if len(text) > MAX_TEXT:
            raise InvalidRequest(f"marker data takes more than {MAX_TEXT} characters", subject=f"ledger marker {kind}")
        writer = secrets.token_hex(16)
        if await self._insert(pk, rk, {"kind": "marker", "data": text, "writer": writer}):
            return True
        stored = await self._read(pk, rk)
        return stored is not None and stored.get("writer") == writer

    async def marker_keys(self, kind: str, *, from_key: str = "") -> list[str]:
        """The keys of `kind`'s markers at or after `from_key`, in key order: one partition query
        (the store may filter on the row key; each key is checked again here)."""
        pk, _ = self._marker_key(kind, "0")
        where: list[Condition] = [("RowKey", "ge", from_key)] if from_key else []
        return [rk async for _, rk, _row in self._query(pk, where=where) if rk >= from_key]

    async def get(self, kind: str, key: str) -> Mapping[str, str] | None:
        pk, rk = self._marker_key(kind, key)
        row = await self._read(pk, rk)
        if row is None:
            return None
        try:
            data = json.loads(row["data"]) if row.get("kind") == "marker" and isinstance(row.get("data"), str) else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise malformed(self._where(pk, rk), "not a marker holding a JSON object of strings")
        return data
