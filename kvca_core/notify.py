"""Webhook notifications: a failed renewal, a CA nearing expiry (or expired), a revocation, devices
that have not re-enrolled.

    KVCA_NOTIFY_WEBHOOK_URL=https://...    one POST of one JSON shape per notice; empty: off

The operations call these functions at the end (`renewals_failed`, `ca_warnings`, `revoked`,
`devices_due`); each is a no-op without a webhook and never raises: a notice that cannot be
delivered is a log line (the webhook's host and the HTTP status, never the URL, which carries
the webhook's token), and the operation's own result stands.

One shape for Slack and Microsoft Teams:
- Slack incoming webhooks show `text` (api.slack.com/messaging/webhooks; `text`, `blocks` and
  `attachments` are the message fields, docs.slack.dev/tools/node-slack-sdk/reference/webhook/
  interfaces/IncomingWebhookSendArguments); a legacy attachment's plain-text summary is
  `fallback`, which the card attachment carries, so Slack reads it as a well-formed attachment.
- Teams Workflows ("When a Teams webhook request is received") take Adaptive Cards only, as a
  message with `attachments` of contentType application/vnd.microsoft.card.adaptive
  (learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using,
  "Known issues": "Workflows support Adaptive Cards only"); the retired Office 365 connector
  read the same `type: message` envelope.
- `kvca` holds the machine-readable fields, versioned (`kvca.version`), for anything else
  that listens (a Logic App, a ticketing hook).

Nothing secret goes into a notice: certificate and CA names, versions, serials, dates and
kvca's own messages (which never hold key material, errors.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence


from kvca_core import clock
from kvca_core.errors import KvcaError
from kvca_core.vocabulary import NOTIFIED_TAG

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RENEWAL_FAILED, CA_EXPIRING, CA_EXPIRED, REVOKED = "renewal-failed", "ca-expiring", "ca-expired", "certificate-revoked"
DEVICES_DUE = "devices-not-re-enrolled"
# The ledger marker that a device certificate's state (due, expired) was told: once, by any instance.
DEVICE_TOLD_KIND = "device-told"
# A sweep with hundreds of failures (a disabled CA) tells them in one notice, naming the first
# ones: Teams refuses messages over 28 KB (learn.microsoft.com, Teams webhook limits).
MAX_LISTED = 20
MAX_REASON = 300
# Key Vault allows 15 tags per object (docs/keyvault-behaviour.md); the day's mark needs one.
MAX_TAGS = 15


@dataclass(frozen=True)
class Notice:
    event: str
    title: str  # one line: what happened, to what
    detail: str = ""  # more lines, plain text
    facts: tuple[tuple[str, str], ...] = ()  # shown as a table in Teams
    fields: Mapping[str, Any] = field(default_factory=dict)  # the machine-readable part (kvca.*)


def payload(notice: Notice, *, vault: str, now: dt.datetime) -> dict[str, Any]:
    """The one JSON body every webhook gets."""
    text = notice.title + (f"\n{notice.detail}" if notice.detail else "")
    body: list[dict[str, Any]] = [{"type": "TextBlock", "text": notice.title, "weight": "Bolder", "wrap": True}]
    if notice.detail:
        body.append({"type": "TextBlock", "text": notice.detail, "wrap": True})
    if notice.facts:
        body.append({"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in notice.facts]})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.2", "body": body}
    return {
        "type": "message",
        "text": text,
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                         "fallback": notice.title, "content": card}],
        "kvca": {"version": SCHEMA_VERSION, "event": notice.event, "vault": vault,
                 "time": now.replace(microsecond=0).isoformat(), **notice.fields},
    }


def notifier_for(settings):
    """The webhook of KVCA_NOTIFY_WEBHOOK_URL (kvca_core/rim/webhook.py), or None when it is not set."""
    if not settings.notify_webhook_url:
        return None
    from kvca_core.rim.webhook import Notifier  # aiohttp loads only when a webhook is configured

    return Notifier(settings.notify_webhook_url)


def _short(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


# --- the three notices ---------------------------------------------------------------------------
async def renewals_failed(ctx, failures: Sequence[tuple[str, str]], *, source: str,
                          background: bool = False) -> bool:
    """One notice for the failures of one run: the sweep's (every failure of the sweep, however
    many: one message, not one per certificate), or one renew/sign from an event or HTTP.
    `background`: post it (Notifier.post) rather than wait for the webhook; returns True then."""
    notifier = getattr(ctx, "notifier", None)
    if notifier is None or not failures:
        return False
    listed = [{"certificate": name, "reason": _short(reason)} for name, reason in failures[:MAX_LISTED]]
    if len(failures) == 1:
        name, reason = failures[0]
        title = f"kvca: renewal of certificate '{name}' failed ({source})"
        detail = _short(reason)
    else:
        title = f"kvca: {len(failures)} certificates failed to renew ({source})"
        detail = "\n".join(f"- {f['certificate']}: {f['reason']}" for f in listed)
        if len(failures) > MAX_LISTED:
            detail += f"\n… and {len(failures) - MAX_LISTED} more (see the sweep's log lines outcome=failed)"
    return await _deliver(ctx, Notice(
        RENEWAL_FAILED, title, detail, facts=(("vault", ctx.settings.vault_name), ("failed", str(len(failures)))),
        fields={"source": source, "failed": len(failures), "failures": listed,
                "truncated": len(failures) > MAX_LISTED}), background)


async def _deliver(ctx, notice: Notice, background: bool) -> bool:
    body = payload(notice, vault=ctx.settings.vault_name, now=clock.now())
    if background:
        ctx.notifier.post(notice.event, body)
        return True
    return await ctx.notifier.send(notice.event, body)


def _ca_notice(warning) -> Notice:
    event = CA_EXPIRED if warning.state == "expired" else CA_EXPIRING
    return Notice(event, f"kvca: {warning.message}", f"What to do: {warning.hint}",
                  facts=(("CA", warning.ca), ("role", warning.role), ("notAfter", warning.not_after.isoformat()),
                         ("days left", str(warning.days_left))),
                  fields={"ca": warning.ca, "role": warning.role, "ca_version": warning.version,
                          "not_after": warning.not_after.isoformat(), "days_left": warning.days_left,
                          "message": warning.message, "hint": warning.hint})


async def _claim_today(ctx, warning, mark: str) -> bool:
    """Mark the CA version as told today (tag NOTIFIED_TAG = "<date> <state>"): False when a
    sweep already did. Key Vault has no conditional update, so two sweeps at the same moment
    may both send (a rare duplicate, accepted); every later sweep that day sees the mark. The
    tags are re-read just before the write, so the write keeps every other tag (the CA's
    policy pointer, kvca-role) as it is now. A mark that cannot be written (no right to
    update, 15 tags already) does not stop the notice: a duplicate beats silence."""
    try:
        current = await ctx.vault.get_certificate(warning.ca, warning.version)
        tags = dict(current.tags)
        if tags.get(NOTIFIED_TAG) == mark:
            return False
        if NOTIFIED_TAG not in tags and len(tags) >= MAX_TAGS:
            logger.warning("kvca notify ca=%s outcome=unmarked reason=the CA version has %s tags, Key Vault's "
                           "limit; notices for it may repeat within a day", warning.ca, len(tags))
            return True
        await ctx.vault.update_properties(warning.ca, warning.version, tags={**tags, NOTIFIED_TAG: mark})
    except KvcaError as exc:
        logger.warning("kvca notify ca=%s outcome=unmarked kind=%s reason=%s", warning.ca, exc.kind, exc)
    return True


async def ca_warnings(ctx, warnings: Iterable) -> int:
    """A notice per CA warning, at most one per CA version, state and UTC day. Returns how many were sent."""
    notifier = getattr(ctx, "notifier", None)
    if notifier is None:
        return 0
    sent = 0
    today = clock.now().date().isoformat()
    for warning in warnings:
        if await _claim_today(ctx, warning, f"{today} {warning.state}"):
            sent += await _deliver(ctx, _ca_notice(warning), False)
    return sent


async def revoked(ctx, revocation, *, background: bool = True) -> bool:
    """A notice for one revocation that took effect now (not for a repeated, idempotent one);
    in the background by default: the revocation's caller is waiting for its answer."""
    notifier = getattr(ctx, "notifier", None)
    if notifier is None:
        return False
    r = revocation
    crl = f"the new CRL could not be published yet ({_short(r.publish_error)}); the CRL timer retries" \
        if r.publish_error else "the CA's CRL lists it from now on"
    return await _deliver(ctx, Notice(
        REVOKED, f"kvca: certificate '{r.name}' was revoked ({r.reason})",
        f"serial {r.serial}, version {r.version}, CA '{r.ca}'; {crl}",
        facts=(("certificate", r.name), ("serial", r.serial), ("reason", r.reason), ("CA", r.ca)),
        fields={"certificate": r.name, "certificate_version": r.version, "serial": r.serial, "reason": r.reason,
                "ca": r.ca, "revoked_at": r.revoked_at.isoformat(), "crl_published": not r.publish_error}),
        background)


