"""Every trigger through the registered function objects, with real azure.functions values,
against the emulator over HTTPS with the real SDK."""

from __future__ import annotations

import json

import pytest
from azure.keyvault.certificates import CertificatePolicy

from kvca_core import context
from kvca_core.vocabulary import CA_TAG

from apphelpers import (
    call_http, chain_from_vault, completed_versions, deliver, import_recipe_ca, openssl_verify, run_timer,
)


async def test_http_issue_creates_a_managed_certificate_whose_chain_verifies(ctx):
    root = await import_recipe_ca(ctx.vault, "corp-ca")
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "api", "ca": "corp-ca", "dns_names": ["api.corp.internal", "api2.corp.internal"],
        "profile": "server", "key": "ec-p256", "validity_months": 6})
    assert status == 201, body
    assert body["action"] == "issued" and body["serial"] and body["version"]
    current = await ctx.vault.get_certificate("api")
    assert current.tags[CA_TAG] == "corp-ca" and current.version == body["version"]
    policy = await ctx.vault.get_policy("api")
    assert policy.issuer_name == "Unknown" and policy.dns_names == ("api.corp.internal", "api2.corp.internal")
    chain = await chain_from_vault(ctx.vault, "api")
    # leaf, intermediate, root: a server certificate carries the full chain by default
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=api.corp.internal", "CN=corp-ca Intermediate", "CN=corp-ca Root"] and chain[2] == root
    openssl_verify(chain, root)


@pytest.mark.parametrize("raw,fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({"name": "x", "ca": "c", "dns_names": "a.b"}).encode(), "dns_names"),
    (json.dumps({"name": "x", "ca": "c", "colour": "red"}).encode(), "unknown field"),
    (json.dumps({"name": "x", "ca": "c", "validity_months": 0}).encode(), "validity_months"),
    (json.dumps({"name": "x", "ca": "c", "sign": "yes"}).encode(), "'sign'"),
    (json.dumps({"ca": "c"}).encode(), "'name' is required"),
])
async def test_http_issue_with_bad_json_or_fields_is_400_naming_the_problem(app, raw, fragment):
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", raw=raw)
    assert status == 400
    assert body["error"] == "InvalidRequest" and fragment in body["message"]
    assert "Traceback" not in json.dumps(body)


async def test_http_sign_of_an_unknown_certificate_is_404(app):
    status, body, _ = await call_http("kvca_sign", "POST", "certificates/nope/sign", route_params={"name": "nope"})
    assert status == 404 and body["error"] == "NotFound" and "nope" in body["message"]


async def test_http_sign_with_a_malformed_name_is_400(app):
    status, body, _ = await call_http("kvca_sign", "POST", "x", route_params={"name": "../secrets/x"})
    assert status == 400 and body["error"] == "InvalidRequest"


async def test_http_renew_of_an_unmanaged_certificate_is_409_and_changes_nothing(ctx, kv_aio_clients):
    await kv_aio_clients.certificates.create_certificate(
        "selfie", CertificatePolicy.get_default(), _polling_interval=0)
    before = await completed_versions(ctx.vault, "selfie")
    status, body, _ = await call_http("kvca_renew", "POST", "x", route_params={"name": "selfie"})
    assert status == 409 and body["error"] == "NotManaged" and "kvca-ca" in body["message"]
    assert [v.version for v in await completed_versions(ctx.vault, "selfie")] == [v.version for v in before]


async def test_http_issue_refused_by_policy_is_422_and_creates_nothing(app, monkeypatch):
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", json.dumps({"allowed_domains": ["corp.internal"]}))
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp-ca")
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "evil", "ca": "corp-ca", "dns_names": ["www.example.com"]})
    assert status == 422 and body["error"] == "PolicyViolation"
    assert "www.example.com" in body["message"] and "corp.internal" in body["message"]
    names = [v.name async for v in ctx.vault.list_certificates()]
    assert "evil" not in names


async def test_http_issue_with_an_unknown_ca_is_404_and_creates_nothing(ctx):
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "orphan", "ca": "no-such-ca", "dns_names": ["a.corp.internal"]})
    assert status == 404 and "no-such-ca" in body["message"]
    assert [v.name async for v in ctx.vault.list_certificates()] == []


