"""Revocation from the CA's ledger, kept in Azurite's Table service as in Azure: what no deletion of a
vault object can undo, OCSP that vouches only for what the CA signed, CRLs numbered across instances,
a revocation racing a renewal, a key compromise never certified again."""

from __future__ import annotations

import asyncio
import random
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from apphelpers import user_function
from kvca_core import operations, revocation
from kvca_core.context import Context
from kvca_core.settings import Settings
from kvca_core.vocabulary import REVOKED_SERIAL_TAG

from revhelpers import CA, CA2, fetch_crl, sign_external


async def _ocsp(ca: str, issuer: x509.Certificate, serial: int, algorithm=hashes.SHA256()) -> ocsp.OCSPResponse:
    """One OCSP request for `serial` under `issuer`'s hashes, through the registered POST route."""
    from kvca_core.signing.ocsp import cert_id_hashes

    name_hash, key_hash = cert_id_hashes(issuer, algorithm)
    der = (ocsp.OCSPRequestBuilder()
           .add_certificate_by_hash(name_hash, key_hash, serial, algorithm).build().public_bytes(Encoding.DER))
    import azure.functions as func

    req = func.HttpRequest(method="POST", url=f"http://kvca.example/api/ocsp/{ca}", headers={}, params={},
                           route_params={"ca": ca}, body=der)
    resp = await user_function("kvca_ocsp_post")(req)
    return ocsp.load_der_ocsp_response(resp.get_body())


async def _fresh_instance(ctx, ledger) -> Context:
    """Another app instance: its own context (no cache shared with `ctx`) on the same vault and ledger."""
    other = Context.create(Settings.from_env(), credential=None)
    await other.ledger.close()
    other.ledger = ledger
    other.crl_store = ctx.crl_store
    return other


async def test_deleting_purging_and_stripping_a_revoked_certificate_changes_neither_crl_nor_ocsp(
        ledger_ca, leaves, table_ledger, kv_aio_clients):
    ctx = ledger_ca
    bad = leaves["bad"]
    await revocation.revoke(ctx, "bad", reason="keyCompromise")
    # Anyone with certificates/update strips the mirror and enables the version again ...
    version = await ctx.vault.get_certificate("bad")
    await ctx.vault.update_properties("bad", version.version, enabled=True,
                                      tags={k: v for k, v in version.tags.items() if not k.startswith("kvca-revoked")})
    # ... then deletes and purges the certificate.
    await kv_aio_clients.certificates.delete_certificate("bad")
    for _ in range(50):
        try:
            await kv_aio_clients.certificates.purge_deleted_certificate("bad")
            break
        except Exception:  # the soft delete completes asynchronously
            await asyncio.sleep(0.2)
    other = await _fresh_instance(ctx, table_ledger())  # a fresh instance: nothing cached
    try:
        crl = await revocation.publish_crl(other, CA)
        entry = crl.get_revoked_certificate_by_serial_number(bad.cert.serial_number)
        assert entry is not None and entry.extensions.get_extension_for_class(x509.CRLReason).value.reason \
            == x509.ReasonFlags.key_compromise
        answer = await revocation.answer_ocsp(other, CA, (ocsp.OCSPRequestBuilder().add_certificate(
            bad.cert, bad.intermediate, hashes.SHA256()).build().public_bytes(Encoding.DER)))
        assert ocsp.load_der_ocsp_response(answer).certificate_status == ocsp.OCSPCertStatus.REVOKED
    finally:
        await other.close()


async def test_a_serial_the_ca_never_issued_is_never_good(ledger_ca, leaves):
    from kvca_core.ca import create_ca

    ctx = ledger_ca
    intermediate = leaves["good"].intermediate
    await create_ca(ctx, CA2, subject="CN=Second Test CA", years=5)
    stranger = await sign_external(ctx, "stranger", ca=CA2)  # another CA's leaf, asked with this CA's hashes
    serials = [0x1234, secrets.randbits(159) | 1, intermediate.serial_number, stranger.serial_number]
    for serial in serials:
        answer = await _ocsp(CA, intermediate, serial)
        assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN, hex(serial)
    good = await _ocsp(CA, intermediate, leaves["good"].cert.serial_number)
    assert good.certificate_status == ocsp.OCSPCertStatus.GOOD
    # A serial of 0 is no serial (RFC 5280 4.1.2.2): malformed, never an answer about it.
    zero = await _ocsp(CA, intermediate, 0)
    assert zero.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


