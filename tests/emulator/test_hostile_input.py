"""Hostile and random input: every answer is Key Vault-shaped, none is a 500 or a traceback."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvemulator._crypto import MISMATCH_MESSAGE

from .test_protocol import call

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
policy_like = st.fixed_dictionaries({}, optional={
    "key_props": st.fixed_dictionaries({}, optional={
        "kty": st.sampled_from(["RSA", "EC", "EC-HSM", "oct", 3, None]),
        "key_size": st.sampled_from([2048, 256, 1, "x", None]),
        "crv": st.sampled_from(["P-256", "P-521", "P-1", None, 5]),
        "exportable": json_values, "reuse_key": json_values}),
    "secret_props": st.fixed_dictionaries({}, optional={"contentType": json_values}),
    "x509_props": st.fixed_dictionaries({}, optional={
        "subject": st.sampled_from(["CN=a", "CN=a, O=b", "C=USA", "CN=", "bogus", 7, None])
        | st.text(max_size=30),
        "sans": st.fixed_dictionaries({}, optional={
            "dns_names": st.lists(st.text(max_size=15), max_size=3) | json_values,
            "emails": st.lists(st.text(max_size=15), max_size=2),
            "upns": st.lists(st.text(max_size=15), max_size=2)}),
        "ekus": st.lists(st.sampled_from(["1.3.6.1.5.5.7.3.1", "x", "2.5"]), max_size=2) | json_values,
        "key_usage": st.lists(st.sampled_from(["digitalSignature", "keyAgreement", "encipherOnly", "x"]),
                              max_size=3),
        "validity_months": json_values}),
    "issuer": st.fixed_dictionaries({}, optional={"name": st.sampled_from(["Self", "Unknown", "x", 1]),
                                                  "cert_transparency": json_values}),
    "lifetime_actions": json_values,
})
bodies = st.fixed_dictionaries({}, optional={"policy": policy_like | json_values,
                                             "attributes": json_values, "tags": json_values})
ROUTES = [
    ("POST", "/certificates/fuzz/create"), ("POST", "/certificates/fuzz/import"),
    ("POST", "/certificates/fuzz/pending/merge"), ("PATCH", "/certificates/fuzz/pending"),
    ("PATCH", "/certificates/fuzz/policy"), ("PATCH", "/certificates/fuzz/"),
    ("PUT", "/secrets/fuzz"), ("POST", "/keys/fuzz//sign"), ("POST", "/keys/fuzz//verify"),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies | json_values)
def test_random_bodies_never_cause_a_500(emulator, route, body):
    method, path = route
    status, answer, _ = call(emulator, method, path + "?api-version=7.6", json.dumps(body).encode())
    assert status < 500, (route, body, answer)
    if status >= 400:
        assert set(answer) == {"error"} and {"code", "message"} <= set(answer["error"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x5c=st.lists(st.binary(max_size=64).map(lambda b: __import__("base64").b64encode(b).decode())
                    | st.text(max_size=20), min_size=0, max_size=3),
       value=st.text(max_size=40) | st.binary(max_size=64).map(lambda b: __import__("base64").b64encode(b).decode()))
def test_garbage_certificates_are_400s(emulator, x5c, value):
    call(emulator, "POST", "/certificates/garbage/create?api-version=7.6", json.dumps(
        {"policy": {"key_props": {"kty": "EC"}, "x509_props": {"subject": "CN=g"},
                    "issuer": {"name": "Unknown"}}}).encode())
    status, answer, _ = call(emulator, "POST", "/certificates/garbage/pending/merge?api-version=7.6",
                             json.dumps({"x5c": x5c}).encode())
    assert status == 400 and answer["error"]["code"] == "BadParameter"
    status, answer, _ = call(emulator, "POST", "/certificates/garbage2/import?api-version=7.6",
                             json.dumps({"value": value, "pwd": "x"}).encode())
    assert status == 400 and answer["error"]["code"] == "BadParameter"


EC_PENDING = {"policy": {"key_props": {"kty": "EC"}, "x509_props": {"subject": "CN=h"},
                         "issuer": {"name": "Unknown"}}}


def _policy(**key_props):
    return {"policy": {"key_props": key_props, "x509_props": {"subject": "CN=h"}, "issuer": {"name": "Unknown"}}}


@pytest.mark.parametrize("method,path,body", [
    # Values of the wrong JSON type that used to reach a TypeError/AttributeError (a 500).
    ("POST", "/certificates/h/create", _policy(kty="RSA", key_size=2048.0)),
    ("POST", "/certificates/h/create", _policy(kty="EC", key_size=[256])),
    ("POST", "/certificates/h/create", _policy(kty="EC", crv=["P-256"])),
    ("POST", "/certificates/h/create", {"policy": {"x509_props": {"subject": "CN=h"}, "issuer": {"name": 5}}}),
    ("POST", "/certificates/h/import", {"value": "AAAA", "policy": {"key_props": {"kty": 5}}}),
    # Nesting deeper than the validators' recursion (and than json's own).
    ("POST", "/certificates/h/create", b'{"policy":' + b'{"a":' * 600 + b"1" + b"}" * 601),
    ("POST", "/certificates/h/create", b"[" * 100_000 + b"]" * 100_000),
    ("POST", "/_emulator/eventgrid/api/events", b"[" * 100_000 + b"]" * 100_000),
], ids=["rsa-size-float", "ec-size-list", "crv-list", "issuer-number", "import-kty-number",
        "deep-object", "deep-array", "deep-event-batch"])
def test_wrong_types_and_deep_nesting_are_400s(emulator, method, path, body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer, _ = call(emulator, method, path + "?api-version=7.6", raw,
                             headers={"aeg-sas-key": "k"})
    assert status == 400, answer
    assert answer["error"]["code"] in ("BadParameter", "BadRequest")


def test_import_with_a_non_string_kty_is_refused_before_anything_is_stored(emulator):
    key = ec.generate_private_key(ec.SECP256R1())
    pfx = base64.b64encode(pkcs12.serialize_key_and_certificates(
        b"h", key, _self_signed(key), None, serialization.NoEncryption())).decode()
    status, answer, _ = call(emulator, "POST", "/certificates/typed/import?api-version=7.6",
                             json.dumps({"value": pfx, "policy": {"key_props": {"kty": ["EC"]}}}).encode())
    assert status == 400 and "kty" in answer["error"]["message"]
    assert call(emulator, "GET", "/certificates/typed?api-version=7.6")[0] == 404


def test_merging_a_certificate_with_an_unloadable_key_algorithm_is_the_mismatch_400(emulator):
    assert call(emulator, "POST", "/certificates/odd/create?api-version=7.6",
                json.dumps(EC_PENDING).encode())[0] == 202
    key = ec.generate_private_key(ec.SECP256R1())
    der = _self_signed(key).public_bytes(serialization.Encoding.DER)
    # id-ecPublicKey (1.2.840.10045.2.1) -> 1.2.840.10045.2.9: parses, but public_key() cannot load it.
    odd = der.replace(bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06072a8648ce3d0209"), 1)
    assert odd != der
    status, answer, _ = call(emulator, "POST", "/certificates/odd/pending/merge?api-version=7.6",
                             json.dumps({"x5c": [base64.b64encode(odd).decode()]}).encode())
    assert status == 400 and answer["error"]["message"] == MISMATCH_MESSAGE
    status, op, _ = call(emulator, "GET", "/certificates/odd/pending?api-version=7.6")
    assert status == 200 and op["status"] == "inProgress"


def test_secret_update_with_a_non_string_content_type_changes_nothing(kv_clients, emulator):
    kv_clients.secrets.set_secret("typed", "v", content_type="text/plain")
    status, _, _ = call(emulator, "PATCH", "/secrets/typed/?api-version=7.6",
                        json.dumps({"contentType": 5, "attributes": {"enabled": False}}).encode())
    assert status == 400
    secret = kv_clients.secrets.get_secret("typed")
    assert secret.properties.content_type == "text/plain" and secret.properties.enabled


@pytest.mark.parametrize("request_body", [{"advance": {"days": 1e300}}, {"advance": {"days": 9e8}},
                                          {"set": "9999-12-31T23:59:59Z"}, {"set": "1900-01-01T00:00:00Z"}])
def test_clock_moves_out_of_range_are_refused_and_leave_the_clock_alone(emulator, request_body):
    before = emulator.clock.offset_seconds
    status, answer, _ = call(emulator, "POST", "/_emulator/clock", json.dumps(request_body).encode())
    assert status == 400 and answer["error"]["code"] == "BadParameter"
    assert emulator.clock.offset_seconds == before
    assert call(emulator, "GET", "/certificates?api-version=7.6")[0] == 200


@pytest.mark.parametrize("request_body", [{"limits": [1]}, {"limits": {"other": 1, "nope": 2}},
                                          {"limits": {"other": "Infinity"}}])
def test_refused_throttling_request_leaves_throttling_as_it_was(emulator, request_body):
    status, _, _ = call(emulator, "POST", "/_emulator/throttling", json.dumps(request_body).encode())
    assert status == 400
    assert not emulator._throttle.enabled and emulator._throttle.limits["other"] == 4000


def test_fault_with_a_non_string_method_is_a_400(emulator):
    status, answer, _ = call(emulator, "POST", "/_emulator/faults",
                             json.dumps({"kind": "500", "method": 5}).encode())
    assert status == 400 and emulator.faults.list() == []


def _self_signed(key) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "h")])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))


def _leaf_and_key():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kdf")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert


# 65,536 rounds encode as INTEGER 02 03 01 00 00; the same length holds 8,388,607 (02 03 7f ff ff).
ROUNDS, HUGE = b"\x02\x03\x01\x00\x00", b"\x02\x03\x7f\xff\xff"


def test_pfx_asking_for_millions_of_kdf_rounds_is_refused_before_decrypting(emulator):
    key, cert = _leaf_and_key()
    encryption = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(65536).build(b"pw")
    pfx = pkcs12.serialize_key_and_certificates(b"kdf", key, cert, None, encryption)
    assert pfx.count(ROUNDS) == 2  # the key's and the certificates' PBES2 parameters
    status, answer, _ = call(emulator, "POST", "/certificates/kdf-ok/import?api-version=7.6",
                             json.dumps({"value": base64.b64encode(pfx).decode(), "pwd": "pw"}).encode())
    assert status == 200, answer
    huge = pfx.replace(ROUNDS, HUGE)
    status, answer, _ = call(emulator, "POST", "/certificates/kdf-huge/import?api-version=7.6",
                             json.dumps({"value": base64.b64encode(huge).decode(), "pwd": "pw"}).encode())
    assert status == 400 and answer["error"]["code"] == "BadParameter"
    assert "password-KDF iterations" in answer["error"]["message"]


def test_encrypted_pem_key_asking_for_millions_of_kdf_rounds_is_refused_before_decrypting(emulator):
    key, cert = _leaf_and_key()
    # cryptography writes PKCS#8 with 2,048 rounds only; openssl takes -iter (key through a pipe).
    plain = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    der = subprocess.run(["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-iter", "65536",
                          "-passout", "pass:pw", "-outform", "DER"],
                         input=plain, capture_output=True, check=True).stdout
    assert der.count(ROUNDS) == 1
    body = base64.encodebytes(der.replace(ROUNDS, HUGE)).decode()
    label = "ENCRYPTED PRIVATE KEY"  # the key is made above at run time; no key text is in this file
    pem = (f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"
           + cert.public_bytes(serialization.Encoding.PEM).decode())
    status, answer, _ = call(emulator, "POST", "/certificates/kdf-pem/import?api-version=7.6",
                             json.dumps({"value": pem, "pwd": "pw"}).encode())
    assert status == 400 and "password-KDF iterations" in answer["error"]["message"]


@pytest.mark.parametrize("token", ["!!!", "%FF%FE", "_w", "a" * 2000, "AAAA", "%00%00", "-1"])
def test_a_forged_skiptoken_is_a_400_or_a_page_never_a_500(emulator, token):
    status, answer, _ = call(emulator, "GET", f"/certificates?api-version=7.6&$skiptoken={token}")
    assert status in (200, 400), answer
    if status == 400:
        assert answer["error"]["code"] == "BadParameter"
