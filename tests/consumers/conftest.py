"""Fixtures for the consumer tests: the `kvca` fixtures of tests/cli, and nginx / mosquitto
started on loopback for one test and stopped (their key files deleted) when it ends."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from clifixtures import cli_env, corp, kvca  # noqa: E402,F401 (fixtures)
from demo.consumers import KeyFiles  # noqa: E402


@pytest.fixture
def key_files():
    """Key files written for nginx, mosquitto and their clients (mode 0600), deleted afterwards."""
    files = KeyFiles()
    try:
        yield files
    finally:
        files.remove()


@pytest.fixture
def servers():
    """Servers a test starts; each is stopped when the test ends, whatever happened."""
    started: list = []
    try:
        yield started
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def fleet(kvca, monkeypatch):
    """A CA for devices and their broker, without name constraints, whose policy lets a client
    certificate's CN be a plain device ID (as Event Grid's MQTT broker names clients)."""
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY",
                       json.dumps({"fleet": {"cn_forms": ["dns-name", "ip-address", "device-id"]}}))
    result = kvca("ca", "create", "fleet", "--subject", "CN=Fleet CA")
    assert result.code == 0, result.err
    return "fleet"
