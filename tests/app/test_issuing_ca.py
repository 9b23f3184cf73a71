"""Which CA may sign a leaf, checked on every load: only an intermediate (tag
kvca-role=intermediate, or listed in KVCA_ISSUING_CAS), never a self-signed root, and only while
it is enabled, tagged so and within its validity; a CA without a policy signs nothing."""

from __future__ import annotations

import json

import pytest
from azure.keyvault.certificates import CertificatePolicy

from kvca_core import context, operations
from kvca_core.ca import create_ca
from kvca_core.errors import PolicyViolation
from kvca_core.vocabulary import CA_TAG, ROLE_TAG
from kvca_core.operations import IssueRequest

from apphelpers import call_http, import_recipe_ca, recipe_ca_material, run_timer
from test_refusals import portal_pending, snapshot


async def test_http_issue_under_the_recipes_imported_root_is_refused_and_creates_nothing(ctx):
    """Finding "a leaf signed by the root": POST /api/certificates with ca=corp-ca-root returned 201,
    a leaf outside the intermediate's domains that `openssl verify` accepted."""
    await import_recipe_ca(ctx.vault, "corp-ca")
    before = await snapshot(ctx.vault)
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "bank", "ca": "corp-ca-root", "dns_names": ["login.bank.example"]})
    assert status == 422, body
    assert body["error"] == "PolicyViolation" and "CA 'corp-ca-root'" in body["message"]
    assert "is not an issuing CA" in body["message"] and "KVCA_ISSUING_CAS" in body["message"]
    assert await snapshot(ctx.vault) == before


async def test_a_pending_request_tagged_for_the_root_is_not_signed_by_the_sweep(app, ctx, kv_aio_clients):
    """Finding "a leaf signed by the root": a leaf tagged kvca-ca=corp-ca-root was signed by the sweep."""
    await import_recipe_ca(ctx.vault, "corp-ca")
    await portal_pending(kv_aio_clients, "bank", "login.bank.example", ca="corp-ca-root")
    before = await snapshot(ctx.vault)
    summary = await operations.sweep(ctx)
    assert summary.signed == 0 and summary.failed == 1
    assert summary.failures[0][0] == "bank" and "is not an issuing CA" in summary.failures[0][1]
    await run_timer()  # the timer trigger's sweep: the same refusal
    assert await snapshot(ctx.vault) == before


async def test_even_an_allow_listed_self_signed_root_never_signs(app, monkeypatch):
    """Finding "a leaf signed by the root": naming the root in KVCA_ISSUING_CAS does not make it an issuer."""
    monkeypatch.setenv("KVCA_ISSUING_CAS", "corp-ca-root")
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp-ca")
    with pytest.raises(PolicyViolation, match="is a self-signed root"):
        await operations.issue(ctx, IssueRequest(name="bank", ca="corp-ca-root", dns_names=("login.bank.example",)))


async def test_an_untagged_imported_ca_signs_only_when_kvca_issuing_cas_lists_it(app, monkeypatch):
    """Finding "a leaf signed by the root": any untagged CA certificate could sign. An intermediate
    imported by hand (no kvca-role tag) must be named in KVCA_ISSUING_CAS."""
    ctx = await context.shared()
    material = await recipe_ca_material("hand")
    await import_recipe_ca(ctx.vault, "hand-ca", material=material)
    await ctx.vault.update_properties("hand-ca", None, tags={})  # as `az keyvault certificate import` leaves it
    with pytest.raises(PolicyViolation, match=f"no tag {ROLE_TAG}=intermediate and KVCA_ISSUING_CAS"):
        await operations.issue(ctx, IssueRequest(name="api", ca="hand-ca", dns_names=("api.corp.internal",)))
    monkeypatch.setenv("KVCA_ISSUING_CAS", "other-ca, hand-ca")
    await context.reset_shared()
    ctx = await context.shared()
    outcome = await operations.issue(ctx, IssueRequest(name="api", ca="hand-ca", dns_names=("api.corp.internal",)))
    assert outcome.action == "issued"


async def test_a_ca_without_a_policy_entry_is_refused_with_the_way_to_configure_one(app, monkeypatch):
    """Finding "a leaf signed by the root": a CA with no KVCA_ISSUANCE_POLICY entry got the permissive
    default policy."""
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", json.dumps({"corp-ca": {"allowed_domains": ["corp.internal"]}}))
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp-ca")
    await import_recipe_ca(ctx.vault, "other-ca")
    before = await snapshot(ctx.vault)
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "api", "ca": "other-ca", "dns_names": ["api.anything.example"]})
    assert status == 422 and "CA 'other-ca' has no issuance policy" in body["message"], body
    assert 'set KVCA_ISSUANCE_POLICY to {"other-ca": {"allowed_domains"' in body["message"]
    assert await snapshot(ctx.vault) == before


