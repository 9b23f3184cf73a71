"""Refusals: each is a clear outcome or error kind, and the vault is left exactly as it was."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from azure.keyvault.certificates import CertificatePolicy

from kvca_core import context, operations
from kvca_core.errors import NotFound, NotManaged, PolicyViolation
from kvca_core.vocabulary import CA_TAG
from kvca_core.operations import IssueRequest

from apphelpers import call_http, deliver, import_recipe_ca, run_timer, snapshot


async def portal_pending(kv_aio_clients, name: str, dns: str, ca: str | None, issuer: str = "Unknown"):
    await kv_aio_clients.certificates.create_certificate(name, CertificatePolicy(
        issuer_name=issuer, subject=f"CN={dns}", san_dns_names=[dns], validity_in_months=12),
        tags={CA_TAG: ca} if ca else None, _polling_interval=0)


async def test_an_unmanaged_certificate_is_refused_by_every_operation_and_left_alone(app, ctx, kv_aio_clients):
    await import_recipe_ca(ctx.vault, "corp-ca")
    await portal_pending(kv_aio_clients, "untagged", "untagged.corp.internal", ca=None)
    await portal_pending(kv_aio_clients, "selfsigned", "self.corp.internal", ca="corp-ca", issuer="Self")
    before = await snapshot(ctx.vault)
    with pytest.raises(NotManaged, match="no kvca-ca tag"):
        await operations.sign_pending(ctx, "untagged")
    with pytest.raises(NotManaged, match="policy issuer is 'Self'"):
        await operations.renew(ctx, "selfsigned", force=True)
    status, body, _ = await call_http("kvca_sign", "POST", "x", route_params={"name": "untagged"})
    assert status == 409 and body["error"] == "NotManaged"
    summary = await operations.sweep(ctx)
    assert summary.managed == 1 and summary.signed == summary.renewed == summary.failed == 0  # selfsigned: tagged
    assert [o.action for o in summary.outcomes] == ["skipped"]
    assert await snapshot(ctx.vault) == before


async def test_a_ca_certificate_is_never_renewed(app, ctx):
    from kvca_core.ca import create_ca

    await create_ca(ctx, "issuing", subject="CN=Issuing", years=2)
    app.clock.advance(days=700)  # both CA certificates are now within 30 days of expiry
    before = await snapshot(ctx.vault)
    summary = await operations.sweep(ctx)
    assert summary.renewed == 0 and summary.managed == 0
    with pytest.raises(NotManaged, match="CA certificate"):
        await operations.renew(ctx, "issuing", force=True)
    assert await snapshot(ctx.vault) == before


async def test_a_policy_violation_leaves_the_request_pending_and_says_why(app, monkeypatch, kv_aio_clients):
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", json.dumps({"corp-ca": {"allowed_domains": ["corp.internal"]}}))
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp-ca")
    await portal_pending(kv_aio_clients, "outsider", "www.example.com", ca="corp-ca")
    before = await snapshot(ctx.vault)
    with pytest.raises(PolicyViolation) as info:
        await operations.sign_pending(ctx, "outsider")
    assert "www.example.com" in str(info.value) and "corp.internal" in str(info.value)
    status, body, _ = await call_http("kvca_sign", "POST", "x", route_params={"name": "outsider"})
    assert status == 422 and body["error"] == "PolicyViolation" and body["step"]
    summary = await operations.sweep(ctx)
    assert summary.failed == 1 and summary.failures[0][0] == "outsider"
    assert "www.example.com" in summary.failures[0][1]
    assert await snapshot(ctx.vault) == before


async def test_a_cancelled_request_is_a_no_op_that_says_so(app, ctx, kv_aio_clients):
    await import_recipe_ca(ctx.vault, "corp-ca")
    await portal_pending(kv_aio_clients, "cancelled", "c.corp.internal", ca="corp-ca")
    await kv_aio_clients.certificates.cancel_certificate_operation("cancelled")
    before = await snapshot(ctx.vault)
    outcome = await operations.sign_pending(ctx, "cancelled")
    assert outcome.action == "skipped" and "cancelled" in outcome.reason
    await deliver({"id": "x", "eventType": "Kvca.CertificatePendingRequest",
                   "data": {"VaultName": "kvemulator", "ObjectType": "Certificate", "ObjectName": "cancelled"}})
    await run_timer()
    assert await snapshot(ctx.vault) == before


async def test_a_missing_ca_is_refused_before_anything_changes(app, ctx, kv_aio_clients):
    await import_recipe_ca(ctx.vault, "corp-ca")
    await portal_pending(kv_aio_clients, "ghostly", "g.corp.internal", ca="ghost-ca")
    await operations.issue(ctx, IssueRequest(name="renewable", ca="corp-ca", dns_names=("r.corp.internal",)))
    # Its CA disappears: the certificate is re-tagged with a CA that does not exist.
    await ctx.vault.update_properties("renewable", tags={CA_TAG: "ghost-ca"})
    app.clock.advance(days=340)
    before = await snapshot(ctx.vault)
    with pytest.raises(NotFound, match="ghost-ca"):
        await operations.sign_pending(ctx, "ghostly")
    with pytest.raises(NotFound, match="ghost-ca"):
        await operations.renew(ctx, "renewable")
    summary = await operations.sweep(ctx)
    assert summary.failed == 2 and {n for n, _ in summary.failures} == {"ghostly", "renewable"}
    assert await snapshot(ctx.vault) == before


async def test_an_event_from_another_vault_leaves_the_vault_unchanged(app, ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="mine", ca="corp-ca", dns_names=("m.corp.internal",)))
    current = await ctx.vault.get_certificate("mine")
    app.clock.set(current.expires_on - dt.timedelta(days=10))
    before = await snapshot(ctx.vault)
    await deliver({"id": "o", "eventType": "Microsoft.KeyVault.CertificateNearExpiry", "data": {
        "VaultName": "not-this-vault", "ObjectType": "Certificate", "ObjectName": "mine",
        "Version": current.version, "NBF": None, "EXP": "1893456000"}})
    assert await snapshot(ctx.vault) == before


async def test_a_dry_run_sweep_reports_what_it_would_do_and_changes_nothing(app, ctx, kv_aio_clients):
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="old", ca="corp-ca", dns_names=("old.corp.internal",)))
    app.clock.advance(days=340)
    await portal_pending(kv_aio_clients, "fresh", "fresh.corp.internal", ca="corp-ca")
    before = await snapshot(ctx.vault)
    summary = await operations.sweep(ctx, dry_run=True)
    assert summary.dry_run and (summary.renewed, summary.signed, summary.failed) == (1, 1, 0)
    assert {o.name: o.action for o in summary.outcomes} == {"old": "would-renew", "fresh": "would-sign"}
    assert await snapshot(ctx.vault) == before


async def test_describe_tells_managed_state_chain_and_when_it_renews(app, ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="shown", ca="corp-ca", dns_names=("s.corp.internal",)))
    d = await operations.describe(ctx, "shown")
    assert d.managed and d.info.ca == "corp-ca" and d.info.state == "valid" and d.info.sans == ("s.corp.internal",)
    assert d.chain == ("CN=s.corp.internal", "CN=corp-ca Intermediate", "CN=corp-ca Root") and len(d.sha256) == 64
    assert d.renew_at == d.info.not_after - dt.timedelta(days=30)
    ca = await operations.describe(ctx, "corp-ca")
    assert not ca.managed and "never renews CA certificates" in ca.why_not_managed  # tagged by the recipe helper
    body = json.dumps(d.to_dict())
    assert "PRIVATE" not in body


async def test_a_retried_issue_finishes_its_own_request_but_refuses_a_different_one(app, ctx):
    from kvca_core.errors import Conflict

    await import_recipe_ca(ctx.vault, "corp-ca")
    first = IssueRequest(name="retried", ca="corp-ca", dns_names=("retried.corp.internal",))
    assert (await operations.issue(ctx, first, sign=False)).action == "requested"
    before = await snapshot(ctx.vault)
    other = IssueRequest(name="retried", ca="corp-ca", dns_names=("other.corp.internal",))
    with pytest.raises(Conflict, match="a different request for this name is already pending"):
        await operations.issue(ctx, other)
    assert await snapshot(ctx.vault) == before
    # The same request again (an HTTP retry) signs the pending one: one version, the asked-for name.
    outcome = await operations.issue(ctx, first)
    assert outcome.action == "issued"
    assert (await ctx.vault.get_policy("retried")).dns_names == ("retried.corp.internal",)


def test_a_malformed_certificate_from_the_vault_is_a_clear_error_not_a_crash():
    from kvca_core.authority import read_certificate
    from kvca_core.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="certificate 'broken': the vault holds a certificate that cannot"):
        read_certificate(b"\x30\x03\x02\x01\x00", "certificate 'broken'")
