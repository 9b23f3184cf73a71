"""One stored policy, one verdict: a policy stored with the CA by the CLI is what the CLI,
the HTTP API and the Event Grid trigger sign under, even with a looser KVCA_ISSUANCE_POLICY in the
app; a warm app reads it once per version and picks up a change at its next signing."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from azure.keyvault.certificates import CertificatePolicy
from cryptography import x509

from kvca_core import context, events
from kvca_core.cli import main
from kvca_core.vocabulary import CA_TAG

from apphelpers import call_http, deliver

STRICT = {"allowed_domains": ["corp.internal"], "max_validity_days": 90}
LOOSE = json.dumps({"*": {"max_validity_days": 3650}})  # any DNS name, ten years
SECRET_READ = ("GET", "GET /secrets/{name}/{version}")


async def kvca(capsys, *argv: str) -> tuple[int, str, str]:
    """`kvca ARGS` in-process, as a user runs it (its own event loop, in a thread)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def leaf_days(vault, name: str) -> float:
    cert = x509.load_der_x509_certificate((await vault.get_certificate(name)).cer)
    return (cert.not_valid_after_utc - cert.not_valid_before_utc) / dt.timedelta(days=1)


async def portal_request(kv_aio_clients, name: str, dns: str) -> None:
    """A request made in the portal (issuer Unknown, tagged for the CA) for 24 months."""
    await kv_aio_clients.certificates.create_certificate(name, CertificatePolicy(
        issuer_name="Unknown", subject=f"CN={dns}", san_dns_names=[dns], validity_in_months=24),
        tags={CA_TAG: "corp"})


async def app_with(monkeypatch, setting: str):
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", setting)
    await context.reset_shared()
    return await context.shared()


async def test_cli_http_and_event_grid_give_one_verdict_under_the_stored_policy(app, monkeypatch, capsys,
                                                                                 kv_aio_clients):
    # The CLI, run without KVCA_ISSUANCE_POLICY (the finding), stores the CA's policy...
    monkeypatch.delenv("KVCA_ISSUANCE_POLICY")
    code, _, err = await kvca(capsys, "ca", "create", "corp", "--subject", "CN=Corp CA", "--policy", json.dumps(STRICT))
    assert code == 0, err
    # ...and signs under it: a forbidden domain refused, an allowed one capped at 90 days.
    code, _, err = await kvca(capsys, "request", "cli-evil", "--dns", "www.example.com", "--ca", "corp", "--sign")
    assert code == 1 and "'www.example.com'" in err and "corp.internal" in err
    code, _, err = await kvca(capsys, "request", "cli-ok", "--dns", "ok.corp.internal", "--months", "24",
                              "--ca", "corp", "--sign")
    assert code == 0, err

    # The app, whose own setting would allow anything for ten years, gives the same verdicts.
    ctx = await app_with(monkeypatch, LOOSE)
    assert await leaf_days(ctx.vault, "cli-ok") <= 90 + 1 / 288
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "app-evil", "ca": "corp", "dns_names": ["www.example.com"], "validity_months": 24})
    assert status == 422 and body["error"] == "PolicyViolation" and "corp.internal" in body["message"]
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "app-ok", "ca": "corp", "dns_names": ["ok2.corp.internal"], "validity_months": 24})
    assert status == 201, body
    assert await leaf_days(ctx.vault, "app-ok") == await leaf_days(ctx.vault, "cli-ok")

    # Requests made in the portal, announced by kvca's event: the trigger's signing path.
    await portal_request(kv_aio_clients, "portal-evil", "www.example.com")
    await portal_request(kv_aio_clients, "portal-ok", "ok3.corp.internal")
    for name in ("portal-evil", "portal-ok"):
        await deliver(events.pending_request_event(vault_name=ctx.vault.vault_name, vault_url=ctx.vault.vault_url,
                                                   name=name))
    assert (await ctx.vault.get_pending("portal-evil")).in_progress  # refused: left unsigned
    assert await leaf_days(ctx.vault, "portal-ok") == await leaf_days(ctx.vault, "cli-ok")

    # The HTTP API shows the policy as the CLI does.
    code, out, err = await kvca(capsys, "--json", "ca", "policy", "show", "corp")
    assert code == 0, err
    status, body, _ = await call_http("kvca_ca_policy", "GET", "cas/corp/policy", route_params={"ca": "corp"})
    assert status == 200 and body == json.loads(out) and body["source"] == "stored"
    status, body, _ = await call_http("kvca_ca_policy", "GET", "cas/nope/policy", route_params={"ca": "nope"})
    assert status == 404 and "CA 'nope'" in body["message"]


async def test_a_warm_app_reads_the_policy_once_and_follows_a_change_at_its_next_signing(app, monkeypatch, capsys):
    code, _, err = await kvca(capsys, "ca", "create", "corp", "--subject", "CN=Corp CA", "--policy", json.dumps(STRICT))
    assert code == 0, err
    ctx = await app_with(monkeypatch, LOOSE)
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "first", "ca": "corp", "dns_names": ["a.corp.internal"]})
    assert status == 201, body
    app.requests.clear()
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "second", "ca": "corp", "dns_names": ["b.corp.internal"]})
    assert status == 201, body
    assert SECRET_READ not in app.requests, app.requests  # cached by (CA, secret version)

    code, _, err = await kvca(capsys, "ca", "policy", "set", "corp", "--set", "allowed_domains=lab.corp.internal")
    assert code == 0, err
    app.requests.clear()
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "third", "ca": "corp", "dns_names": ["c.corp.internal"]})
    assert status == 422 and "lab.corp.internal" in body["message"], body
    assert app.requests.count(SECRET_READ) == 1
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "fourth", "ca": "corp", "dns_names": ["x.lab.corp.internal"]})
    assert status == 201, body


async def test_a_tag_naming_a_missing_policy_version_refuses_in_the_app_too(app, monkeypatch, capsys):
    code, _, err = await kvca(capsys, "ca", "create", "corp", "--subject", "CN=Corp CA", "--policy", json.dumps(STRICT))
    assert code == 0, err
    ctx = await app_with(monkeypatch, LOOSE)
    current = await ctx.vault.get_certificate("corp")
    await ctx.vault.update_properties("corp", current.version, tags={**current.tags, "kvca-policy": "f" * 32})
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "api", "ca": "corp", "dns_names": ["api.corp.internal"]})
    assert status == 404 and "secret 'corp-policy'" in body["message"], body
    assert "fall back to KVCA_ISSUANCE_POLICY" in body["message"]
    assert "api" not in [v.name async for v in ctx.vault.list_certificates()]