async def test_200_revocations_over_two_instances_each_listed_by_its_crl_and_all_by_the_last(
        ledger_ca, table_ledger, azurite, monkeypatch):
    """Two app instances revoke 100 certificates each while the CRL timer runs on both: every
    revocation's own CRL lists it, the numbers never repeat, and the last CRL lists all 200."""
    from azure.storage.blob.aio import ContainerClient

    from kvca_core.rim.blob import CrlStore

    url = f"{azurite.account_url}/crl"
    async with ContainerClient.from_container_url(url, credential=azurite.credential()) as container:
        await container.create_container(public_access="blob")
    a = ledger_ca
    a.crl_store = CrlStore(url, azurite.credential())
    b = await _fresh_instance(a, table_ledger())
    signed: dict[int, x509.CertificateRevocationList] = {}
    for instance in (a, b):
        store = instance.crl_store
        original = store.publish

        async def keep(ca, der, *, max_age, number, version=None, _original=original):
            signed[number] = x509.load_der_x509_crl(der)
            return await _original(ca, der, max_age=max_age, number=number, version=version)
        monkeypatch.setattr(store, "publish", keep, raising=False)
    try:
        certs = [await sign_external(a, f"dev-{i}") for i in range(200)]
        stop = asyncio.Event()

        async def timer(instance) -> None:
            while not stop.is_set():
                await revocation.publish_crls(instance)
                await asyncio.sleep(random.uniform(0, 0.05))

        async def revoke(instance, cert) -> revocation.Revocation:
            await asyncio.sleep(random.uniform(0, 0.2))
            return await revocation.revoke(instance, reason="superseded", ca=CA, serial=format(cert.serial_number, "x"))

        timers = [asyncio.create_task(timer(i)) for i in (a, b)]
        results = await asyncio.gather(*(revoke(a if i % 2 else b, c) for i, c in enumerate(certs)))
        stop.set()
        await asyncio.gather(*timers)
        for result, cert in zip(results, certs):
            assert result.action == "revoked" and result.crl_number is not None and not result.publish_error
            own = signed[result.crl_number]
            assert own.get_revoked_certificate_by_serial_number(cert.serial_number) is not None, result
        numbers = sorted(signed)
        assert len(numbers) == len(set(numbers))
        last = x509.load_der_x509_crl(await _blob(url, azurite, a))
        assert last.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == numbers[-1]
        assert {e.serial_number for e in last} == {c.serial_number for c in certs}
    finally:
        await b.close()


async def _blob(url: str, azurite, ctx) -> bytes:
    from azure.storage.blob.aio import ContainerClient

    version = (await ctx.vault.get_certificate(CA)).version
    async with ContainerClient.from_container_url(url, credential=azurite.credential()) as container:
        return await (await container.download_blob(f"{CA}/{version}.crl")).readall()


async def test_a_revocation_racing_an_automatic_renewal_never_leaves_a_valid_current_version(ledger_ca, app):
    """40 rounds: an automatic renewal of a due certificate and a revocation of its current version,
    started together at random offsets. Whatever the order, the certificate never ends with a valid
    (enabled, unrevoked in the ledger) current version."""
    ctx = ledger_ca
    for round_ in range(40):
        name = f"race-{round_}"
        await operations.issue(ctx, operations.IssueRequest(name=name, ca=CA, dns_names=(f"{name}.rev.internal",),
                                                            validity_months=1))
        app.clock.advance(days=25)  # due: inside its last third

        async def renew() -> None:
            await asyncio.sleep(random.uniform(0, 0.03))
            await operations.renew(ctx, name)

        async def revoke() -> None:
            await asyncio.sleep(random.uniform(0, 0.03))
            await revocation.revoke(ctx, name, reason="keyCompromise")

        await asyncio.gather(renew(), revoke(), return_exceptions=False)
        current = await ctx.vault.get_certificate(name)
        cert = x509.load_der_x509_certificate(current.cer)
        revoked = await ctx.ledger.revocation(CA, cert.serial_number)
        assert not current.enabled or revoked is not None, (round_, current.version)


async def test_a_renewal_after_a_key_compromise_never_reuses_the_key(ledger_ca, kv_aio_clients):
    from azure.keyvault.certificates import CertificatePolicy as SdkPolicy

    ctx = ledger_ca
    await kv_aio_clients.certificates.create_certificate("sticky", SdkPolicy(
        issuer_name="Unknown", subject="CN=sticky.rev.internal", san_dns_names=["sticky.rev.internal"],
        validity_in_months=12, key_type="EC", key_curve_name="P-256", reuse_key=True, exportable=True),
        tags={"kvca-ca": CA}, _polling_interval=0)
    assert (await operations.sign_pending(ctx, "sticky")).action == "signed"
    first = x509.load_der_x509_certificate((await ctx.vault.get_certificate("sticky")).cer)
    assert (await operations.renew(ctx, "sticky", now=True, force=True)).action == "renewed"
    second = x509.load_der_x509_certificate((await ctx.vault.get_certificate("sticky")).cer)
    assert second.public_key() == first.public_key()  # reuse_key, as asked, while nothing is compromised
    await revocation.revoke(ctx, "sticky", reason="keyCompromise")
    replaced = await operations.renew(ctx, "sticky", now=True, force=True)
    assert replaced.action == "renewed", replaced
    third = x509.load_der_x509_certificate((await ctx.vault.get_certificate("sticky")).cer)
    assert third.public_key() != second.public_key()


async def test_the_anonymous_routes_answer_unknown_names_and_non_ca_names_alike(ledger_ca, leaves):
    statuses = {}
    for name in ("no-such-name", "good", f"{CA}-root"):
        status, body, _ = await fetch_crl(name)
        statuses[name] = (status, body)
    assert len({repr(v) for v in statuses.values()}) == 1 and statuses["good"][0] == 404, statuses
    answers = {name: (await _ocsp(name, leaves["good"].intermediate, leaves["good"].cert.serial_number)).response_status
               for name in ("no-such-name", "good", f"{CA}-root")}
    assert set(answers.values()) == {ocsp.OCSPResponseStatus.UNAUTHORIZED}, answers
    # And case: one CA, however its name is written, one cached CRL.
    status, upper, _ = await fetch_crl(CA.upper())
    status2, lower, _ = await fetch_crl(CA)
    assert status == status2 == 200 and upper == lower


async def test_revocation_mirror_tags_follow_the_ledger(ledger_ca, leaves):
    ctx = ledger_ca
    result = await revocation.revoke(ctx, "good", reason="superseded")
    version = await ctx.vault.get_certificate("good", result.version)
    assert version.tags[REVOKED_SERIAL_TAG] == result.serial and not version.enabled
