"""Fixtures for the device-enrollment tests: the Functions app's fixtures (tests/app/conftest.py,
reused, not copied) and a fleet CA made by `kvca ca create` (both keys in the vault) whose stored
policy signs external CSRs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_TESTS / "app"))  # apphelpers
sys.path.insert(0, str(_TESTS / "signing"))  # signing_helpers (pkilint)
sys.path.insert(0, str(_TESTS / "cli"))  # clifixtures
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