async def test_key_vault_throttling_becomes_503_with_retry_after(app, ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    # More 429s than the SDK retries (each after the service's Retry-After): the throttling reaches kvca.
    app.faults.add(kind="429", route=r"/certificates/busy", count=20, retry_after=0.2)
    status, body, headers = await call_http("kvca_sign", "POST", "x", route_params={"name": "busy"})
    assert status == 503 and body["error"] == "Throttled"
    assert headers.get("retry-after", headers.get("Retry-After")) == "1"


async def test_inventory_lists_managed_certificates_with_days_left_and_state(app, ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    for name, months in (("short", 1), ("long", 12)):
        status, _, _ = await call_http("kvca_issue", "POST", "certificates", body={
            "name": name, "ca": "corp-ca", "dns_names": [f"{name}.corp.internal"], "validity_months": months})
        assert status == 201
    status, body, _ = await call_http("kvca_inventory", "GET", "certificates")
    assert status == 200
    items = body["certificates"]
    assert [i["name"] for i in items] == ["short", "long"]  # soonest expiry first; the CAs are not listed
    assert items[0]["sans"] == ["short.corp.internal"] and items[0]["ca"] == "corp-ca"
    assert items[0]["state"] == "valid" and 27 <= items[0]["days_left"] <= 31
    app.clock.advance(days=25)
    status, body, _ = await call_http("kvca_inventory", "GET", "certificates",
                                      params={"expiring_within_days": "10"})
    assert [(i["name"], i["state"]) for i in body["certificates"]] == [("short", "due")]
    for bad in ("soon", "²", "-1"):  # "²".isdigit() is True in Python, int("²") is not
        status, body, _ = await call_http("kvca_inventory", "GET", "certificates",
                                          params={"expiring_within_days": bad})
        assert status == 400 and body["error"] == "InvalidRequest", bad


async def test_health_is_ok_with_valid_settings_and_names_a_missing_one(app, monkeypatch):
    status, body, _ = await call_http("kvca_health", "GET", "health")
    assert status == 200 and body["status"] == "ok" and body["vault"] == "kvemulator"
    assert body["sweep_schedule"] == "0 0 */6 * * *"
    monkeypatch.delenv("KVCA_VAULT_URL")
    status, body, _ = await call_http("kvca_health", "GET", "health")
    assert status == 500 and body["error"] == "ConfigurationError" and "KVCA_VAULT_URL" in body["message"]


@pytest.mark.parametrize("schedule, named", [
    (None, "KVCA_SWEEP_SCHEDULE is required in the app settings"),    # the host disables the timer
    ("0 */6 * * *", "must be a 6-field NCRONTAB expression"),          # a 5-field (Unix) cron
    ("0 0 */6 * * 8", "the day-of-week field '8' is malformed"),
])
async def test_health_fails_when_the_timer_schedule_would_disable_the_sweep(app, monkeypatch, schedule, named):
    if schedule is None:
        monkeypatch.delenv("KVCA_SWEEP_SCHEDULE")
    else:
        monkeypatch.setenv("KVCA_SWEEP_SCHEDULE", schedule)
    status, body, _ = await call_http("kvca_health", "GET", "health")
    assert status == 500 and body["error"] == "ConfigurationError" and named in body["message"]


async def test_pending_request_event_published_by_issue_is_signed_by_the_event_trigger(app, ctx):
    root = await import_recipe_ca(ctx.vault, "corp-ca")
    app.take_events()
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "queued", "ca": "corp-ca", "dns_names": ["queued.corp.internal"], "sign": False})
    assert status == 201 and body["action"] == "requested" and "published" in body["reason"]
    assert (await ctx.vault.get_pending("queued")).in_progress
    published = [e for e in app.take_events() if e["eventType"] == "Kvca.CertificatePendingRequest"]
    assert len(published) == 1 and published[0]["data"]["ObjectName"] == "queued"
    await deliver(published[0])
    assert (await ctx.vault.get_pending("queued")).status == "completed"
    openssl_verify(await chain_from_vault(ctx.vault, "queued"), root)
    # At-least-once delivery: the same event again is a no-op.
    await deliver(published[0])
    assert len(await completed_versions(ctx.vault, "queued")) == 1


