"""Event Grid trigger `kvca_eventgrid` (the infra's event subscription targets this name).

Key Vault's CertificateNearExpiry -> renew (if that version is still current and due);
CertificateNewVersionCreated and kvca's own Kvca.CertificatePendingRequest -> sign_pending.
Other types and other vaults' events are acknowledged and ignored with a log line.

Refusals (not managed, policy violation, unknown CA, malformed event) are
acknowledged: redelivering the same event cannot change the answer. Upstream
failures (Key Vault throttling or down) are raised, so Event Grid redelivers
with backoff (for up to 24 h; docs/keyvault-behaviour.md) and the sweep backs it up.

Event Grid waits 30 s for an answer; after that it counts the delivery failed and delivers the
event again, even while the first invocation still runs (learn.microsoft.com/azure/event-grid/
delivery-and-retry). So a renewal waits at most CREATE_WAIT_SECONDS for its create (a slot of
the vault's create budget, shared by every instance, and the reads before it): past that it
fails fast, nothing created, and Event Grid's own backoff spreads the retries. Once the create
is under way it is never cut: the merge follows. A duplicate finds the renewal claimed by the
first delivery and is acknowledged (operations/coordination.py).
"""

from __future__ import annotations

import logging

import azure.functions as func

from kvca_core import context, events, operations, telemetry
from kvca_core.errors import KvcaError, UpstreamError

logger = logging.getLogger(__name__)
bp = func.Blueprint()

# The create, the re-read, the signing and the merge take a few seconds after it: well inside 30.
CREATE_WAIT_SECONDS = 20.0


def event_to_dict(event: func.EventGridEvent) -> dict:
    try:
        data = event.get_json()
    except ValueError:
        data = None
    return {"id": event.id, "eventType": event.event_type, "subject": event.subject,
            "topic": event.topic, "data": data, "dataVersion": event.data_version}


@bp.function_name("kvca_eventgrid")
@bp.event_grid_trigger(arg_name="event")
async def kvca_eventgrid(event: func.EventGridEvent) -> None:
    ctx = await context.shared()
    try:
        decision = events.decide(event_to_dict(event), vault_name=ctx.settings.vault_name)
    except KvcaError as exc:
        logger.warning("kvca event id=%s ignored: %s", event.id, exc)
        return
    if decision.action is None:
        logger.info("kvca event id=%s type=%s ignored: %s", event.id, event.event_type, decision.reason)
        return
    name = decision.event.name
    try:
        with telemetry.source("event"):
            if decision.action == events.RENEW:
                await operations.within(CREATE_WAIT_SECONDS, operations.renew(ctx, name, version=decision.event.version),
                                        what=f"certificate '{name}'")
            else:
                await operations.sign_pending(ctx, name)
    except UpstreamError as exc:
        logger.warning("kvca event id=%s certificate=%s not done now, Event Grid redelivers it: %s", event.id, name, exc)
        raise  # Event Grid redelivers later
    except KvcaError:
        return  # logged by the operation; a redelivery would be refused the same way
