"""Fixtures shared by every test directory: one running Key Vault emulator.

- `emulator_server` (session): the one emulator, started once on a free port.
- `emulator` (function): the same server, emptied before (and after) the test,
  with real time, no faults, no throttling and no subscribers. It does not
  touch os.environ; use `emulator_environ` for code that reads settings.
- `kv_clients` / `kv_aio_clients`: the real SDK clients (certificates,
  secrets, keys) pointed at it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, AsyncIterator, Iterator

import pytest
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.certificates.aio import CertificateClient as AioCertificateClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.aio import KeyClient as AioKeyClient
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets.aio import SecretClient as AioSecretClient

from kvca_core import clock
from kvemulator import Emulator


@dataclasses.dataclass
class KvClients:
    certificates: Any
    secrets: Any
    keys: Any

    @classmethod
    def build(cls, emulator: Emulator, credential: Any, classes: tuple[type, type, type]) -> "KvClients":
        """The three clients (sync or aio classes, in field order) pointed at `emulator`."""
        kwargs = emulator.client_kwargs()
        return cls(*(client(emulator.url, credential, **kwargs) for client in classes))

    def all(self) -> tuple[Any, Any, Any]:
        return self.certificates, self.secrets, self.keys


@pytest.fixture(scope="session")
def emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    em = Emulator(vault_name="kvemulator", tls_dir=tmp_path_factory.mktemp("kvemulator-tls"))
    em.start()
    try:
        yield em
    finally:
        em.stop()


@pytest.fixture
def emulator(emulator_server: Emulator) -> Iterator[Emulator]:
    _fresh(emulator_server)
    try:
        yield emulator_server
    finally:
        _fresh(emulator_server)


def _fresh(em: Emulator) -> None:
    """Empty the emulator and put its clock back on real time, and tell kvca's clock so.

    kvca's "now" follows the last Key Vault answer this process received (kvca_core/clock.py):
    after a test that moved the emulator's clock, kvca would see it back on real time only at
    its next answer. In production one process talks to one vault whose clock does not jump
    back; here the next test may decide before it reads the vault (a CA made on the laptop, a
    signing test that reads none), so the jump back is told here as an answer would tell it."""
    em.clear_controls()
    em.reset()
    real = dt.datetime.now(dt.timezone.utc)
    clock.observe(real, real, source="the emulator (reset)")


@pytest.fixture
def ledger_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ledger of the test's own: the SQLite stand-in (kvca_core/ledger/sqlite.py), in a fresh folder.
    The ledger's own tests (tests/ledger) run the Table Storage one against Azurite."""
    return f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"


@pytest.fixture
def emulator_environ(emulator: Emulator, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """os.environ pointed at the emulator (KVCA_* and the managed-identity endpoint) and a ledger."""
    env = {**emulator.environ(), "KVCA_LEDGER_TABLE_URL": ledger_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def kv_clients(emulator: Emulator) -> Iterator[KvClients]:
    clients = KvClients.build(emulator, emulator.credential(), (CertificateClient, SecretClient, KeyClient))
    try:
        yield clients
    finally:
        for client in clients.all():
            client.close()


@pytest.fixture
async def kv_aio_clients(emulator: Emulator) -> AsyncIterator[KvClients]:
    clients = KvClients.build(emulator, emulator.async_credential(),
                              (AioCertificateClient, AioSecretClient, AioKeyClient))
    try:
        yield clients
    finally:
        for client in clients.all():
            await client.close()
