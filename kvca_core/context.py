"""Everything an operation needs, built once: settings, the vault, the CA cache, the publisher.

    async with Context.open(settings) as ctx:
        await operations.renew(ctx, "api")

The Functions app keeps one per process (`shared()`): the credential, the SDK
clients and their connection pools, and the CA cache survive across
invocations of a warm instance.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

from kvca_core.authority import Authority
from kvca_core.notify import notifier_for
from kvca_core.errors import ConfigurationError
from kvca_core.ledger import SETTING as LEDGER_SETTING, Ledger, open_ledger
from kvca_core.ports import CrlPublisher, EventPublisher, NoticeSender, Vault
from kvca_core.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    vault: Vault
    authority: Authority
    publisher: EventPublisher | None
    credential: Any
    _owns_credential: bool = False
    # Where CRLs are published (KVCA_CRL_CONTAINER_URL); None: not configured.
    crl_store: CrlPublisher | None = None
    # The webhook notices go to (KVCA_NOTIFY_WEBHOOK_URL, kvca_core/notify.py); None: not configured.
    notifier: NoticeSender | None = None
    # The CA's ledger (KVCA_LEDGER_TABLE_URL, kvca_core/ledger/): every certificate signed, every revocation.
    ledger: Ledger | None = None

    @classmethod
    def create(cls, settings: Settings | None = None, credential: Any = None) -> "Context":
        """Build (no network yet). `credential=None`: DefaultAzureCredential, owned and closed here."""
        # The rim (kvca_core/rim/) is built here and nowhere else; the operations see the ports.
        from kvca_core.rim.azure import default_credential
        from kvca_core.rim.keyvault import KeyVault

        settings = settings if settings is not None else Settings.from_env()
        owns = credential is None
        credential = credential if credential is not None else default_credential(settings)
        vault = KeyVault(settings, credential)
        publisher = None
        if settings.eventgrid_topic_endpoint:
            from kvca_core.rim.eventgrid import TopicPublisher

            publisher = TopicPublisher(settings, credential, vault.transport)
        crl_store = None
        if settings.crl_container_url:
            from kvca_core.rim.blob import CrlStore  # azure.storage.blob loads only when it is used

            crl_store = CrlStore(settings.crl_container_url, credential)
        authority = Authority(vault, settings.issuing_cas, settings.issuance_policy)
        return cls(settings, vault, authority, publisher, credential, owns, crl_store, notifier_for(settings),
                   _ledger(settings, credential))

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings | None = None, credential: Any = None) -> AsyncIterator["Context"]:
        ctx = cls.create(settings, credential)
        try:
            yield ctx
        finally:
            await ctx.close()

    async def close(self) -> None:
        await self.vault.close()
        if self.publisher is not None:
            await self.publisher.close()
        if self.crl_store is not None:
            await self.crl_store.close()
        if self.notifier is not None:
            await self.notifier.close()
        if self.ledger is not None:
            await self.ledger.close()
        if self._owns_credential and hasattr(self.credential, "close"):
            await self.credential.close()


def _ledger(settings: Settings, credential: Any) -> Ledger:
    """The ledger is not optional: a certificate that is not in it is never released, and a
    revocation lives there. The deployed app therefore refuses to start without its table."""
    if not settings.ledger_table_url:
        raise ConfigurationError(f"{LEDGER_SETTING} is not set: kvca records every certificate it signs and every "
                                 f"revocation in its ledger, and refuses to sign or revoke without it",
                                 subject="settings", hint="the Bicep sets it to the ledger table's URL; off Azure "
                                 "use sqlite:///<absolute path> (make demo does)")
    return open_ledger(settings.ledger_table_url, credential)


# One context per process and event loop. The Functions worker runs every async
# invocation on the same loop, so this is built once per warm instance; a new
# loop (a test, a restarted worker) gets a new one, because aiohttp sessions
# cannot cross loops.
_shared: tuple[asyncio.AbstractEventLoop, Context] | None = None
_shared_lock: asyncio.Lock | None = None


async def shared() -> Context:
    global _shared, _shared_lock
    loop = asyncio.get_running_loop()
    if _shared is not None and _shared[0] is loop:
        return _shared[1]
    if _shared_lock is None or getattr(_shared_lock, "_kvca_loop", None) is not loop:
        _shared_lock = asyncio.Lock()
        _shared_lock._kvca_loop = loop  # type: ignore[attr-defined]
    async with _shared_lock:
        if _shared is not None and _shared[0] is loop:
            return _shared[1]
        ctx = Context.create()
        _shared = (loop, ctx)
        logger.info("kvca context ready vault=%s", ctx.settings.vault_name)
        return ctx


async def reset_shared() -> None:
    """Close and forget the process's context (tests; settings changed)."""
    global _shared
    current, _shared = _shared, None
    if current is not None and current[0] is asyncio.get_running_loop():
        await current[1].close()
