"""Fixtures for the revocation tests: the Functions app's fixtures (tests/app/conftest.py, reused,
not copied), a kvca-made CA whose keys stay in the vault, and client certificates it issued."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_APP = Path(__file__).resolve().parent.parent / "app"
sys.path.insert(0, str(_APP))  # apphelpers
_spec = importlib.util.spec_from_file_location("kvca_app_conftest", _APP / "conftest.py")
_app_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_app_conftest)
app, ctx = _app_conftest.app, _app_conftest.ctx

from revhelpers import CA, OCSP_URL, POLICY, Leaf, make_leaf  # noqa: E402


@pytest.fixture
async def revocation_ca(app, monkeypatch):
    """The app's context with CA `rev-ca` made by `kvca ca create` (both keys in the vault)."""
    from kvca_core import context
    from kvca_core.ca import create_ca

    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", POLICY)
    monkeypatch.setenv("KVCA_OCSP_URL", OCSP_URL)
    await context.reset_shared()  # rebuilt with the policy
    ctx = await context.shared()
    await create_ca(ctx, CA, subject="CN=Revocation Test CA", key="ec-p256", years=5)
    return ctx


@pytest.fixture
async def leaves(revocation_ca) -> dict[str, Leaf]:
    """Two client+server certificates of rev-ca with exportable keys: `good` and `bad`."""
    return {name: await make_leaf(revocation_ca, name, CA) for name in ("good", "bad")}


@pytest.fixture
def azurite(tmp_path):
    """Azurite's blob service on loopback, stopped (and its data dropped with tmp_path) after the test."""
    from revhelpers import Azurite

    with Azurite(tmp_path / "azurite") as server:
        yield server


@pytest.fixture
async def blob_ctx(revocation_ca, azurite):
    """rev-ca's context publishing to Azurite's container `crl`, public read ('blob'), as
    infra/app/crl-storage.bicep makes it. The store gets Azurite's account key; kvca's own code
    builds it with the process's credential."""
    from azure.storage.blob.aio import ContainerClient

    from kvca_core.rim.blob import CrlStore

    url = f"{azurite.account_url}/crl"
    async with ContainerClient.from_container_url(url, credential=azurite.credential()) as container:
        await container.create_container(public_access="blob")
    revocation_ca.crl_store = CrlStore(url, azurite.credential())
    return revocation_ca


@pytest.fixture
def azurite_tables(tmp_path):
    """Azurite's Table service on loopback, the ledger's store in Azure (kvca_core/rim/tables.py)."""
    from azurite import Azurite  # tests/azurite.py

    with Azurite(tmp_path / "azurite-table", service="table") as server:
        yield server


@pytest.fixture
async def table_ledger(azurite_tables):
    """A factory of TableLedgers on one fresh table, as two app instances would each open theirs. The
    table is made as the Bicep makes it (the app never creates it); Azurite takes its account key,
    where kvca's own code signs in with the process's identity."""
    import uuid

    from azure.data.tables.aio import TableClient

    from kvca_core.rim.tables import TableLedger

    table = f"ledger{uuid.uuid4().hex[:12]}"
    async with TableClient(azurite_tables.account_url, table, credential=azurite_tables.credential()) as admin:
        await admin.create_table()
    opened = []

    def open_one():
        ledger = TableLedger(f"{azurite_tables.account_url}/{table}", azurite_tables.credential())
        opened.append(ledger)
        return ledger

    yield open_one
    for ledger in opened:
        await ledger.close()


@pytest.fixture
async def ledger_ca(revocation_ca, table_ledger):
    """rev-ca's context keeping its ledger in Azurite's Table service."""
    await revocation_ca.ledger.close()
    revocation_ca.ledger = table_ledger()
    return revocation_ca
