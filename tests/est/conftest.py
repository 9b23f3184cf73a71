"""Fixtures for the device-enrollment tests: the Functions app's fixtures (tests/app/conftest.py,
reused, not copied) and a fleet CA made by `kvca ca create` (both keys in the vault) whose stored
policy signs external CSRs."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

_TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_TESTS / "app"))  # apphelpers
sys.path.insert(0, str(_TESTS / "signing"))  # signing_helpers (pkilint)
sys.path.insert(0, str(_TESTS / "cli"))  # clifixtures
sys.path.insert(0, str(_TESTS / "consumers"))  # consumers (a foreign CA, mosquitto's files)
sys.path.insert(0, str(_TESTS.parent))  # demo.consumers
_spec = importlib.util.spec_from_file_location("kvca_app_conftest_est", _TESTS / "app" / "conftest.py")
_app_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_app_conftest)
app, ctx = _app_conftest.app, _app_conftest.ctx

from clifixtures import cli_env, kvca  # noqa: E402,F401 (fixtures)
from esthelpers import FLEET, FLEET_POLICY  # noqa: E402


@pytest.fixture
async def fleet(ctx):
    """The app's context with CA `fleet` (EC P-256, keys in the vault) and FLEET_POLICY stored with it."""
    from kvca_core.ca import create_ca

    await create_ca(ctx, FLEET, subject="CN=Fleet Issuing CA, O=kvca tests", key="ec-p256", years=3,
                    policy=FLEET_POLICY)
    return ctx


@pytest.fixture
def fleet_cli(kvca):
    """CA `fleet` made with `kvca ca create` (both keys in the vault), FLEET_POLICY stored with it."""
    import json

    result = kvca("ca", "create", FLEET, "--subject", "CN=Fleet Issuing CA", "--policy", json.dumps(FLEET_POLICY))
    assert result.code == 0, result.err
    return FLEET


@dataclass
class EstSite:
    """kvca behind the test front end: its context, the front end, the fleet CA's chain."""

    ctx: object
    frontend: object
    emulator: object
    root: x509.Certificate
    intermediate: x509.Certificate
    foreign: tuple  # (root certificate, key) of a CA kvca knows nothing of


@pytest.fixture
async def est_site(app, tmp_path, monkeypatch):
    """CA `fleet` (FLEET_POLICY) and the app behind the front end, with client certificates on
    (KVCA_TRUST_CLIENT_CERT_HEADER=true, as the Bicep sets it together with clientCertEnabled)."""
    import asyncio

    from consumers import foreign_root
    from frontend import FrontEnd
    from kvca_core import context
    from kvca_core.ca import create_ca

    monkeypatch.setenv("KVCA_TRUST_CLIENT_CERT_HEADER", "true")
    await context.reset_shared()
    ctx = await context.shared()
    await create_ca(ctx, FLEET, subject="CN=Fleet Issuing CA, O=kvca tests", key="ec-p256", years=3,
                    policy=FLEET_POLICY)
    root = x509.load_der_x509_certificate((await ctx.vault.get_certificate(f"{FLEET}-root")).cer)
    intermediate = x509.load_der_x509_certificate((await ctx.vault.get_certificate(FLEET)).cer)
    foreign = foreign_root("Foreign Device CA")
    frontend = FrontEnd(asyncio.get_running_loop(), tmp_path / "frontend", [root, intermediate, foreign[0]]).start()
    try:
        yield EstSite(ctx, frontend, app, root, intermediate, foreign)
    finally:
        frontend.stop()
