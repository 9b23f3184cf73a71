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

    server = Azurite(tmp_path / "azurite")
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
