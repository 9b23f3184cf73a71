"""POST /api/cas/{ca}/sign-csr (the registered function, real func.HttpRequest values) and
`kvca sign-csr`: the same operation, the same `signed_csr` document; strict bodies, the access action
`enroll` scoped by CA and names, and refusals that record nothing."""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from apphelpers import call_http, easy_auth_headers
from contract import check, parse
from esthelpers import FLEET, Device, ledger_rows

OBJECT_ID = "00000000-0000-0000-0000-00000000e501"


async def _sign(device_csr: bytes, *, status: int, ca: str = FLEET, headers=None, **fields):
    body = {"csr": device_csr.decode(), **fields}
    got, answer, _ = await call_http("kvca_sign_csr", "POST", f"cas/{ca}/sign-csr", body=body,
                                     route_params={"ca": ca}, headers=headers)
    assert got == status, answer
    return check(answer)


async def test_the_route_signs_a_device_csr_and_answers_its_ledger_record(fleet, tmp_path):
    device = Device.make(tmp_path, "device-101")
    answer = await _sign(device.csr(), status=201, validity_days=90)
    assert (answer["object"], answer["action"], answer["name"], answer["ca"]) == \
        ("signed_csr", "signed", "device-101", FLEET)
    chain = x509.load_pem_x509_certificates(answer["pem"].encode())
    assert format(chain[0].serial_number, "x") == answer["serial"]
    assert [r.serial for r in await ledger_rows(fleet)] == [answer["serial"]]
    assert (chain[0].not_valid_after_utc - chain[0].not_valid_before_utc).days == 90


@pytest.mark.parametrize("body, words", [
    ({"csr": "x", "key": "device.key"}, "unknown field(s) 'key'"),
    ({}, "field 'csr' is required"),
    ({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"},
     "not a valid PKCS#10 request"),
    ({"csr": "AAAA"}, "neither PEM, DER nor base64 DER"),
    ({"csr": None, "validity_days": True}, "field 'csr' is required"),
])
async def test_malformed_bodies_are_refused_with_400_naming_the_field(fleet, body, words):
    got, answer, _ = await call_http("kvca_sign_csr", "POST", f"cas/{FLEET}/sign-csr", body=body,
                                     route_params={"ca": FLEET})
    assert got == 400 and words in check(answer)["message"], answer
    assert "\n" not in answer["message"]
    assert await ledger_rows(fleet) == []


async def test_validity_days_must_be_a_whole_number(fleet, tmp_path):
    answer = await _sign(Device.make(tmp_path, "device-102").csr(), status=400, validity_days="30")
    assert "field 'validity_days' must be a whole number" in answer["message"]


async def test_a_csr_outside_the_policy_answers_422_with_its_step_and_records_nothing(fleet, tmp_path):
    device = Device.make(tmp_path, "device-103")
    answer = await _sign(device.csr(sans=["DNS:device-103.elsewhere.example"]), status=422)
    assert answer["step"] == "check-names" and "outside the allowed domains" in answer["message"]
    assert await ledger_rows(fleet) == []


async def test_enroll_is_scoped_by_the_ca_and_the_csr_names(fleet, tmp_path, monkeypatch):
    from kvca_core import context

    rules = {"callers": {OBJECT_ID: {"actions": ["enroll"], "cas": [FLEET], "dns_suffixes": ["fleet.example"]}}}
    monkeypatch.setenv("KVCA_ACCESS_RULES", json.dumps(rules))
    monkeypatch.setenv("KVCA_TRUST_EASY_AUTH", "true")
    await context.reset_shared()
    headers = easy_auth_headers(OBJECT_ID, "provisioning")
    device = Device.make(tmp_path, "d104")
    # The CN and the DNS name are under the rule's suffix: allowed.
    inside = await _sign(device.csr(subject="/CN=d104.fleet.example", sans=["DNS:d104.fleet.example"]),
                         status=201, headers=headers)
    assert inside["requested_by"] == f"entra:{OBJECT_ID}"
    # A device ID as CN is no DNS name: only a rule whose suffixes are "*" covers it.
    refused = await _sign(device.csr(), status=403, headers=headers)
    assert "'d104' is outside fleet.example" in refused["message"]
    # Another CA is outside the rule, and a caller without an identity has no rule at all.
    other = await _sign(device.csr(subject="/CN=d104.fleet.example"), status=403, headers=headers, ca="other-ca")
    assert "CA 'other-ca' is not one of fleet" in other["message"]
    await _sign(device.csr(subject="/CN=d104.fleet.example"), status=403)
    assert [r.serial for r in await ledger_rows(await context.shared())] == [inside["serial"]]


def test_the_cli_signs_one_csr_and_writes_the_chain(kvca, fleet_cli, tmp_path):
    device = Device.make(tmp_path / "devices", "device-105")
    device.csr()
    out = tmp_path / "device-105.pem"
    result = kvca("--json", "sign-csr", FLEET, "--csr", str(device.folder / "device.csr"), "--out", str(out),
                  "--days", "30")
    assert result.code == 0, result.err
    document = parse(result.out)
    assert (document["object"], document["action"], document["file"]) == ("signed_csr", "signed", str(out))
    chain = x509.load_pem_x509_certificates(out.read_bytes())
    assert format(chain[0].serial_number, "x") == document["serial"] and len(chain) == 2
    # Without --out the chain goes to standard output, the summary to standard error.
    plain = kvca("sign-csr", FLEET, "--csr", str(device.folder / "device.csr"), "--name", "sensor-105")
    assert plain.code == 0 and "sensor-105: signed" in plain.err
    assert x509.load_pem_x509_certificates(plain.out.encode())[0].subject.rfc4514_string() == "CN=device-105"


def test_the_cli_refuses_an_unreadable_csr_before_the_vault_with_exit_2(kvca, fleet_cli, tmp_path):
    bad = tmp_path / "bad.csr"
    bad.write_text("not a CSR")
    result = kvca("sign-csr", FLEET, "--csr", str(bad))
    assert result.code == 2 and f"CSR file '{bad}'" in result.err and len(result.err_lines) == 1
    policy = kvca("sign-csr", FLEET, "--csr", str(Device.make(tmp_path, "d106").csr_file()), "--profile", "server")
    assert policy.code == 1 and "external_profiles: client" in policy.err
