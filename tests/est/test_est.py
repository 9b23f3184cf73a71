"""EST (RFC 7030) over a real wire: curl and openssl as the device, the test front end (App Service's
TLS termination and X-ARR-ClientCert) in front of the registered functions. Enrollment with a
one-time code, its refusals, re-enrollment with the current certificate, and what the answers are."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from esthelpers import FLEET, Device, ledger_rows, openssl, openssl_verify, revoke_in_ledger
from estclient import curl, enroll, unpack
from frontend import FUNCTION_KEY
from kvca_core.enrollment import DeviceEntry, make_codes
from signing_helpers import pkilint_findings

CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"


async def _code(ctx, device: str, *, days: int = 7, sans: tuple[str, ...] = ()) -> str:
    (issued,) = await make_codes(ctx, FLEET, [DeviceEntry(device, sans)], days=days)
    return issued.code


async def test_cacerts_answers_the_chain_to_the_root_certs_only_base64(est_site, tmp_path):
    device = Device.make(tmp_path, "device-001")
    answer = await curl(device, est_site.frontend, f"/.well-known/est/{FLEET}/cacerts")
    assert answer.status == 200, answer.text
    assert answer.headers["content-type"] == CERTS_ONLY and answer.headers["content-transfer-encoding"] == "base64"
    assert unpack(device, answer, "cacerts.pem") == [est_site.intermediate, est_site.root]
    unknown = await curl(device, est_site.frontend, "/.well-known/est/no-such-ca/cacerts")
    assert unknown.status == 404 and "no-such-ca" in unknown.text and unknown.text.count("\n") == 1


async def test_csrattrs_names_the_signature_algorithms_to_use(est_site, tmp_path):
    device = Device.make(tmp_path, "device-001")
    answer = await curl(device, est_site.frontend, f"/.well-known/est/{FLEET}/csrattrs")
    assert answer.status == 200 and answer.headers["content-type"] == "application/csrattrs"
    der = base64.b64decode(answer.body)
    parsed = openssl("asn1parse", "-inform", "DER", cwd=device.folder, input=der).decode()
    assert "ecdsa-with-SHA256" in parsed and "sha256WithRSAEncryption" in parsed and "SEQUENCE" in parsed


async def test_a_device_enrolls_with_its_one_time_code_and_keeps_its_key(est_site, tmp_path):
    ctx = est_site.ctx
    device = Device.make(tmp_path / "devices", "device-001")
    code = await _code(ctx, "device-001")
    answer = await enroll(device, est_site.frontend, FLEET, code=code)
    assert answer.status == 200, answer.text
    assert answer.headers["content-type"] == CERTS_ONLY and answer.headers["content-transfer-encoding"] == "base64"
    (leaf,) = unpack(device, answer)  # RFC 7030 4.2.3: only the certificate issued
    # The device's own key: the certificate's public key is the one openssl reads from its key file.
    assert leaf.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo) == device.public_key_pem()
    assert leaf.subject.rfc4514_string() == "CN=device-001"
    verified = openssl_verify(leaf, [est_site.intermediate], est_site.root, tmp_path / "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert pkilint_findings(leaf) == []
    (record,) = await ledger_rows(ctx)
    assert (record.serial, record.name, record.requested_by) == (format(leaf.serial_number, "x"), "device-001",
                                                                 "est:device-001")

    # The same request again (the answer was lost): the same certificate, not a second one.
    same_csr = (device.folder / "device.b64").read_bytes()
    again = await enroll(device, est_site.frontend, FLEET, code=code, csr_b64=same_csr)
    assert again.status == 200 and unpack(device, again, "again.pem") == [leaf]
    # Another key with the same code: the code is used.
    thief = Device.make(tmp_path / "devices-2", "device-001")
    used = await enroll(thief, est_site.frontend, FLEET, code=code)
    assert used.status == 401 and used.headers["www-authenticate"].startswith("Basic realm=")
    assert "already used" in used.text
    assert len(await ledger_rows(ctx)) == 1


async def test_an_expired_or_unknown_code_and_no_credentials_are_401_with_a_challenge(est_site, tmp_path):
    ctx = est_site.ctx
    device = Device.make(tmp_path, "device-002")
    code = await _code(ctx, "device-002", days=1)
    other = await _code(ctx, "device-003")
    wrong_device = await enroll(device, est_site.frontend, FLEET, code=other)  # device-003's code
    none = await enroll(device, est_site.frontend, FLEET)
    garbage = await enroll(device, est_site.frontend, FLEET, code="not-a-code")
    for answer, words in ((wrong_device, "no enrollment code like this"), (none, "one-time enrollment code"),
                          (garbage, "not an enrollment code")):
        assert answer.status == 401 and answer.headers["www-authenticate"] == 'Basic realm="kvca EST", charset="UTF-8"'
        assert words in answer.text and answer.text.count("\n") == 1
    # Two days later (the vault's clock, which kvca's follows from its next answer) the code has expired.
    est_site.emulator.clock.advance(days=2)
    # kvca's clock follows the Date of the vault's answers (kvca_core/clock.py); the signing path reads
    # its CA once a second, so the jump is seen at the instance's next vault call, here.
    await ctx.vault.get_certificate(FLEET)
    expired = await enroll(device, est_site.frontend, FLEET, code=code)
    assert expired.status == 401 and "expired on" in expired.text
    assert await ledger_rows(ctx) == []


async def test_a_csr_whose_names_are_not_the_devices_is_refused_and_the_code_stays_unspent(est_site, tmp_path):
    ctx = est_site.ctx
    device = Device.make(tmp_path, "device-004")
    code = await _code(ctx, "device-004", sans=("URI:https://fleet.example/devices/device-004",))
    other_cn = await enroll(device, est_site.frontend, FLEET, code=code,
                            csr_b64=device.csr_der_base64(subject="/CN=device-005"))
    assert other_cn.status == 403 and "CN is 'device-005', not the device ID" in other_cn.text
    other_san = await enroll(device, est_site.frontend, FLEET, code=code,
                             csr_b64=device.csr_der_base64(sans=["DNS:device-005.fleet.example"]))
    assert other_san.status == 403 and "'DNS:device-005.fleet.example', which is not one of the device's" in \
        other_san.text
    assert await ledger_rows(ctx) == []
    # Refusals spend nothing: the device's own names go through with the same code.
    ok = await enroll(device, est_site.frontend, FLEET, code=code,
                      csr_b64=device.csr_der_base64(sans=["URI:https://fleet.example/devices/device-004"]))
    assert ok.status == 200, ok.text


@pytest.mark.parametrize("body, content_type, status, words", [
    (b"this is not base64 !", "application/pkcs10", 400, "not base64"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n", "application/pkcs10", 400,
     "the body is PEM"),
    (b"TUlJQg==\n", "application/pkcs10", 400, "not a DER SEQUENCE"),
    (b"MIIBAAAA\n", "application/pkcs10", 400, "not a valid PKCS#10 request"),
    (b"", "application/pkcs10", 400, "the body is empty"),
    (None, "application/x-www-form-urlencoded", 415, "must be application/pkcs10"),
])
async def test_a_malformed_request_is_one_line_with_its_status_and_spends_no_code(est_site, tmp_path, body,
                                                                                  content_type, status, words):
    ctx = est_site.ctx
    device = Device.make(tmp_path, "device-006")
    code = await _code(ctx, "device-006")
    answer = await enroll(device, est_site.frontend, FLEET, code=code, csr_b64=body, content_type=content_type)
    assert answer.status == status and words in answer.text and answer.text.count("\n") == 1, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert (await enroll(device, est_site.frontend, FLEET, code=code)).status == 200  # the code is still good


async def test_a_csr_outside_the_policy_is_403_and_records_nothing(est_site, tmp_path):
    ctx = est_site.ctx
    device = Device.make(tmp_path, "device-007", key="rsa-1024")
    code = await _code(ctx, "device-007")
    answer = await enroll(device, est_site.frontend, FLEET, code=code)
    assert answer.status == 403 and "check-key" in answer.text and "1024 bits is too small" in answer.text
    assert await ledger_rows(ctx) == []


async def _enrolled(est_site, tmp_path, device_id: str) -> tuple[Device, x509.Certificate]:
    device = Device.make(tmp_path / "devices", device_id)
    answer = await enroll(device, est_site.frontend, FLEET, code=await _code(est_site.ctx, device_id))
    assert answer.status == 200, answer.text
    (leaf,) = unpack(device, answer)
    # curl presents the certificate with its intermediate: what a device installs from cacerts.
    (device.folder / "device.pem").write_bytes(leaf.public_bytes(Encoding.PEM)
                                               + est_site.intermediate.public_bytes(Encoding.PEM))
    return device, leaf


async def test_reenrollment_with_the_current_certificate_over_tls_gives_the_next_one(est_site, tmp_path):
    ctx = est_site.ctx
    device, first = await _enrolled(est_site, tmp_path, "device-008")
    # A new key (rekey), the same subject: authorized by the certificate curl presents over TLS.
    device.key.rename(device.folder / "old.key")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "next.key", cwd=device.folder)
    csr = openssl("req", "-new", "-key", "next.key", "-subj", "/CN=device-008", "-outform", "DER", cwd=device.folder)
    (device.folder / "old.key").rename(device.key)  # curl authenticates with the current key
    answer = await enroll(device, est_site.frontend, FLEET, reenroll=True,
                          csr_b64=openssl("base64", cwd=device.folder, input=csr))
    assert answer.status == 200, answer.text
    (second,) = unpack(device, answer, "next.pem")
    assert second.subject == first.subject and second.serial_number != first.serial_number
    assert openssl("pkey", "-in", "next.key", "-pubout", cwd=device.folder) == \
        second.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    records = {r.serial: r for r in await ledger_rows(ctx)}
    assert records[format(second.serial_number, "x")].requested_by == f"est:device-008:{first.serial_number:x}"

    # Re-enrollment keeps the names: another CN is refused.
    renamed = await enroll(device, est_site.frontend, FLEET, reenroll=True,
                           csr_b64=device.csr_der_base64(subject="/CN=device-009"))
    assert renamed.status == 403 and "re-enrollment keeps the certificate's subject and names" in renamed.text


async def test_reenrollment_is_refused_for_a_revoked_a_foreign_or_no_certificate(est_site, tmp_path):
    ctx = est_site.ctx
    device, leaf = await _enrolled(est_site, tmp_path, "device-010")
    before = await ledger_rows(ctx)
    # Revoked in the ledger (what `kvca revoke` records): its holder can no longer re-enroll.
    await revoke_in_ledger(ctx, await ctx.ledger.certificate(FLEET, leaf.serial_number), "keyCompromise")
    revoked = await enroll(device, est_site.frontend, FLEET, reenroll=True)
    assert revoked.status == 403 and "was revoked (keyCompromise" in revoked.text
    # A certificate of a CA kvca did not issue (the front end's TLS accepts it, kvca does not).
    foreign = _foreign_device(est_site, device)
    stranger = await enroll(foreign, est_site.frontend, FLEET, reenroll=True)
    assert stranger.status == 403 and f"is not a certificate CA '{FLEET}' issued" in stranger.text
    # No client certificate at all.
    bare = await curl(device, est_site.frontend, f"/.well-known/est/{FLEET}/simplereenroll", "--data-binary",
                      "@device.b64", "-H", "Content-Type: application/pkcs10")
    assert bare.status == 403 and "no client certificate" in bare.text
    assert await ledger_rows(ctx) == before


def _foreign_device(est_site, device: Device) -> Device:
    """The same device ID and key, certified by a CA kvca knows nothing of: device.pem in a new folder."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    root, root_key = est_site.foreign
    folder = device.folder.parent / "foreign"
    folder.mkdir()
    twin = Device(folder, device.device_id)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "device.key", cwd=folder)
    public = load_pem_public_key(twin.public_key_pem())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-010")]))
            .issuer_name(root.subject).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(root_key, hashes.SHA256()))
    (folder / "device.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    return twin


async def test_reenrollment_is_501_while_the_client_certificate_header_is_not_trusted(est_site, tmp_path, monkeypatch):
    from kvca_core import context

    device, _ = await _enrolled(est_site, tmp_path, "device-011")
    monkeypatch.setenv("KVCA_TRUST_CLIENT_CERT_HEADER", "false")
    await context.reset_shared()
    off = await enroll(device, est_site.frontend, FLEET, reenroll=True)
    assert off.status == 501 and "KVCA_TRUST_CLIENT_CERT_HEADER is false" in off.text


async def test_the_json_route_needs_the_function_key_at_the_front_end(est_site, tmp_path):
    device = Device.make(tmp_path, "device-012")
    device.csr()
    args = ["-H", "Content-Type: application/json", "--data-binary", "@body.json"]
    (device.folder / "body.json").write_text(json.dumps({"csr": (device.folder / "device.csr").read_text()}))
    keyless = await curl(device, est_site.frontend, f"/api/cas/{FLEET}/sign-csr", *args)
    assert keyless.status == 401
    signed = await curl(device, est_site.frontend, f"/api/cas/{FLEET}/sign-csr", *args,
                        "-H", f"x-functions-key: {FUNCTION_KEY}")
    assert signed.status == 201 and json.loads(signed.body)["object"] == "signed_csr"
    assert (await curl(device, est_site.frontend, "/api/no/such/route")).status == 404


async def test_the_device_key_is_never_in_the_ledger_an_answer_or_the_front_end_log(est_site, tmp_path):
    device, leaf = await _enrolled(est_site, tmp_path, "device-013")
    """The key file is read by openssl and curl in the device's folder; nothing kvca stores or answers
    holds its private value, raw, in hex or in base64 at any alignment."""
    text = openssl("pkey", "-in", device.key.name, "-text", "-noout", cwd=device.folder).decode()
    private = bytes.fromhex("".join(text.split("priv:")[1].split("pub:")[0].split()).replace(":", ""))[-32:]
    forms = [private, private.hex().encode()]
    for pad in range(3):  # base64 of the value wherever it starts in a longer encoded stream
        forms.append(base64.b64encode(b"\0" * pad + private)[4:-4])
    stored = Path(os.environ["KVCA_LEDGER_TABLE_URL"].removeprefix("sqlite://")).read_bytes()
    answers = (device.folder / "answer.bin").read_bytes() + base64.b64decode(
        (device.folder / "answer.bin").read_bytes())
    assert not [form for form in forms if form in stored or form in answers]
    assert sorted(p.name for p in device.folder.iterdir()) == [
        "answer.bin", "device.b64", "device.csr", "device.key", "device.pem", "headers.txt"]


async def test_an_entra_caller_the_rules_allow_enrolls_without_a_code_and_a_function_key_rule_does_not(
        est_site, tmp_path, monkeypatch):
    from apphelpers import easy_auth_headers
    from kvca_core import context

    provisioner = "00000000-0000-0000-0000-0000000e5701"
    monkeypatch.setenv("KVCA_ACCESS_RULES", json.dumps({
        "callers": {provisioner: {"actions": ["enroll"], "cas": [FLEET], "dns_suffixes": ["*"]}},
        # A function key means nothing on an anonymous route: this rule lets no EST client in.
        "function_key": {"actions": ["enroll"], "cas": ["*"], "dns_suffixes": ["*"]}}))
    monkeypatch.setenv("KVCA_TRUST_EASY_AUTH", "true")
    await context.reset_shared()
    device = Device.make(tmp_path, "device-020")
    (device.folder / "device.b64").write_bytes(device.csr_der_base64())
    post = ["--data-binary", "@device.b64", "-H", "Content-Type: application/pkcs10"]
    as_provisioner = [arg for name, value in easy_auth_headers(provisioner, "provisioning").items()
                      for arg in ("-H", f"{name}: {value}")]
    allowed = await curl(device, est_site.frontend, f"/.well-known/est/{FLEET}/simpleenroll", *post, *as_provisioner)
    assert allowed.status == 200, allowed.text
    (leaf,) = unpack(device, allowed)
    record = await (await context.shared()).ledger.certificate(FLEET, leaf.serial_number)
    assert record.requested_by == f"entra:{provisioner}" and record.name == "device-020"
    stranger = [arg for name, value in easy_auth_headers("00000000-0000-0000-0000-0000000e5702", "x").items()
                for arg in ("-H", f"{name}: {value}")]
    refused = await curl(device, est_site.frontend, f"/.well-known/est/{FLEET}/simpleenroll", *post, *stranger)
    assert refused.status == 403 and "enroll is not allowed for this caller" in refused.text
    keyed = await curl(device, est_site.frontend, f"/.well-known/est/{FLEET}/simpleenroll?code=anything", *post)
    assert keyed.status == 401  # no code, no principal: the challenge, whatever the function-key rule says