async def devices_due(ctx, devices: Sequence) -> int:
    """One notice for the devices (inventory items of location external) whose newest certificate is
    due or expired and that were not told of in that state before: each certificate and state is
    told once, by whichever instance inserts its ledger marker first. Returns how many were new.

    The markers are keyed by the certificate's expiry date first, so one query of the markers from
    the earliest listed expiry on finds those already told: a sweep that has nothing new to tell
    reads once and inserts nothing, however many devices stay listed."""
    notifier = getattr(ctx, "notifier", None)
    if notifier is None or not devices:
        return 0
    try:
        earliest = min(d.not_after for d in devices)
        told = set(await ctx.ledger.marker_keys(DEVICE_TOLD_KIND, from_key=f"{earliest:%Y%m%d}"))
    except KvcaError as exc:  # unread: the inserts below still tell each one once
        logger.warning("kvca notify event=%s outcome=unread kind=%s reason=%s", DEVICES_DUE, exc.kind, exc)
        told = set()
    new = []
    for device in devices:
        key = _told_key(device)
        if key in told:
            continue
        try:
            if await ctx.ledger.insert_once(DEVICE_TOLD_KIND, key, {"device": device.name, "ca": device.ca}):
                new.append(device)
        except KvcaError as exc:  # the ledger unreachable: told again next time rather than never
            logger.warning("kvca notify device=%s outcome=unmarked kind=%s reason=%s", device.name, exc.kind, exc)
            new.append(device)
    if not new:
        return 0
    listed = [{"device": d.name, "ca": d.ca, "serial": d.serial, "state": d.state,
               "not_after": d.not_after.isoformat(), "days_left": d.days_left} for d in new[:MAX_LISTED]]
    expired = sum(1 for d in new if d.state == "expired")
    title = f"kvca: {len(new)} device(s) have not re-enrolled ({expired} already expired)"
    detail = "\n".join(f"- {d['device']} (CA {d['ca']}): {d['state']}, notAfter {d['not_after']}" for d in listed)
    if len(new) > MAX_LISTED:
        detail += f"\n… and {len(new) - MAX_LISTED} more (kvca list shows them, state due or expired)"
    await _deliver(ctx, Notice(DEVICES_DUE, title, detail, facts=(("devices", str(len(new))), ("expired", str(expired))),
                               fields={"devices": listed, "count": len(new), "expired": expired,
                                       "truncated": len(new) > MAX_LISTED}), False)
    return len(new)


def _told_key(device) -> str:
    """`<expiry yyyymmdd>~<ca>~<serial>~<state>`: the ledger marker that `device` was told of in its state."""
    return f"{device.not_after:%Y%m%d}~{device.ca.lower()}~{device.serial}~{device.state}"
