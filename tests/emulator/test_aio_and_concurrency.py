"""The aio SDK clients, and 200 concurrent requests with no lost update."""

from __future__ import annotations

import asyncio
import base64

import pytest
from azure.keyvault.certificates import CertificatePolicy
from azure.keyvault.keys.crypto import SignatureAlgorithm
from azure.keyvault.keys.crypto.aio import CryptographyClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.serialization import pkcs12

from .helpers import TestCA


KEY_TYPES = [
    pytest.param({"key_type": "RSA", "key_size": 2048}, SignatureAlgorithm.rs256, id="rsa-2048"),
    pytest.param({"key_type": "RSA", "key_size": 3072}, SignatureAlgorithm.ps256, id="rsa-3072"),
    pytest.param({"key_type": "RSA", "key_size": 4096}, SignatureAlgorithm.rs256, id="rsa-4096"),
    pytest.param({"key_type": "EC", "key_curve_name": "P-256"}, SignatureAlgorithm.es256, id="ec-p256"),
    pytest.param({"key_type": "EC", "key_curve_name": "P-384"}, SignatureAlgorithm.es384, id="ec-p384"),
    pytest.param({"key_type": "EC", "key_curve_name": "P-521"}, SignatureAlgorithm.es512, id="ec-p521"),
]
HASHES = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}


@pytest.mark.parametrize("key,alg", KEY_TYPES)
async def test_aio_clients_run_the_unknown_issuer_lifecycle(kv_aio_clients, emulator, key, alg):
    certs, secrets = kv_aio_clients.certificates, kv_aio_clients.secrets
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=aio.test", san_dns_names=["aio.test"],
                               exportable=True, **key)
    op = await certs.create_certificate("aio", policy)
    assert op.status == "inProgress"
    ca = TestCA()
    leaf = ca.sign_csr(op.csr)
    merged = await certs.merge_certificate("aio", [leaf.public_bytes(serialization.Encoding.DER),
                                                   ca.cert.public_bytes(serialization.Encoding.DER)])
    assert merged.cer == leaf.public_bytes(serialization.Encoding.DER)
    key, cert, extra = pkcs12.load_key_and_certificates(
        base64.b64decode((await secrets.get_secret("aio")).value), None)
    assert cert == leaf and extra == [ca.cert] and key is not None
    hash_alg = HASHES[alg.value[2:5]]
    digest = hashes.Hash(hash_alg)
    digest.update(b"aio")
    value = digest.finalize()
    async with CryptographyClient(merged.key_id, emulator.async_credential(),
                                  **emulator.client_kwargs()) as crypto:
        signature = (await crypto.sign(alg, value)).signature
    pub = leaf.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        size = len(signature) // 2
        der = utils.encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                         int.from_bytes(signature[size:], "big"))
        pub.verify(der, value, ec.ECDSA(utils.Prehashed(hash_alg)))
    else:
        pad = (padding.PKCS1v15() if alg.value.startswith("RS")
               else padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=padding.PSS.AUTO))
        pub.verify(signature, value, pad, utils.Prehashed(hash_alg))
    self_made = await certs.create_certificate(
        "aio-self", CertificatePolicy(issuer_name="Self", subject="CN=s", key_type="EC"))
    assert x509.load_der_x509_certificate(self_made.cer).subject.rfc4514_string() == "CN=s"
    await certs.delete_certificate("aio-self")
    assert [d.name async for d in certs.list_deleted_certificates()] == ["aio-self"]


async def test_two_hundred_concurrent_writes_lose_no_update(kv_aio_clients):
    secrets = kv_aio_clients.secrets
    await secrets.set_secret("counter", "start")  # warm the token before the burst
    results = await asyncio.gather(*(secrets.set_secret("counter", f"v{i}") for i in range(200)))
    versions = {s.properties.version for s in results}
    assert len(versions) == 200
    listed = [p.version async for p in secrets.list_properties_of_secret_versions("counter")]
    assert len(listed) == 201 and versions <= set(listed)


async def test_two_hundred_concurrent_creates_each_land(kv_aio_clients, emulator):
    # The old full nextLink, so one listing sees every pending-only certificate (the real
    # link drops includePending after page 1: test_fidelity.py covers that).
    emulator.set_fidelity(paging_drops_params=False)
    certs = kv_aio_clients.certificates
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=c", key_type="EC")
    ops = await asyncio.gather(*(certs.create_certificate(f"burst-{i:03d}", policy) for i in range(200)),
                               return_exceptions=True)
    assert [o for o in ops if isinstance(o, Exception)] == []
    names = [c.name async for c in certs.list_properties_of_certificates(include_pending=True)]
    assert len(names) == 200


async def test_concurrent_creates_of_one_name_give_one_pending_and_409s(kv_aio_clients):
    from azure.core.exceptions import ResourceExistsError
    certs = kv_aio_clients.certificates
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=race", key_type="RSA", key_size=2048)
    results = await asyncio.gather(*(certs.create_certificate("race", policy) for _ in range(8)),
                                   return_exceptions=True)
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, ResourceExistsError) for r in results if isinstance(r, Exception))
    versions = [v async for v in certs.list_properties_of_certificate_versions("race")]
    assert len(versions) == 1


async def test_aio_clients_retry_through_injected_throttling(kv_aio_clients, emulator):
    await kv_aio_clients.secrets.set_secret("aio-flaky", "v")
    emulator.faults.add(kind="429", route="^/secrets/aio-flaky", count=2, retry_after=0.1)
    emulator.faults.add(kind="503", route="^/secrets/aio-flaky", count=1, retry_after=0.1)
    assert (await kv_aio_clients.secrets.get_secret("aio-flaky")).value == "v"
    assert emulator.faults.list() == []
