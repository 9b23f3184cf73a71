"""One structured record per operation: a readable log line, and the same facts as attributes.

    telemetry.outcome("renew", outcome)           renewed, skipped, signed, ... of one certificate
    telemetry.refusal("renew", name, exc)         refused (the caller's or the vault's state) or error
    telemetry.record("revoke", "revoked", ...)    anything else: a sweep's summary, a revocation, a CRL

Each record is a `logging` record of the logger "kvca_core.telemetry" whose message is the
familiar `kvca op=renew certificate=api outcome=renewed ...` line and whose attributes
(`extra`) are the custom dimensions Application Insights stores with it: with the Functions host's
OpenTelemetry mode and azure-monitor-opentelemetry (`configure`), every LogRecord attribute
becomes a column of `customDimensions` in the `traces` table, which the alert rules in
infra/app/alerts.bicep query. The dimensions:

    kvca.operation   issue, renew, sign_pending, sweep, cancel, revoke, publish_crl, ocsp, sign_csr, ...
    kvca.outcome     signed, renewed, issued, requested, skipped, failed, refused, error, cancelled, ...
    kvca.certificate, kvca.version, kvca.serial, kvca.ca, kvca.reason, kvca.kind (an error's kind),
    kvca.source      event, timer, http, cli (set by the entry point: `source`)

Only identifiers and reasons go in: names, versions, serials, kinds, and messages that kvca builds
from those (errors.py). Key material never does; `_value` bounds every attribute's length.
"""

from __future__ import annotations

import contextvars
import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator

from kvca_core.errors import KvcaError, NotManaged

logger = logging.getLogger("kvca_core.telemetry")

PREFIX = "kvca."
# Application Insights keeps custom dimension values up to 8,192 characters; a reason longer than
# this is an error message gone astray, cut rather than stored whole.
MAX_VALUE = 1024
SOURCES = ("event", "timer", "http", "cli")

_source: contextvars.ContextVar[str | None] = contextvars.ContextVar("kvca_telemetry_source", default=None)
_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("kvca_telemetry_actor", default=None)


@contextmanager
def source(name: str) -> Iterator[None]:
    """The entry point that runs the operations inside: event, timer, http or cli."""
    token = _source.set(name)
    try:
        yield
    finally:
        _source.reset(token)


def set_actor(who: str) -> None:
    """Who asked, once the entry point knows (an HTTP caller's object id, a CLI user): kept for the
    rest of this task, and written into the ledger as `requested_by` / `revoked_by`."""
    _actor.set(who)


def actor() -> str:
    """Who asked for what the current task does: the caller set by `set_actor`, else the entry
    point (event, timer, http, cli), else "kvca"."""
    return _actor.get() or _source.get() or "kvca"


def _value(value: Any) -> str | int | float | bool:
    if isinstance(value, (bool, int, float)):
        return value
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def attributes(operation: str, outcome: str, **fields: Any) -> dict[str, Any]:
    """The dimensions of one record: `kvca.<field>` for every field that has a value."""
    attrs = {f"{PREFIX}operation": operation, f"{PREFIX}outcome": outcome}
    if _source.get():
        attrs[f"{PREFIX}source"] = _source.get()
    for key, value in fields.items():
        if value is not None and value != "":
            attrs[f"{PREFIX}{key}"] = _value(value)
    return attrs


# The order of the readable line: who first, then the outcome, then the rest (the reason last).
_WHO = ("certificate", "ca", "version", "serial")


def record(operation: str, outcome: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """One record: the `kvca op=... certificate=... outcome=... key=value ... reason=...` line and
    its attributes."""
    attrs = attributes(operation, outcome, **fields)
    shown = {k[len(PREFIX):]: v for k, v in attrs.items()
             if k not in (f"{PREFIX}operation", f"{PREFIX}outcome", f"{PREFIX}source")}
    who = [f"{k}={shown.pop(k)}" for k in _WHO if k in shown]
    reason = shown.pop("reason", None)
    words = [f"op={operation}", *who, f"outcome={outcome}", *(f"{k}={v}" for k, v in shown.items())]
    if reason is not None:
        words.append(f"reason={reason}")
    logger.log(level, "kvca %s", " ".join(words), extra=attrs)


def outcome(operation: str, result) -> None:
    """What an operation did to one certificate (an operations.Outcome)."""
    level = logging.WARNING if result.action == "failed" else logging.INFO
    record(operation, result.action, level=level, certificate=result.name, version=result.version,
           serial=result.serial, reason=result.reason)
    for warning in result.warnings:
        record(operation, "warning", level=logging.WARNING, certificate=result.name, reason=warning)


def refusal(operation: str, name: Any, exc: KvcaError) -> None:
    """An operation refused (the caller's input, the vault's state: HTTP 4xx) or failed (5xx).
    Not managed is an everyday answer (Key Vault sends events for every certificate), not a problem."""
    outcome_name = "refused" if exc.http_status < 500 else "error"
    level = logging.INFO if isinstance(exc, NotManaged) else logging.WARNING
    record(operation, outcome_name, level=level, certificate=name if isinstance(name, str) else None,
           kind=exc.kind, reason=str(exc))


def configure() -> bool:
    """The Functions app's logging: kvca's records at INFO, the Azure SDKs' per-request lines at
    WARNING (they would drown kvca's one record per operation), and the records sent to Application
    Insights through OpenTelemetry when the app has a connection string
    (APPLICATIONINSIGHTS_CONNECTION_STRING, which the Bicep sets): kvca_core/rim/monitor.py.
    Returns whether they are exported."""
    from kvca_core.rim.azure import quiet_azure_logging

    quiet_azure_logging()
    logging.getLogger("kvca_core").setLevel(logging.INFO)
    if not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    from kvca_core.rim.monitor import export_to_application_insights

    return export_to_application_insights("kvca_core")
