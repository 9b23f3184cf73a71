"""What the real service answered in recorded sessions, through the real SDK: the defaults a
created policy reads back, the CSR's requested extensions, merge's x5c forms and Location,
a Self certificate's dates, the keys API's digest-length error, and 429s without Retry-After.
Each test names its recording or report."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.keyvault.certificates import CertificateClient, CertificatePolicy, KeyUsageType
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from kvemulator import _crypto as kc

from .helpers import TestCA
from .test_protocol import call

SERVER_AUTH, CLIENT_AUTH = "1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"
CA = TestCA()


def raw_policy(certs: CertificateClient, name: str) -> dict:
    """The stored policy as JSON, through the SDK's pipeline (its model has no basic_constraints)."""
    response = certs.send_request(HttpRequest("GET", f"{certs.vault_url}/certificates/{name}/policy?api-version=7.6"))
    response.raise_for_status()
    return response.json()


def test_a_policy_of_only_a_subject_and_issuer_unknown_reads_back_the_service_defaults(kv_clients):
    """Python SDK recording test_merge_certificate (API 7.3); .NET session
    DownloadECDsaCertificateSignRemoteVerifyLocal (API 7.2)."""
    certs = kv_clients.certificates
    certs.begin_create_certificate("portal", CertificatePolicy(issuer_name="Unknown", subject="CN=portal"))
    policy = certs.get_certificate_policy("portal")
    assert policy.enhanced_key_usage == [SERVER_AUTH, CLIENT_AUTH]
    assert policy.key_usage == [KeyUsageType.digital_signature, KeyUsageType.key_encipherment]
    assert (policy.key_type, policy.key_size, policy.exportable) == ("RSA", 2048, True)
    assert policy.content_type == "application/x-pkcs12" and policy.validity_in_months == 12
    (action,) = policy.lifetime_actions
    assert (action.action, action.lifetime_percentage) == ("EmailContacts", 80)
    assert raw_policy(certs, "portal")["x509_props"]["basic_constraints"] == {"ca": False}


@pytest.mark.parametrize("given,ekus", [
    ({"key_usage": [KeyUsageType.digital_signature]}, [SERVER_AUTH, CLIENT_AUTH]),
    ({"enhanced_key_usage": [CLIENT_AUTH]}, [CLIENT_AUTH]),
    ({"key_usage": [KeyUsageType.key_cert_sign], "enhanced_key_usage": [SERVER_AUTH]}, [SERVER_AUTH]),
], ids=["key-usage-only", "ekus-given", "both-given"])
def test_the_default_eku_pair_is_added_unless_ekus_are_given(kv_clients, given, ekus):
    """Python SDK recording test_merge_certificate (API 7.3): the pair comes with a given key usage too."""
    certs = kv_clients.certificates
    certs.begin_create_certificate("ekus", CertificatePolicy(issuer_name="Unknown", subject="CN=e", **given))
    policy = certs.get_certificate_policy("ekus")
    assert policy.enhanced_key_usage == ekus
    assert policy.key_usage == given.get("key_usage", [KeyUsageType.digital_signature,
                                                        KeyUsageType.key_encipherment])


def test_basic_constraints_read_ca_false_even_with_key_cert_sign(kv_clients):
    """.NET session DownloadECDsaCertificateSignRemoteVerifyLocal (API 7.2)."""
    certs = kv_clients.certificates
    certs.begin_create_certificate("signer", CertificatePolicy(
        issuer_name="Unknown", subject="CN=signer", key_type="EC",
        key_usage=[KeyUsageType.key_cert_sign, KeyUsageType.crl_sign]))
    assert raw_policy(certs, "signer")["x509_props"]["basic_constraints"] == {"ca": False}


@pytest.mark.parametrize("curve,size", [("P-256", 256), ("P-384", 384), ("P-521", 521)])
def test_an_ec_policy_reads_back_its_curves_key_size(kv_clients, curve, size):
    """.NET session DownloadECDsaCertificateSignRemoteVerifyLocal (API 7.2): P-256 reads key_size 256."""
    certs = kv_clients.certificates
    certs.begin_create_certificate("curve", CertificatePolicy(
        issuer_name="Unknown", subject="CN=c", key_type="EC", key_curve_name=curve))
    policy = certs.get_certificate_policy("curve")
    assert (policy.key_curve_name, policy.key_size) == (curve, size)


def test_the_csr_requests_the_sans_key_usage_ekus_and_basic_constraints(kv_clients):
    """Python SDK recording test_get_pending_certificate_signing_request (API 7.3): the CSR's
    requested extensions are key usage (critical), EKU serverAuth + clientAuth and
    basicConstraints CA:FALSE (not critical)."""
    op = kv_clients.certificates.begin_create_certificate("csr", CertificatePolicy(
        issuer_name="Unknown", subject="CN=csr", san_dns_names=["csr.example.test"])).result()
    extensions = x509.load_der_x509_csr(op.csr).extensions
    san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["csr.example.test"]
    ku = extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is False and not constraints.critical


