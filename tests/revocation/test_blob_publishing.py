"""CRLs published as blobs, against Azurite: uploaded on each revocation and by the timer, fetched
by a relying party over plain HTTP with no credential, checked with `openssl verify -crl_check`;
a publishing failure leaves the revocation recorded and says so."""

from __future__ import annotations

import urllib.error

import pytest
from cryptography import x509

from apphelpers import call_http, run_timer
from kvca_core import context, revocation
from kvca_core.ca import create_ca
from kvca_core.errors import UpstreamError
from kvca_core.vocabulary import REVOKED_SERIAL_TAG

from revhelpers import CA, CA2, fetch_over_http, openssl_verify_crl


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


async def test_revocation_publishes_the_crl_blob_that_fails_the_revoked_leaf_over_plain_http(
        blob_ctx, leaves, tmp_path):
    url = blob_ctx.crl_store.url_of(CA)
    with pytest.raises(urllib.error.HTTPError) as missing:
        fetch_over_http(url)  # nothing is published before the first revocation or timer run
    assert missing.value.code == 404

    status, body, _ = await call_http("kvca_revoke", "POST", "certificates/bad/revoke",
                                      body={"reason": "keyCompromise"}, route_params={"name": "bad"})
    assert status == 200 and body["action"] == "revoked", body
    # The CRL of the key that signed the leaf, the one its CDP names; the current key's is <CA>.crl too.
    key_version = (await blob_ctx.vault.get_certificate(CA)).version
    assert body["published"] == blob_ctx.crl_store.url_of(CA, key_version) and body["publish_error"] == ""
    assert fetch_over_http(body["published"])[0] == fetch_over_http(url)[0]

    der, headers = fetch_over_http(url)
    assert headers["content-type"] == "application/pkix-crl"
    max_age = int(headers["cache-control"].split("max-age=")[1])
    crl = x509.load_der_x509_crl(der)
    assert 0 < max_age < (crl.next_update_utc - crl.last_update_utc).total_seconds()
    assert crl.get_revoked_certificate_by_serial_number(leaves["bad"].cert.serial_number) is not None
    assert crl.is_signature_valid(leaves["bad"].intermediate.public_key())

    code, output = openssl_verify_crl(tmp_path / "bad", leaves["bad"], [der])
    assert code != 0 and "certificate revoked" in output, output
    code, output = openssl_verify_crl(tmp_path / "good", leaves["good"], [der])
    assert code == 0, output

    # Revoking again changes nothing and publishes nothing new.
    status, body, _ = await call_http("kvca_revoke", "POST", "certificates/bad/revoke",
                                      body={"reason": "keyCompromise"}, route_params={"name": "bad"})
    assert status == 200 and body["action"] == "already-revoked" and body["published"] == ""
    assert fetch_over_http(url)[0] == der


async def test_the_timer_publishes_every_managed_cas_crl(blob_ctx, leaves):
    ctx = blob_ctx
    await create_ca(ctx, CA2, subject="CN=Second Revocation Test CA", key="ec-p256", years=5)
    await revocation.revoke(ctx, "bad", reason="superseded")
    assert await context.shared() is ctx  # the timer runs with this context, so with its store
    await run_timer("kvca_publish_crls")

    published = {}
    for ca in (CA, CA2):
        der, headers = fetch_over_http(ctx.crl_store.url_of(ca))
        assert headers["content-type"] == "application/pkix-crl"
        published[ca] = x509.load_der_x509_crl(der)
        issuer = x509.load_der_x509_certificate((await ctx.vault.get_certificate(ca)).cer)
        assert published[ca].is_signature_valid(issuer.public_key()) and published[ca].issuer == issuer.subject
    assert len(published[CA]) == 1 and len(published[CA2]) == 0
    # Roots are not published by the app (their CRL is signed by the operator's identity), nor leaves.
    assert set(await revocation.managed_cas(ctx)) == {CA, CA2}

    # Idempotent: a second run overwrites each blob with a CRL from the same records.
    await run_timer("kvca_publish_crls")
    again = x509.load_der_x509_crl(fetch_over_http(ctx.crl_store.url_of(CA))[0])
    assert [r.serial_number for r in again] == [r.serial_number for r in published[CA]]
    assert _number(again) >= _number(published[CA])


async def test_a_publishing_failure_keeps_the_revocation_and_says_so(blob_ctx, leaves, azurite):
    ctx = blob_ctx
    azurite.stop()
    status, body, _ = await call_http("kvca_revoke", "POST", "certificates/bad/revoke",
                                      body={"reason": "keyCompromise"}, route_params={"name": "bad"})
    assert status == 200 and body["action"] == "revoked", body
    assert body["published"] == "" and "could not reach Blob storage" in body["publish_error"]
    assert body["serial"] == format(leaves["bad"].cert.serial_number, "x")
    version = await ctx.vault.get_certificate("bad", body["version"])
    assert version.tags[REVOKED_SERIAL_TAG] == body["serial"] and not version.enabled
    # The app's route still serves the new CRL (signed on revocation, before the upload failed).
    crl = await revocation.publish_crl(ctx, CA)
    assert crl.get_revoked_certificate_by_serial_number(leaves["bad"].cert.serial_number) is not None
    # The timer reports the failure (a failed run in Application Insights) rather than passing.
    with pytest.raises(UpstreamError, match="not published"):
        await run_timer("kvca_publish_crls")


async def test_an_older_crl_never_replaces_a_newer_one_in_the_blob(blob_ctx, leaves):
    """Two instances sign at once and the older CRL's upload lands last: the blob keeps the
    newer CRL (its number is in the blob's metadata), so no revocation is hidden."""
    store = blob_ctx.crl_store
    older = await revocation.publish_crl(blob_ctx, CA)
    await revocation.revoke(blob_ctx, "bad", reason="keyCompromise")  # signs and publishes a newer CRL
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    published = x509.load_der_x509_crl(fetch_over_http(store.url_of(CA))[0])
    assert number(published) > number(older)
    await store.publish(CA, revocation.crl_der(older), max_age=60, number=number(older))
    kept = x509.load_der_x509_crl(fetch_over_http(store.url_of(CA))[0])
    assert number(kept) == number(published)
    assert kept.get_revoked_certificate_by_serial_number(leaves["bad"].cert.serial_number) is not None
    # A newer one still replaces it.
    await store.publish(CA, revocation.crl_der(older), max_age=60, number=number(published) + 1)
    assert fetch_over_http(store.url_of(CA))[0] == revocation.crl_der(older)