@pytest.mark.parametrize("change,fragment", [
    ({"enabled": False}, "the CA is disabled"),
    ({"tags": {ROLE_TAG: "root"}}, "is a root CA"),
    ({"tags": {}}, "is not an issuing CA"),
])
async def test_a_warm_instance_refuses_at_once_a_ca_disabled_or_retagged(ctx, kv_aio_clients, change, fragment):
    """Finding "a warm instance keeps signing with a CA an administrator disabled or re-tagged": the
    cache checked only whether the CA's version changed."""
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="first", ca="corp-ca", dns_names=("first.corp.internal",)))
    await kv_aio_clients.certificates.update_certificate_properties("corp-ca", **change)
    before = await snapshot(ctx.vault)
    with pytest.raises(PolicyViolation, match=fragment):
        await operations.issue(ctx, IssueRequest(name="second", ca="corp-ca", dns_names=("second.corp.internal",)))
    assert await snapshot(ctx.vault) == before


async def test_a_cached_ca_that_expired_meanwhile_is_refused(app, ctx):
    """Finding "a warm instance keeps signing": the expiry was checked only when the CA was first loaded."""
    await import_recipe_ca(ctx.vault, "corp-ca", years=2)  # intermediate: 1 year
    await operations.issue(ctx, IssueRequest(name="first", ca="corp-ca", dns_names=("first.corp.internal",)))
    app.clock.advance(days=400)
    with pytest.raises(PolicyViolation, match="the CA certificate expired on"):
        await operations.issue(ctx, IssueRequest(name="second", ca="corp-ca", dns_names=("second.corp.internal",)))


async def test_a_vault_key_disabled_between_load_and_sign_says_the_ca_is_disabled(ctx, kv_aio_clients):
    """Finding "a warm instance keeps signing ...": when the key is in the vault, the vault's 403
    carried the hint to grant roles, which is wrong for a CA an administrator disabled."""
    await create_ca(ctx, "vault-ca", subject="CN=Vault Issuing", years=2)
    loaded = await ctx.authority.load("vault-ca")
    assert loaded.remote
    await kv_aio_clients.certificates.update_certificate_properties("vault-ca", enabled=False)
    with pytest.raises(PolicyViolation) as caught:
        await loaded.issuing.signer.sign_digest(b"to be signed")
    assert "the CA is disabled" in str(caught.value) and "grant" not in str(caught.value)


async def test_a_ca_enabled_and_tagged_again_signs_again(ctx, kv_aio_clients):
    """The cache keeps the key material, not the verdict: undoing the change works at once too."""
    await import_recipe_ca(ctx.vault, "corp-ca")
    await kv_aio_clients.certificates.update_certificate_properties("corp-ca", enabled=False)
    with pytest.raises(PolicyViolation, match="disabled"):
        await operations.issue(ctx, IssueRequest(name="api", ca="corp-ca", dns_names=("api.corp.internal",)))
    await kv_aio_clients.certificates.update_certificate_properties("corp-ca", enabled=True)
    outcome = await operations.issue(ctx, IssueRequest(name="api2", ca="corp-ca", dns_names=("api2.corp.internal",)))
    assert outcome.action == "issued"
    assert (await ctx.vault.get_certificate("api2")).tags[CA_TAG] == "corp-ca"


async def test_a_portal_request_for_a_kvca_created_root_is_refused(ctx, kv_aio_clients):
    """`kvca ca create` tags its root kvca-role=root; a leaf naming it is refused (as before)."""
    await create_ca(ctx, "made", subject="CN=Made Issuing", years=2)
    await kv_aio_clients.certificates.create_certificate("leaf", CertificatePolicy(
        issuer_name="Unknown", subject="CN=leaf.corp.internal", san_dns_names=["leaf.corp.internal"],
        validity_in_months=12), tags={CA_TAG: "made-root"}, _polling_interval=0)
    with pytest.raises(PolicyViolation, match="is a root CA"):
        await operations.sign_pending(ctx, "leaf")


def test_kvca_issuing_cas_is_read_as_names_and_a_bad_name_is_reported_at_start():
    from kvca_core.errors import ConfigurationError
    from kvca_core.settings import Settings

    vault = {"KVCA_VAULT_URL": "https://v.vault.azure.net"}
    assert Settings.from_env({**vault, "KVCA_ISSUING_CAS": " hand-ca, other ,"}).issuing_cas == ("hand-ca", "other")
    assert Settings.from_env(vault).issuing_cas == ()
    with pytest.raises(ConfigurationError, match="KVCA_ISSUING_CAS: CA name 'bad/name' is not a Key Vault object name"):
        Settings.from_env({**vault, "KVCA_ISSUING_CAS": "ok,bad/name"})
