"""Key Vault's Event Grid events: build them, keep an outbox, deliver to subscribers.

Fields and types follow Microsoft's schema page (learn.microsoft.com/azure/event-grid/
event-schema-key-vault):
Event Grid schema, `data` with Id, VaultName, ObjectType, ObjectName, Version,
NBF and EXP (epoch seconds as numbers).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import threading
import uuid
from typing import Any, Callable

import aiohttp

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 10_000  # a long-running emulator nobody drains must not grow without end
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "kvemulator"

Event = dict[str, Any]


def _event_time(when: dt.datetime) -> str:
    # Event Grid writes 7 fractional digits; Python gives 6, padded (the SDK parses both).
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


class Events:
    def __init__(self, *, vault_name: str, now: Callable[[], dt.datetime]) -> None:
        self._lock = threading.Lock()
        self.vault_name = vault_name
        self.base_url = "https://127.0.0.1"
        self._now = now
        self._outbox: collections.deque[Event] = collections.deque(maxlen=OUTBOX_LIMIT)
        self._queue: list[Event] = []
        self._callbacks: list[Callable[[Event], None]] = []
        self._webhooks: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def topic(self) -> str:
        return (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
                f"Microsoft.KeyVault/vaults/{self.vault_name}")

    def certificate_event(self, kind: str, name: str, version: str, nbf: int | None,
                          exp: int | None) -> Event:
        return {
            "id": str(uuid.uuid4()),
            "topic": self.topic,
            "subject": name,
            "eventType": f"Microsoft.KeyVault.{kind}",
            "eventTime": _event_time(self._now()),
            "data": {"Id": f"{self.base_url}/certificates/{name}/{version}",
                     "VaultName": self.vault_name, "ObjectType": "Certificate",
                     "ObjectName": name, "Version": version, "NBF": nbf, "EXP": exp},
            "dataVersion": "1",
            "metadataVersion": "1",
        }

    def emit_certificate(self, kind: str, name: str, version: str, nbf: int | None,
                         exp: int | None) -> None:
        """The vault's hook: record now, deliver at the next flush()."""
        self.publish([self.certificate_event(kind, name, version, nbf, exp)])

    def publish(self, events: list[Event]) -> None:
        with self._lock:
            self._outbox.extend(events)
            if self._callbacks or self._webhooks:
                self._queue.extend(events)
        for event in events:
            log.info("event %s %s", event.get("eventType") or event.get("type"), event.get("subject"))

    def take(self) -> list[Event]:
        with self._lock:
            events = list(self._outbox)
            self._outbox.clear()
        return events

    def peek(self) -> list[Event]:
        with self._lock:
            return list(self._outbox)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)
        return unsubscribe

    def subscribe_webhook(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL {url!r} must be http:// or https://")
        with self._lock:
            if url not in self._webhooks:
                self._webhooks.append(url)

    def clear(self) -> None:
        """Drop the outbox, the queue and every subscriber (per-test reset)."""
        with self._lock:
            self._outbox.clear()
            self._queue.clear()
            self._callbacks.clear()
            self._webhooks.clear()

    def flush(self) -> None:
        """Deliver queued events: callbacks now, webhooks as tasks on the loop."""
        with self._lock:
            queue, self._queue = self._queue, []
            callbacks, webhooks = list(self._callbacks), list(self._webhooks)
        if not queue:
            return
        for event in queue:
            for callback in callbacks:
                try:
                    callback(event)
                except Exception:  # a subscriber's bug must not break the vault
                    log.exception("event subscriber %r failed", callback)
        if webhooks and self._loop is not None:
            for url in webhooks:
                task = self._loop.create_task(self._post(url, queue))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, events: list[Event]) -> None:
        # Event Grid posts an array with header aeg-event-type: Notification and
        # retries with backoff; here: three tries, 0.5 s then 1 s apart.
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for attempt in range(3):
            try:
                async with self._session.post(url, json=events,
                                              headers={"aeg-event-type": "Notification"},
                                              timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    if resp.status < 300:
                        return
                    log.warning("webhook %s answered %s", url, resp.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("webhook %s failed: %s", url, type(exc).__name__)
            await asyncio.sleep(0.5 * (attempt + 1))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
