"""After `kvca ca rotate`, revocation checking keeps working for the old key's leaves at once: every
still-valid CA key version has its own CRL, signed by that key and named in its leaves' CDP, and the
OCSP responder answers for old and new leaves alike, with no waiting for the sweep to move them."""

from __future__ import annotations

import asyncio

import azure.functions as func
from cryptography import x509

from apphelpers import user_function
from kvca_core import context, revocation
from kvca_core.ca import rotate_ca

from revhelpers import CA, make_leaf, openssl_ocsp, openssl_verify_crl

CRL_URL = "http://crl.rev.internal/api/crl/{ca}/{version}.crl"


async def crl_of_version(ca: str, version: str) -> bytes:
    """GET /api/crl/{ca}/{version}.crl through the registered function."""
    req = func.HttpRequest(method="GET", url=f"http://kvca.example/api/crl/{ca}/{version}.crl", headers={},
                           params={}, route_params={"ca": ca, "version": version}, body=b"")
    resp = await user_function("kvca_crl_version")(req)
    assert resp.status_code == 200 and resp.mimetype == "application/pkix-crl", resp.get_body()[:200]
    return resp.get_body()


def cdp_of(cert: x509.Certificate) -> list[str]:
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return [n.value for p in points for n in p.full_name]


async def test_old_and_new_leaves_are_checked_right_after_a_rotation(revocation_ca, responder_url, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv("KVCA_CRL_URL", CRL_URL)
    await context.reset_shared()
    ctx = await context.shared()
    old_version = (await ctx.vault.get_certificate(CA)).version
    old_good, old_bad = await make_leaf(ctx, "old-good", CA), await make_leaf(ctx, "old-bad", CA)
    assert cdp_of(old_good.cert) == [CRL_URL.format(ca=CA, version=old_version)]

    rotated = await rotate_ca(ctx, CA)
    new_version = rotated.ca.version
    assert new_version != old_version
    new_good = await make_leaf(ctx, "new-good", CA)
    assert new_good.intermediate != old_good.intermediate
    assert cdp_of(new_good.cert) == [CRL_URL.format(ca=CA, version=new_version)]
    await revocation.revoke(ctx, "old-bad", reason="keyCompromise")

    # Each key's CRL, signed by that key: the old leaves verify against the old version's CRL.
    old_crl, new_crl = await crl_of_version(CA, old_version), await crl_of_version(CA, new_version)
    code, output = await asyncio.to_thread(openssl_verify_crl, tmp_path / "og", old_good, [old_crl])
    assert code == 0 and "OK" in output, output
    code, output = await asyncio.to_thread(openssl_verify_crl, tmp_path / "ob", old_bad, [old_crl])
    assert code != 0 and "certificate revoked" in output, output
    code, output = await asyncio.to_thread(openssl_verify_crl, tmp_path / "ng", new_good, [new_crl])
    assert code == 0 and "OK" in output, output
    # The new key's CRL says nothing about the old key's leaves: a fail-closed check needs the old one.
    code, output = await asyncio.to_thread(openssl_verify_crl, tmp_path / "og-new", old_good, [new_crl])
    assert code != 0, output
    assert old_bad.cert.serial_number in {e.serial_number for e in x509.load_der_x509_crl(old_crl)}
    assert old_bad.cert.serial_number not in {e.serial_number for e in x509.load_der_x509_crl(new_crl)}

    # OCSP at once, for both generations, each answer verified by openssl against the leaf's issuer.
    url = responder_url + CA
    for leaf, status in ((old_good, "good"), (old_bad, "revoked"), (new_good, "good")):
        output = await asyncio.to_thread(openssl_ocsp, tmp_path / f"ocsp-{leaf.name}", leaf, url)
        assert "Response verify OK" in output and f"leaf.pem: {status}" in output, (leaf.name, output)
