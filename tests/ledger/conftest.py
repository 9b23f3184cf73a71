"""The two ledger stores behind one parametrized fixture: TableLedger against Azurite's Table
service (tests/azurite.py) and SqliteLedger on a file of the test's.

- `backing`: one store's backing (ledgerstores.py): `backing.open()` gives another ledger
  instance on it (a second "app instance"), `backing.raw_insert` writes a row as a hostile or
  broken writer would; at teardown it fails the test if a ledger sent Azurite a request the
  app's insert-only role would refuse.
- `ledger`: one instance on it.
"""

from __future__ import annotations

import pytest
from azurite import Azurite  # tests/azurite.py
from ledgerstores import SqliteBacking, TableBacking


@pytest.fixture(scope="module")
def azurite_table(tmp_path_factory):
    """Azurite's Table service on loopback for the module; each test gets a table of its own."""
    with Azurite(tmp_path_factory.mktemp("azurite-table"), "table") as server:
        yield server


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
