"""Fixtures for the Functions app tests: the emulator (tests/conftest.py) seen through kvca's
settings, and a fresh process context per test. kvca's clock follows the emulator's by itself,
from the Date of its answers (kvca_core/clock.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvca_core import context
from kvca_core.settings import SETTING_NAMES

TEST_POLICY = '{"*": {}}'


@pytest.fixture
async def app(emulator, ledger_url, monkeypatch):
    """The environment the Functions host would give kvca, pointing at the emulator.
    Yields the emulator; `await context.shared()` is the app's own context."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    for key, value in {**emulator.environ(), "KVCA_LEDGER_TABLE_URL": ledger_url}.items():
        monkeypatch.setenv(key, value)
    # An app setting the host itself reads (the timer binding): it comes from the app settings,
    # as local.settings.sample.json and the Bicep give it, never from a default in Python.
    sample = json.loads((Path(__file__).parents[2] / "local.settings.sample.json").read_text())
    for schedule in ("KVCA_SWEEP_SCHEDULE", "KVCA_CRL_SCHEDULE"):
        monkeypatch.setenv(schedule, sample["Values"][schedule])
    # Every CA needs a policy (a CA without one is refused): the defaults, for every CA. A test
    # that is about the policy sets its own.
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", TEST_POLICY)
    await context.reset_shared()
    try:
        yield emulator
    finally:
        await context.reset_shared()


@pytest.fixture
async def ctx(app):
    return await context.shared()
