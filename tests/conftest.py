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
from typing import Any, AsyncIterator, Iterator

import pytest
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.certificates.aio import CertificateClient as AioCertificateClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.aio import KeyClient as AioKeyClient
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets.aio import SecretClient as AioSecretClient

from kvemulator import Emulator


@dataclasses.dataclass
class KvClients:
    certificates: Any
    secrets: Any
    keys: Any


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
    emulator_server.clear_controls()
    emulator_server.reset()
    try:
        yield emulator_server
    finally:
        emulator_server.clear_controls()
        emulator_server.reset()


@pytest.fixture
def emulator_environ(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """os.environ pointed at the emulator (KVCA_* and the managed-identity endpoint)."""
    env = emulator.environ()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def kv_clients(emulator: Emulator) -> Iterator[KvClients]:
    cred, kwargs = emulator.credential(), emulator.client_kwargs()
    clients = KvClients(CertificateClient(emulator.url, cred, **kwargs),
                        SecretClient(emulator.url, cred, **kwargs),
                        KeyClient(emulator.url, cred, **kwargs))
    try:
        yield clients
    finally:
        for client in (clients.certificates, clients.secrets, clients.keys):
            client.close()


@pytest.fixture
async def kv_aio_clients(emulator: Emulator) -> AsyncIterator[KvClients]:
    cred, kwargs = emulator.async_credential(), emulator.client_kwargs()
    clients = KvClients(AioCertificateClient(emulator.url, cred, **kwargs),
                        AioSecretClient(emulator.url, cred, **kwargs),
                        AioKeyClient(emulator.url, cred, **kwargs))
    try:
        yield clients
    finally:
        for client in (clients.certificates, clients.secrets, clients.keys):
            await client.close()
