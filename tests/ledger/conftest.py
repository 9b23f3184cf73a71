"""The two ledger stores behind one parametrized fixture: TableLedger against Azurite's Table
service (tests/azurite.py) and SqliteLedger on a file of the test's.

- `backing`: one store's backing (a fresh table, or a fresh SQLite file); `backing.open()` gives
  another ledger instance on it (a second "app instance"), `backing.raw_insert` writes a row as
  a hostile or broken writer would. Against Azurite every HTTP request a ledger sends is
  recorded, and the test fails at teardown if one of them is not a read or an Insert Entity:
  the app's custom role grants entities/read and entities/add/action only.
- `ledger`: one instance on it.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from pathlib import Path

import pytest
from azurite import Azurite  # tests/azurite.py

from kvca_core.ledger.sqlite import SqliteLedger
from kvca_core.ledger.table import TableLedger


@pytest.fixture(scope="module")
def azurite_table(tmp_path_factory):
    """Azurite's Table service on loopback for the module; each test gets a table of its own."""
    server = Azurite(tmp_path_factory.mktemp("azurite-table"), "table")
    server.start()
    try:
        yield server
    finally:
        server.stop()


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


@pytest.fixture(params=["table", "sqlite"])
async def backing(request, tmp_path):
    if request.param == "table":
        store = TableBacking(request.getfixturevalue("azurite_table"))
    else:
        store = SqliteBacking(tmp_path / "ledger.sqlite")
    await store.create()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def ledger(backing):
    return backing.open()
