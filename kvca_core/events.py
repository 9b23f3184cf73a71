"""Event Grid events in and out: parse and validate what arrives, build what kvca publishes.

Every event is untrusted input. kvca reacts to three types (Event Grid schema):

- `Microsoft.KeyVault.CertificateNearExpiry`  -> renew, if the version is still current and due
- `Microsoft.KeyVault.CertificateNewVersionCreated` -> sign_pending, if a request is pending
- `Kvca.CertificatePendingRequest` (kvca's own, published by `issue` and the CLI's
  `request`; data shaped like Key Vault's: VaultName, ObjectType, ObjectName,
  optional Version) -> sign_pending

Everything else, and anything from another vault, is ignored with a reason.
Delivery is at least once and out of order (docs/keyvault-behaviour.md), so the
operations behind each action are idempotent; the event only says "look".
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from kvca_core import clock
from kvca_core.errors import InvalidRequest
from kvca_core.vocabulary import name_problem

NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
NEW_VERSION = "Microsoft.KeyVault.CertificateNewVersionCreated"
PENDING_REQUEST = "Kvca.CertificatePendingRequest"

RENEW = "renew"
SIGN_PENDING = "sign_pending"
_ACTIONS = {NEAR_EXPIRY: RENEW, NEW_VERSION: SIGN_PENDING, PENDING_REQUEST: SIGN_PENDING}

# Versions are 32 hex characters in Key Vault; accept a little more, never "/" or "?".
VERSION_RE = re.compile(r"^[0-9A-Za-z]{1,64}$")
_MAX_FIELD = 2048


@dataclass(frozen=True)
class VaultEvent:
    id: str
    event_type: str
    vault_name: str
    object_type: str
    name: str
    version: str | None
    not_before: dt.datetime | None
    expires_on: dt.datetime | None


@dataclass(frozen=True)
class Decision:
    """What to do with an event: `action` is RENEW, SIGN_PENDING or None (ignore, with reason)."""

    action: str | None
    reason: str
    event: VaultEvent | None = None


def _text(data: Mapping[str, Any], key: str, *, required: bool, where: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{where}: field {key!r} is missing", subject="event")
        return None
    if not isinstance(value, str) or len(value) > _MAX_FIELD:
        raise InvalidRequest(f"{where}: field {key!r} must be a string of at most {_MAX_FIELD} characters, "
                             f"got {type(value).__name__}", subject="event")
    return value


def _epoch(data: Mapping[str, Any], key: str, where: str) -> dt.datetime | None:
    """NBF/EXP: documented as epoch numbers, sampled as strings, captured as null."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidRequest(f"{where}: {key} must be epoch seconds, got a boolean", subject="event")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidRequest(f"{where}: {key}={text[:40]!r} is neither epoch seconds nor a date",
                                     subject="event") from None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    if not isinstance(value, (int, float)) or not (0 <= value < 253402300800):  # year 10000
        raise InvalidRequest(f"{where}: {key}={value!r} is not a valid epoch time", subject="event")
    return dt.datetime.fromtimestamp(value, dt.timezone.utc)


def parse_event(raw: Any) -> VaultEvent:
    """An Event Grid schema event (dict) -> VaultEvent; malformed -> InvalidRequest."""
    if not isinstance(raw, Mapping):
        raise InvalidRequest("an Event Grid event must be a JSON object", subject="event")
    event_id = _text(raw, "id", required=False, where="event") or "?"
    where = f"event {event_id[:64]}"
    event_type = _text(raw, "eventType", required=True, where=where)
    data = raw.get("data")
    if event_type not in _ACTIONS:
        # Not ours: no need to understand its data.
        return VaultEvent(event_id, event_type, "", "", "", None, None, None)
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"{where}: 'data' must be a JSON object", subject="event")
    vault_name = _text(data, "VaultName", required=True, where=where)
    object_type = _text(data, "ObjectType", required=False, where=where) or "Certificate"
    name = _text(data, "ObjectName", required=True, where=where)
    version = _text(data, "Version", required=False, where=where)
    if name_problem(name):
        raise InvalidRequest(f"{where}: ObjectName {name[:130]!r} {name_problem(name)}", subject="event")
    if version is not None and not VERSION_RE.match(version):
        raise InvalidRequest(f"{where}: Version {version[:70]!r} is not a Key Vault version", subject="event")
    return VaultEvent(event_id, event_type, vault_name, object_type, name, version,
                      _epoch(data, "NBF", where), _epoch(data, "EXP", where))


def decide(raw: Any, *, vault_name: str) -> Decision:
    """Parse, then choose: the action for this vault's certificate events, or why not."""
    event = parse_event(raw)
    action = _ACTIONS.get(event.event_type)
    if action is None:
        return Decision(None, f"event type {event.event_type!r} is not one kvca handles", event)
    if event.vault_name.lower() != vault_name.lower():
        return Decision(None, f"event is for vault {event.vault_name!r}, this is {vault_name!r}", event)
    if event.object_type.lower() != "certificate":
        return Decision(None, f"object type {event.object_type!r} is not a certificate", event)
    return Decision(action, event.event_type, event)


def pending_request_event(*, vault_name: str, vault_url: str, name: str,
                          version: str | None = None) -> dict[str, Any]:
    """kvca's own event, Event Grid schema, data shaped like Key Vault's."""
    data: dict[str, Any] = {
        "Id": f"{vault_url.rstrip('/')}/certificates/{name}/pending",
        "VaultName": vault_name,
        "ObjectType": "Certificate",
        "ObjectName": name,
    }
    if version:
        data["Version"] = version
    return {
        "id": str(uuid.uuid4()),
        "subject": name,
        "eventType": PENDING_REQUEST,
        "eventTime": clock.now().isoformat(),
        "data": data,
        "dataVersion": "1",
    }
