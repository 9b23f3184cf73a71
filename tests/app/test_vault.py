"""The vault adapter and the CA cache against the emulator: error kinds, the keys API signer,
refresh on a new CA version, and no key material in any log line."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from urllib.parse import urlparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from kvca_core import operations
from kvca_core.ca import create_ca
from kvca_core.errors import Conflict, NotFound, Throttled, UpstreamError
from kvca_core.model import CertificatePolicy, KeySpec
from kvca_core.vocabulary import CA_TAG
from kvca_core.operations import IssueRequest
from kvca_core.rim.keyvault import KeyVault

from apphelpers import chain_from_vault, import_recipe_ca, openssl_verify

POLICY = CertificatePolicy(issuer_name="Unknown", subject="CN=x.corp.internal", dns_names=("x.corp.internal",))


async def test_service_errors_become_kvca_error_kinds(app, ctx):
    with pytest.raises(NotFound, match="certificate 'missing'"):
        await ctx.vault.get_certificate("missing")
    assert await ctx.vault.get_pending("missing") is None
    await ctx.vault.create_certificate("busy", POLICY, tags={CA_TAG: "corp-ca"})
    with pytest.raises(Conflict, match="pending"):
        await ctx.vault.create_certificate("busy", POLICY)
    app.faults.add(kind="500", route=r"/certificates/broken", count=20)
    # Fewer, quicker retries than production's (which back off for ~15 s on a 500) keep this test short.
    impatient = KeyVault(ctx.settings, ctx.credential, retry={"retry_total": 1, "retry_backoff_factor": 0.05})
    try:
        with pytest.raises(UpstreamError, match="HTTP 500") as info:
            await impatient.get_certificate("broken")
        assert not isinstance(info.value, Throttled)
    finally:
        await impatient.close()
    app.faults.add(kind="429", route=r"/certificates/hot", count=20, retry_after=0.1)
    with pytest.raises(Throttled) as info:
        await ctx.vault.get_certificate("hot")
    assert info.value.retry_after == pytest.approx(0.1)


async def test_a_few_429s_are_retried_after_retry_after_and_succeed(app, ctx):
    await ctx.vault.create_certificate("patient", POLICY, tags={CA_TAG: "corp-ca"})
    app.faults.add(kind="429", route=r"/certificates/patient", count=3, retry_after=0.1)
    assert (await ctx.vault.get_pending("patient")).in_progress


@pytest.mark.parametrize("key,algorithm", [("ec-p256", "ES256"), ("ec-p384", "ES384"), ("rsa-2048", "PS256"),
                                           ("rsa-2048", "RS256")])
async def test_keys_api_sign_verifies_with_the_certificates_public_key(ctx, key, algorithm):
    spec = KeySpec.parse(key)
    created = await ctx.vault.create_certificate("signer", CertificatePolicy(
        issuer_name="Self", subject="CN=signer", key=spec))
    public = x509.load_der_x509_certificate(created.cer).public_key()
    assert (await ctx.vault.get_public_key(created.key_id)).public_numbers() == public.public_numbers()
    hash_alg = {"256": hashes.SHA256(), "384": hashes.SHA384()}[algorithm[2:]]
    digest = hashes.Hash(hash_alg)
    digest.update(b"to be signed")
    signature = await ctx.vault.sign_digest(created.key_id, algorithm, digest.finalize())
    if algorithm.startswith("ES"):
        half = len(signature) // 2  # raw r||s, as the service answers
        der = utils.encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                          int.from_bytes(signature[half:], "big"))
        public.verify(der, b"to be signed", ec.ECDSA(hash_alg))
    elif algorithm.startswith("PS"):
        public.verify(signature, b"to be signed",
                      padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=padding.PSS.DIGEST_LENGTH), hash_alg)
    else:
        public.verify(signature, b"to be signed", padding.PKCS1v15(), hash_alg)


async def test_a_ca_created_in_the_vault_signs_remotely_and_an_imported_one_locally(ctx):
    await create_ca(ctx, "vault-ca", subject="CN=Vault CA", key="rsa-2048", years=3)
    await import_recipe_ca(ctx.vault, "pfx-ca")
    remote, local = await ctx.authority.load("vault-ca"), await ctx.authority.load("pfx-ca")
    assert remote.remote and not local.remote
    vault_root = x509.load_der_x509_certificate((await ctx.vault.get_certificate("vault-ca-root")).cer)
    assert remote.issuing.chain[-1] == vault_root  # the chain from the CA's secret reaches its root
    for ca in ("vault-ca", "pfx-ca"):
        outcome = await operations.issue(ctx, IssueRequest(name=f"leaf-of-{ca}", ca=ca,
                                                           dns_names=(f"{ca}.corp.internal",)))
        assert outcome.action == "issued"
        root = x509.load_der_x509_certificate((await ctx.vault.get_certificate(f"{ca}-root")).cer)
        openssl_verify(await chain_from_vault(ctx.vault, f"leaf-of-{ca}"), root)


async def test_a_ca_whose_key_stays_in_the_vault_is_loaded_without_reading_its_secret(app, ctx):
    # The app's identity has no secret role for such a CA (infra/app/ca-access.bicep, vault-key
    # mode): every read of the CA's secret fails here, and loading and signing must not need one.
    await create_ca(ctx, "sealed-ca", subject="CN=Sealed CA", key="ec-p256", years=3)
    app.faults.add(kind="500", route=r"^/secrets/sealed-ca(/|$)")
    loaded = await ctx.authority.load("sealed-ca")
    assert loaded.remote
    root = x509.load_der_x509_certificate((await ctx.vault.get_certificate("sealed-ca-root")).cer)
    assert loaded.issuing.chain == (root,) or list(loaded.issuing.chain) == [root]
    outcome = await operations.issue(ctx, IssueRequest(name="sealed-leaf", ca="sealed-ca",
                                                       dns_names=("sealed.corp.internal",)))
    assert outcome.action == "issued"
    app.faults.clear()
    openssl_verify(await chain_from_vault(ctx.vault, "sealed-leaf"), root)


async def test_the_ca_cache_is_reused_and_refreshed_when_the_ca_gets_a_new_version(ctx):
    await import_recipe_ca(ctx.vault, "rolling-ca")
    first = await ctx.authority.load("rolling-ca")
    assert await ctx.authority.load("rolling-ca") is first
    new_root = await import_recipe_ca(ctx.vault, "rolling-ca")  # a re-import: a new current version
    second = await ctx.authority.load("rolling-ca")
    assert second is not first and second.version != first.version
    await operations.issue(ctx, IssueRequest(name="after-roll", ca="rolling-ca", dns_names=("r.corp.internal",)))
    openssl_verify(await chain_from_vault(ctx.vault, "after-roll"), new_root)


async def test_no_key_material_reaches_any_log_line(app, ctx, caplog):
    caplog.set_level(logging.DEBUG)  # everything, the SDK's HTTP logging policy included
    await import_recipe_ca(ctx.vault, "leaky-ca")
    content_type, secret = await ctx.vault.get_secret_value("leaky-ca")
    await operations.issue(ctx, IssueRequest(name="quiet", ca="leaky-ca", dns_names=("q.corp.internal",)))
    app.clock.advance(days=340)
    assert (await operations.renew(ctx, "quiet")).action == "renewed"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "PRIVATE KEY" not in text
    assert secret[:64] not in text and base64.b64decode(secret)[:32].hex() not in text
    assert "op=issue certificate=quiet" in text  # the one structured line per operation is there


def _established_to(port: int) -> int:
    """TCP connections of this network namespace in state ESTABLISHED whose far end is `port`
    on loopback (the clients' side of connections to the emulator; /proc/net/tcp, hex fields)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and remote.endswith(f":{port:04X}"):
            count += 1
    return count


async def test_every_client_shares_one_connection_pool_and_one_tls_context(app, ctx):
    """With KVCA_TLS_CA_BUNDLE set, azure-core made an SSL context per request and no connection
    was reused. Now certificates, secrets, keys and the keys-API signer share one pool."""
    port = urlparse(app.url).port
    await create_ca(ctx, "pooled-ca", subject="CN=Pooled CA", key="ec-p256", years=3)  # signs through the keys API
    await import_recipe_ca(ctx.vault, "pooled-pfx")
    baseline = _established_to(port)
    handshakes = ctx.vault.transport.ssl_context.session_stats()["connect"]
    for i in range(4):
        await operations.issue(ctx, IssueRequest(name=f"pooled-{i}", ca="pooled-ca", dns_names=(f"p{i}.corp.internal",)))
        await ctx.vault.get_secret_value("pooled-pfx")  # the secrets client
        await ctx.vault.get_public_key((await ctx.vault.get_certificate(f"pooled-{i}")).key_id)  # the keys client
    assert len(app.requests) > 30
    # Sequential calls: one connection carries them all (two, should the server close one).
    assert ctx.vault.transport.ssl_context.session_stats()["connect"] - handshakes <= 2
    assert _established_to(port) - baseline <= 2
    assert ctx.vault._crypto  # the keys-API signer was used, through the same pool


async def test_a_renewal_costs_five_vault_calls_and_four_within_a_sweep(app, ctx):
    """Before: 9 per renewal. The create's answer carries the CSR, the policy comes with the current
    version, and a sweep checks each CA once (docs/design.md, "Key Vault calls")."""
    await import_recipe_ca(ctx.vault, "counted-ca")
    for name in ("alone", "swept-1", "swept-2"):
        await operations.issue(ctx, IssueRequest(name=name, ca="counted-ca", dns_names=(f"{name}.corp.internal",)))
    app.clock.advance(days=340)
    app.requests.clear()
    assert (await operations.renew(ctx, "alone")).action == "renewed"
    assert len(app.requests) == 5, app.requests
    app.requests.clear()
    summary = await operations.sweep(ctx)
    assert summary.renewed == 2
    # One listing page, the pending check of the fresh "alone", the CA's rotation check (once per CA
    # per sweep, for the not-due "alone"), 5 for the first renewal, 4 for the second.
    assert len(app.requests) == 1 + 1 + 1 + 5 + 4, app.requests
