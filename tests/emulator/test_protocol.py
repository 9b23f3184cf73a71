"""The wire protocol: challenge, api-version, error shapes, paging (raw HTTPS where the SDK hides it)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.certificates import ApiVersion, CertificateClient, CertificatePolicy
from azure.keyvault.keys import ApiVersion as KeysApiVersion, KeyClient
from azure.keyvault.secrets import SecretClient

from kvemulator._server import CHALLENGE


def call(emulator, method: str, path: str, body: bytes | None = None, *, token: bool = True,
         headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    ctx = ssl.create_default_context(cafile=str(emulator.ca_path))
    req = urllib.request.Request(emulator.url + path, data=body, method=method)
    if token:
        req.add_header("Authorization", "Bearer anything")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else {}, dict(err.headers)


def test_request_without_token_gets_the_401_challenge(emulator):
    status, body, headers = call(emulator, "GET", "/certificates?api-version=7.6", token=False)
    assert status == 401
    assert headers["WWW-Authenticate"] == CHALLENGE
    assert 'resource="https://vault.azure.net"' in CHALLENGE
    assert body == {"error": {"code": "Unauthorized",
                              "message": "AKV10000: Request is missing a Bearer or PoP token."}}


@pytest.mark.parametrize("query", ["", "?api-version=", "?api-version=2099-01-01", "?api-version=6.0"])
def test_missing_or_unknown_api_version_is_a_400(emulator, query):
    status, body, _ = call(emulator, "GET", "/certificates" + query)
    assert status == 400
    assert body["error"]["code"] == "BadParameter"
    assert set(body) == {"error"}


@pytest.mark.parametrize("version", [ApiVersion.V7_4, ApiVersion.V7_5, ApiVersion.V7_6,
                                     ApiVersion.V2025_07_01, ApiVersion.V2026_04_01])
def test_sdk_api_versions_are_accepted(emulator, version):
    kwargs = emulator.client_kwargs()
    with CertificateClient(emulator.url, emulator.credential(), api_version=version, **kwargs) as certs:
        certs.begin_create_certificate("v", CertificatePolicy(issuer_name="Self", subject="CN=v",
                                                              key_type="EC")).result()
        assert certs.get_certificate("v").name == "v"
    with SecretClient(emulator.url, emulator.credential(), api_version=version, **kwargs) as secrets:
        assert secrets.get_secret("v").properties.content_type == "application/x-pkcs12"


@pytest.mark.parametrize("version", [KeysApiVersion.V7_4, KeysApiVersion.V2025_07_01])
def test_keys_api_versions_are_accepted(emulator, kv_clients, version):
    kv_clients.certificates.begin_create_certificate(
        "k", CertificatePolicy(issuer_name="Self", subject="CN=k", key_type="EC")).result()
    with KeyClient(emulator.url, emulator.credential(), api_version=version,
                   **emulator.client_kwargs()) as keys:
        assert keys.get_key("k").key_type == "EC"


def test_unknown_route_and_wrong_method_have_key_vault_error_shape(emulator):
    status, body, _ = call(emulator, "GET", "/nothing/here?api-version=7.6")
    assert status == 404 and body["error"]["code"] == "NotFound"
    status, body, _ = call(emulator, "PUT", "/certificates/x/pending?api-version=7.6", b"{}")
    assert status == 405 and set(body["error"]) == {"code", "message"}


@pytest.mark.parametrize("payload", [b"{not json", b"\xff\xfe", b"[1, 2"])
def test_malformed_json_is_a_400(emulator, payload):
    status, body, _ = call(emulator, "POST", "/certificates/x/create?api-version=7.6", payload)
    assert status == 400 and body["error"]["code"] == "BadParameter"


@pytest.mark.parametrize("body", [
    {"policy": {"key_props": {"kty": "DSA"}, "x509_props": {"subject": "CN=x"}, "issuer": {"name": "Unknown"}}},
    {"policy": {"key_props": {"kty": "RSA", "key_size": 1024}, "x509_props": {"subject": "CN=x"},
                "issuer": {"name": "Unknown"}}},
    {"policy": {"key_props": {"kty": "EC", "crv": "P-192"}, "x509_props": {"subject": "CN=x"},
                "issuer": {"name": "Unknown"}}},
    {"policy": {"x509_props": {"subject": "not a name"}, "issuer": {"name": "Unknown"}}},
    {"policy": {"x509_props": {"subject": "CN=x", "ekus": ["nope"]}, "issuer": {"name": "Unknown"}}},
    {"policy": {"x509_props": {"subject": "CN=x", "key_usage": ["everything"]}, "issuer": {"name": "Unknown"}}},
    {"policy": {"x509_props": {"subject": "CN=x", "validity_months": 0}, "issuer": {"name": "Unknown"}}},
    {"policy": {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "DigiCert"}}},
    {"policy": {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "Unknown"}}, "tags": {"a": 1}},
    {"policy": "text"},
    {},
])
def test_invalid_create_bodies_are_400_bad_parameter(emulator, body):
    status, answer, _ = call(emulator, "POST", "/certificates/x/create?api-version=7.6",
                             json.dumps(body).encode())
    assert status == 400, answer
    assert answer["error"]["code"] == "BadParameter"
    assert "Traceback" not in answer["error"]["message"]


@pytest.mark.parametrize("name", ["has space", "under_score", "x" * 128])
def test_invalid_object_names_are_400(emulator, name):
    path = "/certificates/" + urllib.request.quote(name) + "/pending?api-version=7.6"
    status, body, _ = call(emulator, "GET", path)
    assert status == 400 and body["error"]["code"] == "BadParameter"


def test_maxresults_over_25_is_a_400(emulator):
    status, body, _ = call(emulator, "GET", "/certificates?api-version=7.6&maxresults=26")
    assert status == 400 and body["error"]["code"] == "BadParameter"


def test_create_answers_202_with_location_and_retry_after(emulator):
    body = {"policy": {"key_props": {"kty": "EC", "crv": "P-256"}, "x509_props": {"subject": "CN=x"},
                       "issuer": {"name": "Unknown"}}}
    status, op, headers = call(emulator, "POST", "/certificates/loc/create?api-version=7.6",
                               json.dumps(body).encode())
    assert status == 202
    assert headers["Retry-After"] == "10"
    assert headers["Location"] == (f"{emulator.url}/certificates/loc/pending?api-version=7.6"
                                   f"&request_id={op['request_id']}")
    assert op["status"] == "inProgress" and "target" not in op
    assert op["status_details"] == ("Pending certificate created. Please Perform Merge to "
                                    "complete the request.")
    assert len(op["request_id"]) == 32


def test_names_are_case_insensitive_like_the_service(kv_clients):
    kv_clients.certificates.begin_create_certificate(
        "MixedCase", CertificatePolicy(issuer_name="Self", subject="CN=m", key_type="EC")).result()
    assert kv_clients.certificates.get_certificate("mixedcase").name == "MixedCase"


def test_key_operations_reject_wrong_algorithm(kv_clients, emulator):
    cert = kv_clients.certificates.begin_create_certificate(
        "alg", CertificatePolicy(issuer_name="Self", subject="CN=a", key_type="EC")).result()
    from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
    crypto = CryptographyClient(cert.key_id, emulator.credential(), **emulator.client_kwargs())
    with pytest.raises(HttpResponseError) as info:
        crypto.sign(SignatureAlgorithm.rs256, b"\0" * 32)
    assert info.value.status_code == 400
    with pytest.raises(HttpResponseError) as info:
        crypto.sign(SignatureAlgorithm.es256, b"\0" * 20)
    assert info.value.status_code == 400


def test_internal_failure_is_a_500_in_key_vault_shape_without_details(kv_clients, emulator, monkeypatch):
    import kvemulator._crypto
    kv_clients.certificates.begin_create_certificate(
        "boom", CertificatePolicy(issuer_name="Self", subject="CN=b", key_type="EC")).result()

    def broken(*args, **kwargs):
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(kvemulator._crypto, "sign_digest", broken)
    status, body, _ = call(emulator, "POST", "/keys/boom//sign?api-version=7.6",
                           json.dumps({"alg": "ES256", "value": "A" * 43}).encode())
    assert status == 500
    assert body["error"]["code"] == "InternalServerError"
    assert "internal detail" not in json.dumps(body) and "Traceback" not in json.dumps(body)


def test_control_api_adds_and_clears_faults(emulator):
    status, body, _ = call(emulator, "POST", "/_emulator/faults",
                           json.dumps({"kind": "503", "route": "^/secrets", "count": 1}).encode(), token=False)
    assert status == 201 and body["id"] >= 1
    status, body, _ = call(emulator, "GET", "/secrets/x?api-version=7.6")
    assert status == 503 and body["error"]["code"] == "ServiceUnavailable"
    call(emulator, "POST", "/_emulator/faults", json.dumps({"kind": "429"}).encode(), token=False)
    status, _, _ = call(emulator, "DELETE", "/_emulator/faults", token=False)
    assert status == 204
    status, body, _ = call(emulator, "GET", "/secrets/x?api-version=7.6")
    assert status == 404 and body["error"]["code"] == "SecretNotFound"
    status, body, _ = call(emulator, "POST", "/_emulator/faults", json.dumps({"kind": "418"}).encode())
    assert status == 400 and body["error"]["code"] == "BadParameter"
