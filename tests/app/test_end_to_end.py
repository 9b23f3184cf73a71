"""End to end: both kinds of CA, every way of asking, signing by every trigger, renewal by the
emulator's own CertificateNearExpiry events, exactly once, and chains that `openssl verify` accepts."""

from __future__ import annotations

import datetime as dt

from azure.keyvault.certificates import CertificatePolicy
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

from kvca_core.ca import create_ca
from kvca_core.vocabulary import CA_TAG
from kvca_core.signing import LocalSigner, create_root

from apphelpers import (
    call_http, chain_from_vault, completed_versions, deliver, emulator_now, import_recipe_ca, openssl_verify,
    run_timer,
)

NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"


async def _root_of(vault, ca: str) -> x509.Certificate:
    return x509.load_der_x509_certificate((await vault.get_certificate(f"{ca}-root")).cer)


async def test_requests_of_every_kind_are_signed_and_renewed_exactly_once(app, ctx, kv_aio_clients):
    roots = {"recipe-ca": await import_recipe_ca(ctx.vault, "recipe-ca")}
    await create_ca(ctx, "kvca-ca", subject="CN=kvca Test Issuing CA", key="ec-p256", years=5)
    roots["kvca-ca"] = await _root_of(ctx.vault, "kvca-ca")
    leaves = {}
    for ca in roots:
        # 1. HTTP issue, signed inline.
        status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
            "name": f"{ca}-http", "ca": ca, "dns_names": [f"http.{ca}.internal"]})
        assert status == 201 and body["action"] == "issued"
        # 2. Requested, announced with Kvca.CertificatePendingRequest, signed by the event trigger.
        status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
            "name": f"{ca}-event", "ca": ca, "dns_names": [f"event.{ca}.internal"], "key": "rsa-2048",
            "sign": False})
        assert status == 201 and body["action"] == "requested"
        # 3. Created pending in the vault directly, as the portal does; the timer's sweep signs it.
        await kv_aio_clients.certificates.create_certificate(f"{ca}-portal", CertificatePolicy(
            issuer_name="Unknown", subject=f"CN=portal.{ca}.internal", san_dns_names=[f"portal.{ca}.internal"],
            validity_in_months=12), tags={CA_TAG: ca})
        leaves.update({f"{ca}-{kind}": ca for kind in ("http", "event", "portal")})

    for event in app.take_events():
        await deliver(event)  # the pending-request events sign; NewVersionCreated ones find nothing to do
    await run_timer()

    first = {}
    for name, ca in leaves.items():
        done = await completed_versions(ctx.vault, name)
        assert len(done) == 1, name
        first[name] = done[0].version
        openssl_verify(await chain_from_vault(ctx.vault, name), roots[ca])

    # 30 days (and an hour) before the leaves expire: the emulator raises CertificateNearExpiry.
    app.take_events()
    latest_expiry = max([(await ctx.vault.get_certificate(n)).expires_on for n in leaves])
    app.clock.set(latest_expiry - dt.timedelta(days=30) + dt.timedelta(hours=1))
    events = app.take_events()
    near = {e["data"]["ObjectName"] for e in events if e["eventType"] == NEAR_EXPIRY}
    assert set(leaves) <= near
    for event in events:
        await deliver(event)
    for name, ca in leaves.items():
        done = await completed_versions(ctx.vault, name)
        assert len(done) == 2, f"{name} has {len(done)} versions"
        current = await ctx.vault.get_certificate(name)
        assert current.version != first[name] and current.tags[CA_TAG] == ca
        openssl_verify(await chain_from_vault(ctx.vault, name), roots[ca])

    # Redelivered events and later sweeps renew nothing more.
    for event in events + app.take_events():
        await deliver(event)
    await run_timer()
    app.clock.advance(days=7)
    await run_timer()
    for event in app.take_events():
        await deliver(event)
    for name in leaves:
        assert len(await completed_versions(ctx.vault, name)) == 2, name


async def _import_foreign(vault, name: str, days_left: int) -> str:
    other_root_key = rsa.generate_private_key(65537, 2048)
    leaf_key = rsa.generate_private_key(65537, 2048)
    now = emulator_now()
    root = await create_root("CN=Elsewhere Root", LocalSigner(other_root_key), years=5, now=now)
    from cryptography.hazmat.primitives import hashes
    leaf = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(f"CN={name}.corp.internal"))
            .issuer_name(root.subject).public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=300)).not_valid_after(now + dt.timedelta(days=days_left))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"{name}.corp.internal")]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(other_root_key, hashes.SHA256()))
    pfx = pkcs12.serialize_key_and_certificates(b"leaf", leaf_key, leaf, [root], NoEncryption())
    imported = await vault.import_certificate(name, pfx, tags={CA_TAG: "recipe-ca"})
    return imported.version


async def test_a_certificate_signed_elsewhere_with_little_life_left_is_renewed_by_event_and_by_sweep(app, ctx):
    root = await import_recipe_ca(ctx.vault, "recipe-ca")
    first = {name: await _import_foreign(ctx.vault, name, days_left=10) for name in ("adopted-ev", "adopted-sw")}
    policy = await ctx.vault.get_policy("adopted-ev")
    assert policy.issuer_name == "Unknown"  # what Key Vault gives an imported certificate
    # The emulator notices the imported versions are inside their last 30 days (at import or at its next scan).
    app.clock.advance(minutes=1)
    near = [e for e in app.take_events()
            if e["eventType"] == NEAR_EXPIRY and e["data"]["ObjectName"] == "adopted-ev"]
    assert len(near) == 1 and near[0]["data"]["Version"] == first["adopted-ev"]
    await deliver(near[0])
    await run_timer()
    for name in first:
        current = await ctx.vault.get_certificate(name)
        assert current.version != first[name], name
        assert len(await completed_versions(ctx.vault, name)) == 2
        chain = await chain_from_vault(ctx.vault, name)
        assert chain[0].issuer.rfc4514_string() == "CN=recipe-ca Intermediate"
        openssl_verify(chain, root)
    # The old version's event again: a no-op.
    await deliver(near[0])
    assert len(await completed_versions(ctx.vault, "adopted-ev")) == 2


async def test_a_leaf_outliving_its_ca_is_capped_at_the_cas_expiry_with_a_warning(app, ctx, caplog):
    from apphelpers import recipe_ca_material
    from kvca_core import operations
    from kvca_core.operations import IssueRequest

    material = await recipe_ca_material("aging-ca", years=3)  # the intermediate: 2 years
    root = await import_recipe_ca(ctx.vault, "aging-ca", material=material)
    ca_expiry = material[2].not_valid_after_utc
    app.clock.set(ca_expiry - dt.timedelta(days=60))
    outcome = await operations.issue(ctx, IssueRequest(name="outlives", ca="aging-ca",
                                                       dns_names=("o.corp.internal",), validity_months=12))
    assert outcome.action == "issued" and outcome.warnings
    assert outcome.not_after <= ca_expiry
    assert any("outlives" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    openssl_verify(await chain_from_vault(ctx.vault, "outlives"), root)
    # A capped leaf is not due at once (two thirds of its short life first): no renewal loop.
    assert (await operations.renew(ctx, "outlives")).action == "skipped"
