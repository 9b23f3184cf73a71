"""Revocation end to end: revoke by HTTP and by the operation, the record in the vault (once, even
when two triggers race), the CRL fetched from the app's own route, `openssl verify -crl_check`
and `-crl_check_all` with the root's CRL, pkilint, the sweep and the inventory."""

from __future__ import annotations

import asyncio

from cryptography import x509

from apphelpers import call_http, run_timer
from kvca_core import operations, revocation
from kvca_core.errors import InvalidRequest, NotManaged
from kvca_core.vocabulary import REVOKED_AT_TAG, REVOKED_SERIAL_TAG, REVOKED_TAG

from revhelpers import CA, fetch_crl, openssl_verify_crl, pkilint_crl_findings

import pytest


async def test_revoked_leaf_fails_crl_check_and_valid_one_passes(revocation_ca, leaves, tmp_path):
    ctx = revocation_ca
    status, body, _ = await call_http("kvca_revoke", "POST", "certificates/bad/revoke",
                                      body={"reason": "keyCompromise"}, route_params={"name": "bad"})
    assert status == 200, body
    assert body["action"] == "revoked" and body["serial"] == format(leaves["bad"].cert.serial_number, "x")
    status, der, headers = await fetch_crl(CA)
    assert status == 200 and headers["Content-Type"].startswith("application/pkix-crl")
    crl = x509.load_der_x509_crl(der)
    entry = crl.get_revoked_certificate_by_serial_number(leaves["bad"].cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(leaves["good"].cert.serial_number) is None
    assert crl.is_signature_valid(leaves["good"].intermediate.public_key())

    code, output = openssl_verify_crl(tmp_path / "bad", leaves["bad"], [der])
    assert code != 0 and "certificate revoked" in output, output
    code, output = openssl_verify_crl(tmp_path / "good", leaves["good"], [der])
    assert code == 0, output

    # -crl_check_all: every level needs a CRL; the root's is signed with the root's key (the CLI's job).
    root_crl = revocation.crl_der(await revocation.sign_root_crl(ctx, CA))
    code, output = openssl_verify_crl(tmp_path / "all-good", leaves["good"], [der, root_crl], check_all=True)
    assert code == 0, output
    code, output = openssl_verify_crl(tmp_path / "all-bad", leaves["bad"], [der, root_crl], check_all=True)
    assert code != 0 and "certificate revoked" in output, output
    code, output = openssl_verify_crl(tmp_path / "no-root-crl", leaves["good"], [der], check_all=True)
    assert code != 0 and "unable to get certificate CRL" in output, output
    # A revoked intermediate fails every leaf below it.
    root_crl = revocation.crl_der(await revocation.sign_root_crl(ctx, CA, revoke_intermediate="cACompromise"))
    code, output = openssl_verify_crl(tmp_path / "inter-revoked", leaves["good"], [der, root_crl], check_all=True)
    assert code != 0 and "certificate revoked" in output, output

    for which in (der, root_crl):
        assert pkilint_crl_findings(which) == []


async def test_revoking_twice_or_concurrently_leaves_one_record(revocation_ca, leaves):
    ctx = revocation_ca
    results = await asyncio.gather(*(revocation.revoke(ctx, "bad", reason="superseded") for _ in range(4)))
    assert {r.serial for r in results} == {format(leaves["bad"].cert.serial_number, "x")}
    again = await revocation.revoke(ctx, "bad", reason="keyCompromise")
    assert again.action == "already-revoked" and again.reason == "superseded"
    versions = [v async for v in ctx.vault.list_versions("bad")]
    records = [v for v in versions if REVOKED_SERIAL_TAG in v.tags]
    assert len(records) == 1 and not records[0].enabled
    assert records[0].tags[REVOKED_TAG] == "superseded" and records[0].tags[REVOKED_AT_TAG]
    crl = await revocation.publish_crl(ctx, CA)
    assert len(crl) == 1


async def test_crl_number_increases_with_each_signing(revocation_ca, leaves):
    ctx = revocation_ca
    first = await revocation.publish_crl(ctx, CA)
    await revocation.revoke(ctx, "bad", reason="unspecified", serial=format(leaves["bad"].cert.serial_number, "X"))
    second = await revocation.publish_crl(ctx, CA)
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(second) > number(first)
    entry = second.get_revoked_certificate_by_serial_number(leaves["bad"].cert.serial_number)
    assert entry is not None and len(entry.extensions) == 0  # RFC 5280 5.3.1: no reason code for unspecified
    assert second.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == \
        leaves["bad"].intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


async def test_sweep_never_renews_a_revoked_certificate_and_inventory_says_revoked(revocation_ca, leaves, app):
    ctx = revocation_ca
    await revocation.revoke(ctx, "bad", reason="cessationOfOperation")
    app.clock.advance(days=340)  # both are due now
    await run_timer()
    versions = [v async for v in ctx.vault.list_versions("bad")]
    assert len(versions) == 1
    assert len([v async for v in ctx.vault.list_versions("good")]) == 2
    states = {i.name: i.state for i in (await operations.inventory_report(ctx)).certificates}
    assert states["bad"] == "revoked"
    assert (await operations.describe(ctx, "bad")).info.state == "revoked"


async def test_revoke_refuses_what_kvca_does_not_manage_and_bad_reasons(revocation_ca, leaves):
    ctx = revocation_ca
    with pytest.raises(NotManaged):
        await revocation.revoke(ctx, CA, reason="keyCompromise")  # the intermediate itself
    with pytest.raises(InvalidRequest, match="certificateHold"):
        await revocation.revoke(ctx, "good", reason="certificateHold")
    status, body, _ = await call_http("kvca_revoke", "POST", "certificates/good/revoke",
                                      body={"reason": "keyCompromise", "extra": 1}, route_params={"name": "good"})
    assert status == 400 and "extra" in body["message"]
    status, body, _ = await call_http("kvca_revoke", "POST", "certificates/good/revoke", body={},
                                      route_params={"name": "good"})
    assert status == 400 and "reason" in body["message"]
    assert (await ctx.vault.get_certificate("good")).enabled


async def test_replacing_a_revoked_certificate_gives_a_valid_version_and_the_record_stays_behind(
        revocation_ca, leaves):
    """`kvca renew NAME` replaces a revoked certificate: the new version must not take over the
    revocation tags (it would read as revoked and the sweep would never renew it)."""
    ctx = revocation_ca
    await revocation.revoke(ctx, "bad", reason="keyCompromise")
    outcome = await operations.renew(ctx, "bad", now=True, force=True)
    assert outcome.action == operations.RENEWED, outcome
    current = await ctx.vault.get_certificate("bad")
    assert current.version == outcome.version and current.enabled
    assert not set(current.tags) & {REVOKED_TAG, REVOKED_AT_TAG, REVOKED_SERIAL_TAG}, current.tags
    states = {i.name: i.state for i in (await operations.inventory_report(ctx)).certificates}
    assert states["bad"] == "valid"
    crl = await revocation.publish_crl(ctx, CA)
    assert [entry.serial_number for entry in crl] == [leaves["bad"].cert.serial_number]


async def test_a_damaged_or_reenabled_mirror_changes_nothing_and_a_second_revoke_writes_it_again(revocation_ca,
                                                                                                leaves):
    """The vault's tags are a mirror, not the record: garbled tags and a re-enabled version neither
    drop the entry from the CRL nor change the first revocation; revoking again writes the mirror
    anew and answers "already-revoked" with the ledger's record."""
    ctx = revocation_ca
    revoked = await revocation.revoke(ctx, "bad", reason="keyCompromise")
    current = await ctx.vault.get_certificate("bad")
    damaged = {**current.tags, REVOKED_SERIAL_TAG: "-5", REVOKED_AT_TAG: "yesterday", REVOKED_TAG: "oops"}
    await ctx.vault.update_properties("bad", revoked.version, enabled=True, tags=damaged)
    ctx.__dict__.pop("_kvca_crl_cache", None)  # a fresh CRL, from the ledger
    crl = await revocation.publish_crl(ctx, CA)
    assert [e.serial_number for e in crl] == [leaves["bad"].cert.serial_number]
    again = await revocation.revoke(ctx, "bad", reason="superseded")
    assert (again.action, again.reason, again.revoked_at) == ("already-revoked", "keyCompromise", revoked.revoked_at)
    mirrored = await ctx.vault.get_certificate("bad")
    assert not mirrored.enabled and mirrored.tags[REVOKED_SERIAL_TAG] == format(leaves["bad"].cert.serial_number, "x")
    assert mirrored.tags[REVOKED_TAG] == "keyCompromise"
