"""Event Grid: `TopicPublisher` publishes kvca's own `Kvca.CertificatePendingRequest` event to the
custom topic of KVCA_EVENTGRID_TOPIC_ENDPOINT (`kvca_core.ports.EventPublisher`)."""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlparse

from kvca_core.rim.azure import SharedTransport, client_kwargs
from kvca_core.rim.keyvault import calling
from kvca_core.settings import Settings


class TopicPublisher:
    """Publishes kvca's own events to the custom topic of KVCA_EVENTGRID_TOPIC_ENDPOINT."""

    def __init__(self, settings: Settings, credential, transport: SharedTransport) -> None:
        """`transport`: the vault's (`KeyVault.transport`), so the process keeps one pool."""
        from azure.eventgrid.aio import EventGridPublisherClient

        self.endpoint = settings.eventgrid_topic_endpoint
        self._client = EventGridPublisherClient(self.endpoint, credential, **client_kwargs(transport))

    async def publish(self, event: Mapping[str, Any]) -> None:
        """`event` is an Event Grid schema dict (kvca_core.events.pending_request_event)."""
        from azure.eventgrid import EventGridEvent

        sdk_event = EventGridEvent(subject=event["subject"], event_type=event["eventType"],
                                   data=dict(event["data"]), data_version=event.get("dataVersion", "1"),
                                   id=event.get("id"))
        async with calling(f"Event Grid topic '{urlparse(self.endpoint).hostname}'", service="Event Grid"):
            await self._client.send(sdk_event)

    async def close(self) -> None:
        await self._client.close()

