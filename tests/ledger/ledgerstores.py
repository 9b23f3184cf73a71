"""The backings of the two ledger stores for the tests (conftest.py's `backing` fixture builds them):
a fresh Azurite table or SQLite file, further ledger instances on it, and a raw writer.
Against Azurite every HTTP request a ledger sends is recorded, and `close` fails if one of them
is not a read or an Insert Entity: the app's custom role grants entities/read and
entities/add/action only."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from pathlib import Path

from azurite import Azurite  # tests/azurite.py

from kvca_core.ledger.sqlite import SqliteLedger
from kvca_core.rim.tables import TableLedger


def allowed_request(method: str, url: str, table: str) -> bool:
    """What the custom role allows and the ledger needs: GET of entities (read, query) and POST
    to the table itself (Insert Entity). PUT (update, upsert), MERGE/PATCH (merge), DELETE, a
    POST to /Tables (create table) or to /$batch are refused by the role."""
    path = url.split("?", 1)[0]
    if method == "GET":
        return f"/{table}(" in path or path.endswith(f"/{table}()")
    return method == "POST" and path.endswith(f"/{table}")


class TableBacking:
    kind = "table"

    def __init__(self, server: Azurite) -> None:
        self.server = server
        self.table = f"ledger{uuid.uuid4().hex[:16]}"
        self.url = f"{server.account_url}/{self.table}"
        self.requests: list[tuple[str, str]] = []
        self._ledgers: list[TableLedger] = []

    async def create(self) -> None:
        """What the Bicep does: the app never creates its table."""
        async with self._admin() as admin:
            await admin.create_table()

    def _admin(self):
        from azure.data.tables.aio import TableClient

        return TableClient(self.server.account_url, self.table, credential=self.server.credential())

    def _record(self, request) -> None:
        self.requests.append((request.http_request.method, request.http_request.url))

    def open(self, **kwargs) -> TableLedger:
        ledger = TableLedger(self.url, self.server.credential(), raw_request_hook=self._record, **kwargs)
        self._ledgers.append(ledger)
        return ledger

    async def raw_insert(self, pk: str, rk: str, row: dict) -> None:
        async with self._admin() as admin:
            await admin.create_entity({**row, "PartitionKey": pk, "RowKey": rk})

    def where(self) -> str:
        return self.url

    async def close(self) -> None:
        for ledger in self._ledgers:
            await ledger.close()
        refused = [(m, u) for m, u in self.requests if not allowed_request(m, u, self.table)]
        assert not refused, f"requests the ledger's role would refuse: {refused}"


class SqliteBacking:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[tuple[str, str]] = []
        self._ledgers: list[SqliteLedger] = []

    async def create(self) -> None:
        pass

    def open(self, **kwargs) -> SqliteLedger:
        ledger = SqliteLedger(self.path, **kwargs)
        self._ledgers.append(ledger)
        return ledger

    async def raw_insert(self, pk: str, rk: str, row: dict | str) -> None:
        """`row` as the store encodes it, or a body text of its own (anything at all)."""
        body = row if isinstance(row, str) else json.dumps(
            {k: {"$b": base64.b64encode(v).decode()} if isinstance(v, bytes) else v for k, v in row.items()})
        with sqlite3.connect(self.path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS ledger_rows (pk TEXT NOT NULL, rk TEXT NOT NULL, "
                       "body TEXT NOT NULL, PRIMARY KEY (pk, rk)) WITHOUT ROWID")
            db.execute("INSERT INTO ledger_rows (pk, rk, body) VALUES (?, ?, ?)", (pk, rk, body))
        db.close()

    def where(self) -> str:
        return str(self.path)

    async def close(self) -> None:
        for ledger in self._ledgers:
            await ledger.close()
