"""SqliteLedger: the ledger in one SQLite file, a stand-in for `make demo` on a machine with only
Python, make and openssl (Azurite, the Table service's emulator, needs Node).

The same rows, keys and semantics as the table (rows.py), in one SQL table
`ledger_rows(pk, rk, body)` whose primary key is (pk, rk); `body` is the row as JSON, bytes
as {"$b": base64}. Insert-only like the table's role: the module runs CREATE TABLE IF NOT
EXISTS, INSERT and SELECT, nothing else, and an INSERT of a taken key fails on the primary
key (IntegrityError), which is the "already exists" the ledger builds on. Several processes
may share the file: each INSERT is its own transaction, and SQLite's file lock orders them.

Never in Azure: the deployed app keeps its ledger in Table Storage, where its identity may
only read and insert. A process that App Service or Functions runs (WEBSITE_INSTANCE_ID is
set there, learn.microsoft.com/azure/app-service/reference-app-settings) refuses the stand-in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

from kvca_core import clock
from kvca_core.errors import ConfigurationError, UpstreamError
from kvca_core.ledger.records import Row, malformed
from kvca_core.ledger.rows import Condition, RowLedger

AZURE_MARKER = "WEBSITE_INSTANCE_ID"
_SCHEMA = ("CREATE TABLE IF NOT EXISTS ledger_rows (pk TEXT NOT NULL, rk TEXT NOT NULL, body TEXT NOT NULL, "
           "PRIMARY KEY (pk, rk)) WITHOUT ROWID")
_INSERT = "INSERT INTO ledger_rows (pk, rk, body) VALUES (?, ?, ?)"
_SELECT_ONE = "SELECT body FROM ledger_rows WHERE pk = ? AND rk = ?"
_SELECT_PARTITION = "SELECT pk, rk, body FROM ledger_rows WHERE pk = ? ORDER BY rk LIMIT ?"
_SELECT_RANGE = "SELECT pk, rk, body FROM ledger_rows WHERE pk >= ? AND pk < ? ORDER BY pk, rk LIMIT ?"


def refuse_in_azure(what: str) -> None:
    if os.environ.get(AZURE_MARKER):
        raise ConfigurationError(f"{what} is a stand-in for a machine without Azure (make demo); this process runs "
                                 f"in Azure ({AZURE_MARKER} is set) and keeps its ledger in Table Storage",
                                 subject="KVCA_LEDGER_TABLE_URL",
                                 hint="set it to https://<account>.table.core.windows.net/<table>")


class SqliteLedger(RowLedger):
    def __init__(self, path: str | os.PathLike, *, now: Callable[[], dt.datetime] = clock.now) -> None:
        refuse_in_azure(f"the SQLite ledger {path}")
        super().__init__(now=now)
        self.path = Path(path)
        self._lock = threading.Lock()  # one connection, used by one worker thread at a time
        self._db: sqlite3.Connection | None = None

    def _where(self, pk: str, rk: str) -> str:
        return f"ledger {self.path} row ({pk}, {rk})"

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                db.execute(_SCHEMA)
            except sqlite3.Error as exc:
                raise ConfigurationError(f"cannot open the SQLite ledger ({exc})", subject=f"ledger {self.path}",
                                         hint="KVCA_LEDGER_TABLE_URL=sqlite:///<absolute path in a writable "
                                              "folder>") from None
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        def call() -> Any:
            with self._lock:
                try:
                    return work(self._connection())
                except sqlite3.Error as exc:
                    raise UpstreamError(f"SQLite failed ({type(exc).__name__}: {exc})",
                                        subject=f"ledger {self.path}") from None
        return await asyncio.to_thread(call)

    async def _insert(self, pk: str, rk: str, row: Row) -> bool:
        body = json.dumps({k: {"$b": base64.b64encode(v).decode()} if isinstance(v, bytes) else v
                           for k, v in row.items()})

        def insert(db: sqlite3.Connection) -> bool:
            try:
                db.execute(_INSERT, (pk, rk, body))
            except sqlite3.IntegrityError:
                return False  # the key is taken: nothing written
            return True
        return await self._run(insert)

    async def _read(self, pk: str, rk: str) -> Mapping | None:
        found = await self._run(lambda db: db.execute(_SELECT_ONE, (pk, rk)).fetchone())
        return None if found is None else self._decode(pk, rk, found[0])

    async def _query(self, low: str, high: str | None = None, *, where: Sequence[Condition] = (),
                     top: int | None = None) -> AsyncIterator[tuple[str, str, Mapping]]:
        # `where` is left to RowLedger, which checks every record anyway: a demo's ledger is small.
        limit = -1 if top is None else top
        if high is None:
            rows = await self._run(lambda db: db.execute(_SELECT_PARTITION, (low, limit)).fetchall())
        else:
            rows = await self._run(lambda db: db.execute(_SELECT_RANGE, (low, high, limit)).fetchall())
        for pk, rk, body in rows:
            yield pk, rk, self._decode(pk, rk, body)

    def _decode(self, pk: str, rk: str, body: Any) -> dict[str, Any]:
        """The row a body holds (untrusted: a body that is not this module's JSON is malformed)."""
        try:
            data = json.loads(body) if isinstance(body, str) else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise malformed(self._where(pk, rk), "the body is not a JSON object")
        row: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                try:
                    value = base64.b64decode(value["$b"], validate=True)
                except (KeyError, TypeError, binascii.Error):
                    raise malformed(self._where(pk, rk), f"property {key!r} is neither text nor bytes") from None
            row[key] = value
        return row

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None
        await asyncio.to_thread(close)
