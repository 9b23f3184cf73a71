"""operations.sign_csr: a device's CSR (its key made by openssl in the device's folder) signed by a CA
whose key stays in the vault, recorded in the ledger before it is returned, judged by `openssl verify`
and pkilint; every refusal leaves the ledger as it was."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from esthelpers import FLEET, Device, ledger_rows, openssl, openssl_verify
from kvca_core import operations
from kvca_core.errors import InvalidRequest, PolicyViolation
from kvca_core.ledger import EXTERNAL
from kvca_core.operations.external import SIGNED_MARKER, sign_rate
from kvca_core.operations.ratelimit import KEY_OPERATION_LIMIT, SignRate, key_operation_cost
from signing_helpers import pkilint_findings


async def _root(ctx) -> x509.Certificate:
    return x509.load_der_x509_certificate((await ctx.vault.get_certificate(f"{FLEET}-root")).cer)


@pytest.mark.parametrize("key", ["ec", "rsa-2048"])
async def test_a_device_csr_is_signed_for_its_own_key_recorded_and_chains_to_the_root(fleet, tmp_path, key, caplog):
    ctx = fleet
    device = Device.make(tmp_path / "devices", "device-001", key=key)
    caplog.set_level(logging.INFO, logger="kvca_core.telemetry")
    signed = await operations.sign_csr(ctx, FLEET, device.csr(sans=["DNS:device-001.fleet.example"]))

    leaf = signed.leaf
    assert signed.action == "signed" and signed.record.name == "device-001"  # named by its CN
    # The certificate carries the device's own public key, as the device's openssl reads it from its key.
    assert leaf.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo) == device.public_key_pem()
    assert leaf.subject.rfc4514_string() == "CN=device-001"
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    # In the ledger, as it was handed out.
    record = await ctx.ledger.certificate(FLEET, leaf.serial_number)
    assert record == signed.record and record.location == EXTERNAL and record.der == leaf.public_bytes(Encoding.DER)
    assert record.sans == ("DNS:device-001.fleet.example",) and record.profile == "client"
    # One telemetry record for the signing, naming the CA, the serial and the device.
    records = [r for r in caplog.records if getattr(r, "kvca.operation", None) == "sign_csr"]
    assert [(getattr(r, "kvca.outcome"), getattr(r, "kvca.ca"), getattr(r, "kvca.serial"),
             getattr(r, "kvca.certificate")) for r in records] == [("signed", FLEET, record.serial, "device-001")]
    # What a TLS server checks of a client, against the root alone; and RFC 5280 by pkilint.
    verified = openssl_verify(leaf, signed.chain[1:], await _root(ctx), tmp_path / "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert pkilint_findings(leaf) == []
    # The PEM a device installs: the leaf, then the intermediate.
    assert [c.subject for c in x509.load_pem_x509_certificates(signed.pem().encode())] == \
        [leaf.subject, signed.chain[1].subject]


async def test_a_ca_whose_policy_leaves_external_csrs_off_refuses_them_and_records_nothing(fleet, tmp_path):
    from kvca_core.ca import create_ca

    ctx = fleet
    await create_ca(ctx, "web", subject="CN=Web CA", key="ec-p256", years=2,
                    policy={"cn_forms": ["dns-name", "ip-address", "device-id"]})
    device = Device.make(tmp_path, "device-002")
    with pytest.raises(PolicyViolation) as refused:
        await operations.sign_csr(ctx, "web", device.csr())
    assert "external_csrs is false" in str(refused.value) and "CSR 'device-002'" in str(refused.value)
    assert await ledger_rows(ctx) == []


def _tampered(csr_pem: bytes) -> bytes:
    """The CSR with one byte of its signature changed: its proof of possession no longer verifies."""
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(Encoding.DER))
    der[-5] ^= 0x01
    return bytes(der)


@pytest.mark.parametrize("case, kwargs, kind, words", [
    ("outside the allowed domains", {"sans": ["DNS:device-003.other.example"]}, PolicyViolation,
     "outside the allowed domains"),
    ("a server certificate", {"profile": "server"}, PolicyViolation, "external_profiles: client"),
    ("longer than the policy allows", {"validity_days": 500}, PolicyViolation, "max_validity_days (398)"),
    ("a key too small", {"key": "rsa-1024"}, PolicyViolation, "RSA key of 1024 bits is too small"),
    ("a signature that does not verify", {"tamper": True}, InvalidRequest, "verify-signature"),
    ("asking for CA powers", {"ext": "basicConstraints=critical,CA:TRUE"}, PolicyViolation, "CA powers"),
])
async def test_a_csr_outside_the_policy_is_refused_and_nothing_is_recorded(fleet, tmp_path, case, kwargs, kind, words):
    ctx = fleet
    before = await ledger_rows(ctx)
    device = Device.make(tmp_path, "device-003", key=kwargs.get("key", "ec"))
    sans = kwargs.get("sans", ())
    csr = device.csr(sans=sans)
    if "ext" in kwargs:
        openssl("req", "-new", "-key", str(device.key), "-subj", "/CN=device-003", "-addext", kwargs["ext"],
                "-out", "device.csr", cwd=device.folder)
        csr = (device.folder / "device.csr").read_bytes()
    if kwargs.get("tamper"):
        csr = _tampered(csr)
    with pytest.raises(kind) as refused:
        await operations.sign_csr(ctx, FLEET, csr, profile=kwargs.get("profile"),
                                  validity_days=kwargs.get("validity_days"))
    assert words in str(refused.value), (case, str(refused.value))
    assert await ledger_rows(ctx) == before  # nothing recorded, so nothing was signed for anyone


async def test_resume_answers_the_recorded_certificate_instead_of_signing_again(fleet, tmp_path):
    ctx = fleet
    csr = Device.make(tmp_path, "device-004").csr()
    first = await operations.sign_csr(ctx, FLEET, csr, resume=True)
    again = await operations.sign_csr(ctx, FLEET, csr, resume=True)
    assert (first.action, again.action) == ("signed", "skipped") and "already signed" in again.reason
    assert again.record == first.record and again.leaf == first.leaf
    assert [r.serial for r in await ledger_rows(ctx)] == [first.record.serial]
    # Without resume the same CSR is signed anew (a renewal with the same key, as EST allows).
    renewed = await operations.sign_csr(ctx, FLEET, csr)
    assert renewed.action == "signed" and renewed.record.serial != first.record.serial
    assert len(await ledger_rows(ctx)) == 2


async def test_validity_days_within_the_maximum_decide_the_lifetime(fleet, tmp_path):
    signed = await operations.sign_csr(fleet, FLEET, Device.make(tmp_path, "device-005").csr(), validity_days=30)
    leaf = signed.leaf
    # notBefore is backdated 5 minutes (clock skew); the 30 days count from the signing.
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=30, minutes=5)


async def test_keys_api_signing_waits_on_the_process_share_of_the_vault_limit(fleet, tmp_path):
    ctx = fleet
    moments: list[float] = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        moments[0] += seconds

    ctx._kvca_sign_rate = SignRate(2, 10.0, monotonic=lambda: moments[0], sleep=sleep)
    assert sign_rate(ctx) is ctx._kvca_sign_rate
    for number in range(3):
        await operations.sign_csr(ctx, FLEET, Device.make(tmp_path, f"device-1{number}").csr())
    # Two signings fit the window; the third waited for it to pass (the CA's key is in the vault).
    assert waits == [10.0] and len(await ledger_rows(ctx)) == 3


def test_the_sign_rate_counts_each_key_type_at_its_weight_within_the_window():
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    assert key_operation_cost(ec.generate_private_key(ec.SECP384R1()).public_key()) == 1
    assert [key_operation_cost(rsa.generate_private_key(65537, bits).public_key()) for bits in (2048, 3072, 4096)] \
        == [1, 4, 8]
    assert key_operation_cost(rsa.generate_private_key(65537, 2048).public_key(), hsm=True) == 2
    assert SignRate.share_of_vault(0.5).limit == KEY_OPERATION_LIMIT // 2

    moments, slept = [0.0], []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        moments[0] += seconds

    async def run() -> None:
        rate = SignRate(10, 10.0, monotonic=lambda: moments[0], sleep=sleep)
        for _ in range(2):
            await rate.wait(4)  # two RSA-3072 signings: 8 of 10 units
        moments[0] = 3.0
        await rate.wait(4)  # a third does not fit until the first two leave the window
        assert slept == [7.0] and rate.used == 4

    import asyncio

    asyncio.run(run())


async def test_the_signed_marker_names_the_serial_of_the_request(fleet, tmp_path):
    from kvca_core.operations.external import read_csr, signed_key

    ctx = fleet
    csr = Device.make(tmp_path, "device-006").csr()
    signed = await operations.sign_csr(ctx, FLEET, csr, name="sensor-6")
    request = read_csr(csr)
    leaf = signed.leaf
    sans = tuple(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) \
        if any(isinstance(e.value, x509.SubjectAlternativeName) for e in leaf.extensions) else ()
    marker = await ctx.ledger.get(SIGNED_MARKER, signed_key(FLEET, request.spki_sha256, leaf.subject, sans))
    assert marker == {"serial": signed.record.serial, "name": "sensor-6"}


async def test_the_signing_path_reads_its_ca_once_a_second_and_sees_a_disabled_ca_then(fleet, tmp_path):
    from kvca_core.operations.external import current_ca

    ctx = fleet
    moment = [100.0]
    gets = []
    original = ctx.vault.get_certificate

    async def get_certificate(name, version=None):
        gets.append(name)
        return await original(name, version)

    ctx.vault.get_certificate = get_certificate
    first = await current_ca(ctx, FLEET, monotonic=lambda: moment[0])
    moment[0] += 0.5
    assert await current_ca(ctx, FLEET, monotonic=lambda: moment[0]) is first and gets.count(FLEET) == 1
    # An administrator disables the CA: seen once its state is a second old.
    current = await original(FLEET)
    await ctx.vault.update_properties(FLEET, current.version, enabled=False)
    moment[0] += 0.6
    with pytest.raises(PolicyViolation) as refused:
        await current_ca(ctx, FLEET, monotonic=lambda: moment[0])
    assert "the CA is disabled" in str(refused.value) and gets.count(FLEET) == 2


CORPUS = Path(__file__).resolve().parent.parent / "corpus"
_CASES = json.loads((CORPUS / "index.json").read_text())["cases"]


async def test_every_hostile_csr_of_the_corpus_is_refused_and_nothing_is_recorded(fleet):
    """tests/corpus through sign_csr: the input-level refusals (parse, verify-signature, check-key) are
    the signing engine's own, kind and step; no CSR fails with anything but a KvcaError. One is signed
    under the fleet's policy: its CN `xn--a.kvca.test` is no valid DNS name (an IDNA label that does not
    decode) but has a device ID's form, which this policy allows as a client certificate's CN; every
    other case is refused and nothing of it reaches the ledger."""
    from kvca_core.errors import KvcaError

    ctx = fleet
    signed_files = []
    for case in _CASES:
        data = (CORPUS / case["file"]).read_bytes()
        try:
            signed = await operations.sign_csr(ctx, FLEET, data, name="corpus")
        except KvcaError as exc:
            if case["step"] in ("parse", "verify-signature", "check-key") and "policy" not in case:
                assert (exc.kind, exc.step) == (case["kind"], case["step"]), (case["file"], str(exc))
            assert "Traceback" not in str(exc)
            continue
        signed_files.append(case["file"])
        assert (signed.record.subject, signed.record.sans, signed.record.profile) == \
            ("CN=xn--a.kvca.test", (), "client")
    assert signed_files == ["csr/idna-label-in-cn-only.der"]
    assert len(await ledger_rows(ctx)) == 1
