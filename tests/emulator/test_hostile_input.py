"""Hostile and random input: every answer is Key Vault-shaped, none is a 500 or a traceback."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