@pytest.mark.parametrize("form", ["der", "base64-text-of-der", "pem-text"])
def test_merge_takes_each_recorded_x5c_form_and_answers_201_with_the_certificates_location(
        emulator, kv_clients, form):
    """Python SDK recording test_merge_certificate (API 7.3): an x5c entry that is base64 of the
    DER's base64 text, and the 201's Location; .NET recordings: base64 DER; JS recording (2019):
    base64 of PEM text. The SDK base64-encodes each entry it is given."""
    certs = kv_clients.certificates
    op = certs.begin_create_certificate("merged", CertificatePolicy(
        issuer_name="Unknown", subject="CN=merged", key_type="EC")).result()
    leaf = CA.sign_csr(op.csr)
    der = leaf.public_bytes(serialization.Encoding.DER)
    entry = {"der": der, "base64-text-of-der": base64.b64encode(der),
             "pem-text": leaf.public_bytes(serialization.Encoding.PEM)}[form]
    answers = []
    merged = certs.merge_certificate("merged", [entry],
                                     raw_response_hook=lambda r: answers.append(r.http_response))
    assert x509.load_der_x509_certificate(merged.cer) == leaf
    (answer,) = answers
    assert answer.status_code == 201
    assert answer.headers["Location"] == f"{emulator.url}/certificates/merged?api-version=2026-04-01"


def test_a_self_certificate_runs_from_600_s_before_its_creation_for_its_policys_months(kv_clients):
    """Python SDK recording test_get_pending_certificate_signing_request (API 7.3): created
    15:09:45, notBefore 14:59:44, notAfter 15:09:44 a year later."""
    cert = kv_clients.certificates.begin_create_certificate("self", CertificatePolicy(
        issuer_name="Self", subject="CN=self", key_type="EC", validity_in_months=7)).result()
    leaf = x509.load_der_x509_certificate(cert.cer)
    created = cert.properties.created_on
    assert leaf.not_valid_before_utc == created - dt.timedelta(seconds=600)
    assert leaf.not_valid_after_utc == kc.add_months(created, 7)
    assert (cert.properties.not_before, cert.properties.expires_on) == (
        leaf.not_valid_before_utc, leaf.not_valid_after_utc)
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


@pytest.mark.parametrize("key,alg,wanted", [
    ({"key_type": "EC", "key_curve_name": "P-256"}, SignatureAlgorithm.es256, 32),
    ({"key_type": "EC", "key_curve_name": "P-384"}, SignatureAlgorithm.es384, 48),
    ({"key_type": "RSA"}, SignatureAlgorithm.rs256, 32),
    ({"key_type": "RSA"}, SignatureAlgorithm.ps512, 64),
])
def test_signing_a_digest_of_the_wrong_length_is_the_services_400(emulator, kv_clients, key, alg, wanted):
    """User reports of the real answer (azure-cli#28027, azure-sdk-for-js#12654): 400
    BadParameter "Invalid length of 'value': N bytes. ES256 requires 32 bytes, encoded with base64url."."""
    cert = kv_clients.certificates.begin_create_certificate("signing", CertificatePolicy(
        issuer_name="Self", subject="CN=s", **key)).result()
    signer = CryptographyClient(cert.key_id, emulator.credential(), **emulator.client_kwargs())
    with pytest.raises(HttpResponseError) as info:
        signer.sign(alg, hashlib.sha1(b"tbs").digest())  # 20 bytes: no algorithm's length
    assert (info.value.status_code, info.value.error.code) == (400, "BadParameter")
    assert info.value.error.message == (f"Invalid length of 'value': 20 bytes. {alg.value} requires "
                                        f"{wanted} bytes, encoded with base64url.")


@pytest.mark.parametrize("asked", [False, True])
def test_throttled_answers_carry_retry_after_only_when_the_control_asks(emulator, asked):
    """AzureSignTool#219: the one captured 429 of Key Vault had no Retry-After."""
    body = {"enabled": True, "limits": {"other": 1}, **({"retry_after": True} if asked else {})}
    assert call(emulator, "POST", "/_emulator/throttling", json.dumps(body).encode())[0] == 204
    call(emulator, "GET", "/certificates?api-version=7.6")
    status, _, headers = call(emulator, "GET", "/certificates?api-version=7.6")
    assert status == 429 and ("Retry-After" in headers) is asked
    emulator.throttling(False)
    fault = {"kind": "429", "count": 1, **({"retry_after": 3} if asked else {})}
    assert call(emulator, "POST", "/_emulator/faults", json.dumps(fault).encode())[0] == 201
    status, _, headers = call(emulator, "GET", "/certificates?api-version=7.6")
    assert status == 429 and headers.get("Retry-After") == ("3" if asked else None)