async def test_new_version_created_event_signs_a_pending_new_version(app, ctx, kv_aio_clients):
    await import_recipe_ca(ctx.vault, "corp-ca")
    status, _, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "web", "ca": "corp-ca", "dns_names": ["web.corp.internal"]})
    assert status == 201
    first = await ctx.vault.get_certificate("web")
    # "New Version" in the portal: a create with the certificate's own policy.
    policy = await kv_aio_clients.certificates.get_certificate_policy("web")
    await kv_aio_clients.certificates.create_certificate("web", policy, tags={CA_TAG: "corp-ca"})
    event = {"id": "1", "eventType": "Microsoft.KeyVault.CertificateNewVersionCreated", "data": {
        "VaultName": "kvemulator", "ObjectType": "Certificate", "ObjectName": "web", "Version": first.version,
        "NBF": None, "EXP": None}}
    # Moments after a version completed, a new request may be a racing trigger's duplicate that
    # is about to be withdrawn: it is left for a later pass...
    await deliver(event)
    assert len(await completed_versions(ctx.vault, "web")) == 1
    assert (await ctx.vault.get_pending("web")).in_progress
    # ...and signed once it has outlived that window.
    app.clock.advance(minutes=10)
    await deliver(event)
    done = await completed_versions(ctx.vault, "web")
    assert len(done) == 2 and (await ctx.vault.get_certificate("web")).version != first.version


async def test_event_from_another_vault_changes_nothing(app, ctx, kv_aio_clients):
    await import_recipe_ca(ctx.vault, "corp-ca")
    await kv_aio_clients.certificates.create_certificate("portal", CertificatePolicy(
        issuer_name="Unknown", subject="CN=portal.corp.internal", san_dns_names=["portal.corp.internal"]),
        tags={CA_TAG: "corp-ca"})
    await deliver({"id": "2", "eventType": "Kvca.CertificatePendingRequest", "data": {
        "VaultName": "someone-elses-vault", "ObjectType": "Certificate", "ObjectName": "portal"}})
    assert (await ctx.vault.get_pending("portal")).in_progress


async def test_malformed_event_is_acknowledged_without_touching_the_vault(app, ctx):
    await deliver({"id": "3", "eventType": "Kvca.CertificatePendingRequest", "data": {
        "VaultName": "kvemulator", "ObjectName": "bad/../name"}})
    assert [v async for v in ctx.vault.list_certificates()] == []


async def test_timer_sweep_signs_a_certificate_created_pending_in_the_portal(app, ctx, kv_aio_clients):
    root = await import_recipe_ca(ctx.vault, "corp-ca")
    await kv_aio_clients.certificates.create_certificate("portal", CertificatePolicy(
        issuer_name="Unknown", subject="CN=portal.corp.internal", san_dns_names=["portal.corp.internal"],
        validity_in_months=12), tags={CA_TAG: "corp-ca"})
    await run_timer()
    assert (await ctx.vault.get_pending("portal")).status == "completed"
    chain = await chain_from_vault(ctx.vault, "portal")
    openssl_verify(chain, root)
    assert chain[0].subject.rfc4514_string() == "CN=portal.corp.internal"


async def test_event_trigger_raises_on_key_vault_failure_so_event_grid_redelivers(app, ctx):
    from kvca_core.errors import UpstreamError

    await import_recipe_ca(ctx.vault, "corp-ca")
    status, _, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "flaky", "ca": "corp-ca", "dns_names": ["flaky.corp.internal"], "sign": False})
    assert status == 201
    event = [e for e in app.take_events() if e["eventType"] == "Kvca.CertificatePendingRequest"][0]
    app.faults.add(kind="429", route=r"/certificates/flaky", count=50, retry_after=0.05)
    with pytest.raises(UpstreamError):
        await deliver(event)
    app.faults.clear()
    await deliver(event)  # the redelivery succeeds
    assert (await ctx.vault.get_pending("flaky")).status == "completed"
