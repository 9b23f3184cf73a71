"""Telemetry as Application Insights receives it: the records the registered functions write, taken
by OpenTelemetry's LoggingHandler (the class azure-monitor-opentelemetry's configure_azure_monitor
attaches to the logger it is given, kvca_core.telemetry's: its _configure.py) into an in-memory
exporter. An issue, a
renewal by Key Vault's event, a refusal and a revocation each arrive as one record whose attributes
are the dimensions the alert rules query, and no attribute of any record holds key material."""

from __future__ import annotations

import base64
import datetime as dt
import logging

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from kvca_core import context
from kvca_core.authority import parse_secret

from apphelpers import call_http, deliver, import_recipe_ca

NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"


@pytest.fixture
def exported():
    """The attributes of every record the kvca_core.telemetry logger exports, in order."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    log = logging.getLogger("kvca_core.telemetry")
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)

    def records() -> list[tuple[str, dict]]:
        return [(str(d.log_record.body), dict(d.log_record.attributes or {})) for d in exporter.get_finished_logs()]

    try:
        yield records
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        provider.shutdown()


def one(records, operation: str, outcome: str) -> dict:
    found = [a for _, a in records if a.get("kvca.operation") == operation and a.get("kvca.outcome") == outcome]
    assert len(found) == 1, (operation, outcome, [a for _, a in records if a.get("kvca.operation") == operation])
    return found[0]


async def test_issue_renewal_refusal_and_revocation_are_records_with_dimensions_and_no_key_material(
        app, exported, monkeypatch):
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", '{"corp-ca": {"allowed_domains": ["corp.internal"]}}')
    await context.reset_shared()
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp-ca")
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "api", "ca": "corp-ca", "dns_names": ["api.corp.internal"], "exportable": True})
    assert status == 201, body
    issued = one(exported(), "issue", "issued")
    assert issued["kvca.certificate"] == "api" and issued["kvca.version"] == body["version"]
    assert issued["kvca.serial"] == body["serial"] and issued["kvca.source"] == "http"
    assert issued["kvca.reason"] == "signed by CA 'corp-ca'"

    # Refused: a name outside the CA's policy.
    status, refused_body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "bank", "ca": "corp-ca", "dns_names": ["login.bank.example"]})
    assert status in (400, 403, 422), refused_body
    refused = one(exported(), "issue", "refused")
    assert refused["kvca.certificate"] == "bank" and refused["kvca.kind"] == refused_body["error"]
    assert "login.bank.example" in refused["kvca.reason"] and refused["kvca.source"] == "http"

    # Renewed by Key Vault's NearExpiry event, 30 days before the end.
    current = await ctx.vault.get_certificate("api")
    app.take_events()
    app.clock.set(current.expires_on - dt.timedelta(days=30) + dt.timedelta(hours=1))
    for event in app.take_events():
        if event["eventType"] == NEAR_EXPIRY:
            await deliver(event)
    renewed = one(exported(), "renew", "renewed")
    now_current = await ctx.vault.get_certificate("api")
    assert renewed["kvca.certificate"] == "api" and renewed["kvca.version"] == now_current.version
    assert renewed["kvca.version"] != current.version and renewed["kvca.source"] == "event"
    assert len(renewed["kvca.serial"]) >= 16

    # The private key of either version (as DER base64, DER hex and the PFX's base64), read before the
    # revocation disables the newer one: none of it may appear in any record.
    secrets = []
    for version in (current.version, now_current.version):
        content_type, value = await ctx.vault.get_secret_value("api", version)
        key, _ = parse_secret("api", content_type, value)
        der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        secrets += [base64.b64encode(der).decode()[20:60], value[40:80] if isinstance(value, str) else "",
                    der[10:40].hex()]
    status, revoked_body, _ = await call_http("kvca_revoke", "POST", "certificates/api/revoke",
                                              body={"reason": "keyCompromise"}, route_params={"name": "api"})
    assert status == 200, revoked_body
    revoked = one(exported(), "revoke", "revoked")
    assert revoked["kvca.certificate"] == "api" and revoked["kvca.ca"] == "corp-ca"
    assert revoked["kvca.serial"] == revoked_body["serial"] and revoked["kvca.reason"] == "keyCompromise"
    assert revoked["kvca.version"] == now_current.version and revoked["kvca.source"] == "http"

    everything = exported()
    assert len(everything) >= 4
    for message, attributes in everything:
        texts = [message] + [str(v) for v in attributes.values()]
        for text in texts:
            assert "PRIVATE KEY" not in text and "BEGIN" not in text, text
            assert not any(s and s in text for s in secrets), text
