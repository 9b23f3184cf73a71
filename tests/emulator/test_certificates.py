"""Certificates through the real sync SDK client: create, pending, merge, import, read, update."""

from __future__ import annotations

import base64
import hashlib

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.certificates import (CertificateContentType, CertificatePolicy,
                                         KeyUsageType, WellKnownIssuerNames)
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .helpers import TestCA

KEY_TYPES = [
    pytest.param({"key_type": "RSA", "key_size": 2048}, id="rsa-2048"),
    pytest.param({"key_type": "RSA", "key_size": 3072}, id="rsa-3072"),
    pytest.param({"key_type": "RSA", "key_size": 4096}, id="rsa-4096"),
    pytest.param({"key_type": "EC", "key_curve_name": "P-256"}, id="ec-p256"),
    pytest.param({"key_type": "EC", "key_curve_name": "P-384"}, id="ec-p384"),
    pytest.param({"key_type": "EC", "key_curve_name": "P-521"}, id="ec-p521"),
]


def unknown_policy(**overrides) -> CertificatePolicy:
    args = dict(issuer_name=WellKnownIssuerNames.unknown, subject="CN=app.example.test, O=kvca",
                san_dns_names=["app.example.test", "www.example.test"],
                san_emails=["ops@example.test"], san_user_principal_names=["svc@example.test"],
                key_usage=[KeyUsageType.digital_signature, KeyUsageType.key_encipherment],
                enhanced_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH.dotted_string],
                validity_in_months=12, exportable=True, key_type="EC", key_curve_name="P-256",
                content_type=CertificateContentType.pkcs12)
    args.update(overrides)
    return CertificatePolicy(**args)


def spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def create_pending(client, name: str, policy: CertificatePolicy):
    op = client.begin_create_certificate(name, policy).result()
    assert op.status == "inProgress"
    return op


@pytest.mark.parametrize("key", KEY_TYPES)
def test_unknown_issuer_lifecycle_for_every_key_type(kv_clients, key):
    certs, secrets = kv_clients.certificates, kv_clients.secrets
    policy = unknown_policy(**key)
    op = create_pending(certs, "lifecycle", policy)

    csr = x509.load_der_x509_csr(op.csr)
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "app.example.test"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["app.example.test", "www.example.test"]
    assert san.get_values_for_type(x509.RFC822Name) == ["ops@example.test"]
    assert len(san.get_values_for_type(x509.OtherName)) == 1
    ku = csr.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert list(csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    pub = csr.public_key()
    if key["key_type"] == "RSA":
        assert isinstance(pub, rsa.RSAPublicKey) and pub.key_size == key["key_size"]
    else:
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        assert pub.curve.name == {"P-256": "secp256r1", "P-384": "secp384r1",
                                  "P-521": "secp521r1"}[key["key_curve_name"]]

    ca = TestCA()
    leaf = ca.sign_csr(op.csr)
    merged = certs.merge_certificate("lifecycle", [leaf.public_bytes(serialization.Encoding.DER),
                                                   ca.cert.public_bytes(serialization.Encoding.DER)])
    assert merged.cer == leaf.public_bytes(serialization.Encoding.DER)
    assert merged.properties.enabled is True
    assert merged.properties.expires_on == leaf.not_valid_after_utc
    assert merged.properties.not_before == leaf.not_valid_before_utc
    assert merged.properties.x509_thumbprint == hashlib.sha1(merged.cer).digest()

    got = certs.get_certificate("lifecycle")
    assert got.properties.version == merged.properties.version
    assert got.policy.issuer_name == "Unknown"
    assert certs.get_certificate_operation("lifecycle").status == "completed"

    secret = secrets.get_secret("lifecycle")
    assert secret.properties.content_type == "application/x-pkcs12"
    key_obj, cert, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert spki(key_obj.public_key()) == spki(pub)
    assert cert == leaf and extra == [ca.cert]


def test_csr_key_and_merge_with_foreign_key_is_refused(kv_clients):
    certs = kv_clients.certificates
    op = create_pending(certs, "foreign", unknown_policy())
    ca = TestCA()
    stranger = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_der_x509_csr(op.csr)
    wrong = ca.sign(stranger.public_key(), csr.subject)
    with pytest.raises(HttpResponseError) as info:
        certs.merge_certificate("foreign", [wrong.public_bytes(serialization.Encoding.DER)])
    assert info.value.status_code == 400
    assert info.value.error.code == "BadParameter"
    assert "does not match the public part of the specified private key" in info.value.error.message
    # Still pending: the right certificate merges afterwards.
    assert certs.get_certificate_operation("foreign").status == "inProgress"
    certs.merge_certificate("foreign", [ca.sign_csr(op.csr).public_bytes(serialization.Encoding.DER)])


def test_merge_accepts_base64_of_pem_entries(kv_clients):
    certs = kv_clients.certificates
    op = create_pending(certs, "pemmerge", unknown_policy())
    ca = TestCA()
    leaf = ca.sign_csr(op.csr)
    pem = leaf.public_bytes(serialization.Encoding.PEM) + ca.cert.public_bytes(serialization.Encoding.PEM)
    merged = certs.merge_certificate("pemmerge", [pem])
    assert merged.cer == leaf.public_bytes(serialization.Encoding.DER)
    _, _, extra = pkcs12.load_key_and_certificates(
        base64.b64decode(kv_clients.secrets.get_secret("pemmerge").value), None)
    assert extra == [ca.cert]


def test_create_or_import_while_pending_is_a_409(kv_clients):
    certs = kv_clients.certificates
    create_pending(certs, "busy", unknown_policy())
    with pytest.raises(ResourceExistsError) as info:
        certs.begin_create_certificate("busy", unknown_policy())
    assert info.value.status_code == 409
    assert "pending key vault certificate's status is inProgress" in info.value.message
    key = ec.generate_private_key(ec.SECP256R1())
    pfx = pkcs12.serialize_key_and_certificates(
        b"x", key, TestCA().sign(key.public_key(), x509.Name([])), None,
        serialization.NoEncryption())
    with pytest.raises(ResourceExistsError):
        certs.import_certificate("busy", pfx)
    # Deleting the pending operation frees the name.
    certs.delete_certificate_operation("busy")
    with pytest.raises(ResourceNotFoundError) as info:
        certs.get_certificate_operation("busy")
    assert info.value.error.code == "PendingCertificateNotFound"
    assert info.value.error.message == "Pending certificate not found: busy"


def test_cancel_marks_operation_cancelled_and_allows_new_version(kv_clients, emulator):
    certs = kv_clients.certificates
    create_pending(certs, "cancelme", unknown_policy())
    op = certs.cancel_certificate_operation("cancelme")
    # The service answers the cancel still inProgress; "cancelled" reads only later.
    assert op.cancellation_requested is True and op.status == "inProgress"
    emulator.clock.advance(seconds=emulator.fidelity.cancel_settle_seconds + 1)
    assert certs.get_certificate_operation("cancelme").status == "cancelled"
    create_pending(certs, "cancelme", unknown_policy())


def test_pending_operation_of_unknown_name_is_404(kv_clients):
    with pytest.raises(ResourceNotFoundError) as info:
        kv_clients.certificates.get_certificate_operation("never-made")
    assert info.value.status_code == 404
    assert info.value.error.code == "PendingCertificateNotFound"


def test_self_issued_certificate_completes_at_once(kv_clients):
    policy = CertificatePolicy(issuer_name="Self", subject="CN=self.test", exportable=False,
                               key_type="EC", key_curve_name="P-384",
                               content_type=CertificateContentType.pem, validity_in_months=3)
    cert = kv_clients.certificates.begin_create_certificate("selfie", policy).result()
    leaf = x509.load_der_x509_certificate(cert.cer)
    assert leaf.subject == leaf.issuer
    assert cert.policy.issuer_name == "Self" and cert.properties.enabled
    # Not exportable: the PEM secret holds the certificate only.
    value = kv_clients.secrets.get_secret("selfie").value
    assert "PRIVATE KEY" not in value
    assert x509.load_pem_x509_certificates(value.encode()) == [leaf]


@pytest.mark.parametrize("content_type", [CertificateContentType.pkcs12, CertificateContentType.pem])
@pytest.mark.parametrize("exportable", [True, False])
def test_secret_holds_key_only_when_exportable(kv_clients, content_type, exportable):
    certs = kv_clients.certificates
    op = create_pending(certs, "download", unknown_policy(content_type=content_type,
                                                          exportable=exportable))
    ca = TestCA()
    leaf = ca.sign_csr(op.csr)
    certs.merge_certificate("download", [leaf.public_bytes(serialization.Encoding.DER),
                                         ca.cert.public_bytes(serialization.Encoding.DER)])
    secret = kv_clients.secrets.get_secret("download")
    assert secret.properties.content_type == str(content_type.value)
    if content_type == CertificateContentType.pem:
        text = secret.value
        assert (("-----BEGIN PRIVATE" + " KEY-----") in text) is exportable
        if exportable:
            assert text.startswith(("-----BEGIN PRIVATE" + " KEY-----"))
            key = serialization.load_pem_private_key(text.encode(), None)
            assert spki(key.public_key()) == spki(leaf.public_key())
        assert x509.load_pem_x509_certificates(text.encode()) == [leaf, ca.cert]
    else:
        key, cert, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
        assert (key is not None) is exportable
        if exportable:
            assert cert == leaf and extra == [ca.cert]
        else:  # with no key, nothing marks the leaf: every certificate is "additional"
            assert cert is None and extra == [leaf, ca.cert]


@pytest.mark.parametrize("reuse", [True, False])
def test_new_version_honours_reuse_key(kv_clients, reuse):
    certs = kv_clients.certificates
    policy = unknown_policy(reuse_key=reuse)
    ca = TestCA()
    first = create_pending(certs, "renewed", policy)
    certs.merge_certificate("renewed", [ca.sign_csr(first.csr).public_bytes(serialization.Encoding.DER)])
    second = create_pending(certs, "renewed", policy)
    same = (spki(x509.load_der_x509_csr(first.csr).public_key())
            == spki(x509.load_der_x509_csr(second.csr).public_key()))
    assert same is reuse
    # While the new version is pending, "latest" is still the merged one.
    assert certs.get_certificate("renewed").cer is not None


def test_pending_key_refuses_to_sign_and_merged_key_signs(kv_clients, emulator):
    certs = kv_clients.certificates
    # The trick of a public .NET library that keeps CA keys in Key Vault: a Self version,
    # then Unknown with reuse_key.
    temp = CertificatePolicy(issuer_name="Self", subject="CN=Test CA", exportable=False,
                             key_type="EC", key_curve_name="P-256", reuse_key=True)
    self_version = certs.begin_create_certificate("ca-key", temp).result()
    op = create_pending(certs, "ca-key", unknown_policy(subject="CN=Test CA", reuse_key=True,
                                                        exportable=False))
    pending_version = op.id  # .../pending; the pending version is the newest key version
    keys = list(kv_clients.keys.list_properties_of_key_versions("ca-key"))
    pending_kid = next(k.id for k in keys if k.version != self_version.properties.version)
    digest = hashlib.sha256(b"tbs").digest()
    crypto = CryptographyClient(pending_kid, emulator.credential(), **emulator.client_kwargs())
    with pytest.raises(HttpResponseError) as info:
        crypto.sign(SignatureAlgorithm.es256, digest)
    assert info.value.status_code == 403
    assert pending_version.endswith("/pending")
    # The completed Self version's key (the same key) signs.
    crypto = CryptographyClient(self_version.key_id, emulator.credential(), **emulator.client_kwargs())
    result = crypto.sign(SignatureAlgorithm.es256, digest)
    assert len(result.signature) == 64
    pub = x509.load_der_x509_csr(op.csr).public_key()
    r, s = int.from_bytes(result.signature[:32], "big"), int.from_bytes(result.signature[32:], "big")
    pub.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


SIGNING = [
    ({"key_type": "RSA", "key_size": 2048}, SignatureAlgorithm.rs256, hashes.SHA256()),
    ({"key_type": "RSA", "key_size": 2048}, SignatureAlgorithm.ps384, hashes.SHA384()),
    ({"key_type": "RSA", "key_size": 3072}, SignatureAlgorithm.rs512, hashes.SHA512()),
    ({"key_type": "EC", "key_curve_name": "P-256"}, SignatureAlgorithm.es256, hashes.SHA256()),
    ({"key_type": "EC", "key_curve_name": "P-384"}, SignatureAlgorithm.es384, hashes.SHA384()),
    ({"key_type": "EC", "key_curve_name": "P-521"}, SignatureAlgorithm.es512, hashes.SHA512()),
]


@pytest.mark.parametrize("key,alg,hash_alg", SIGNING, ids=[s[1].value for s in SIGNING])
def test_key_signs_digests_that_cryptography_verifies(kv_clients, emulator, key, alg, hash_alg):
    cert = kv_clients.certificates.begin_create_certificate(
        "signer", CertificatePolicy(issuer_name="Self", subject="CN=signer", **key)).result()
    jwk = kv_clients.keys.get_key("signer")
    assert jwk.id == cert.key_id
    h = hashes.Hash(hash_alg)
    h.update(b"to be signed")
    digest = h.finalize()
    crypto = CryptographyClient(cert.key_id, emulator.credential(), **emulator.client_kwargs())
    signature = crypto.sign(alg, digest).signature
    pub = x509.load_der_x509_certificate(cert.cer).public_key()
    pre = utils.Prehashed(hash_alg)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        size = (pub.curve.key_size + 7) // 8
        assert len(signature) == 2 * size
        der = utils.encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                         int.from_bytes(signature[size:], "big"))
        pub.verify(der, digest, ec.ECDSA(pre))
        assert jwk.key.crv == key["key_curve_name"]
    else:
        pad = (padding.PKCS1v15() if alg.value.startswith("RS")
               else padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=padding.PSS.AUTO))
        pub.verify(signature, digest, pad, pre)
        assert int.from_bytes(jwk.key.n, "big") == pub.public_numbers().n
    assert crypto.verify(alg, digest, signature).is_valid


def test_import_pfx_with_password_and_pem_with_key(kv_clients):
    certs = kv_clients.certificates
    ca = TestCA()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = ca.sign(key.public_key(), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imp")]))
    pfx = pkcs12.serialize_key_and_certificates(
        b"imp", key, leaf, [ca.cert], serialization.BestAvailableEncryption(b"s3cret"))
    imported = certs.import_certificate("imported-pfx", pfx, password="s3cret")
    assert imported.cer == leaf.public_bytes(serialization.Encoding.DER)
    assert imported.policy.key_type == "RSA" and imported.policy.key_size == 2048
    _, _, extra = pkcs12.load_key_and_certificates(
        base64.b64decode(kv_clients.secrets.get_secret("imported-pfx").value), None)
    assert extra == [ca.cert]

    pem = (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
           + leaf.public_bytes(serialization.Encoding.PEM) + ca.cert.public_bytes(serialization.Encoding.PEM))
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=imp",
                               content_type=CertificateContentType.pem)
    imported = certs.import_certificate("imported-pem", pem, policy=policy)
    assert imported.policy.content_type == CertificateContentType.pem
    text = kv_clients.secrets.get_secret("imported-pem").value
    assert text.startswith(("-----BEGIN PRIVATE" + " KEY-----"))
    assert x509.load_pem_x509_certificates(text.encode()) == [leaf, ca.cert]


def test_import_with_wrong_password_or_mismatched_key_is_a_400(kv_clients):
    certs = kv_clients.certificates
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    leaf = TestCA().sign(key.public_key(), x509.Name([]))
    pfx = pkcs12.serialize_key_and_certificates(b"x", key, leaf, None,
                                                serialization.BestAvailableEncryption(b"right"))
    with pytest.raises(HttpResponseError) as info:
        certs.import_certificate("badimport", pfx, password="wrong")
    assert info.value.status_code == 400 and info.value.error.code == "BadParameter"
    pem = (other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()) + leaf.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(HttpResponseError) as info:
        certs.import_certificate("badimport", pem, policy=CertificatePolicy(
            issuer_name="Unknown", subject="CN=x", content_type=CertificateContentType.pem))
    assert info.value.status_code == 400
    assert "does not match" in info.value.error.message


def test_versions_policy_and_properties_update(kv_clients):
    certs = kv_clients.certificates
    policy = CertificatePolicy(issuer_name="Self", subject="CN=v", key_type="EC")
    v1 = certs.begin_create_certificate("versioned", policy).result()
    v2 = certs.begin_create_certificate("versioned", policy).result()
    versions = {p.version for p in certs.list_properties_of_certificate_versions("versioned")}
    assert versions == {v1.properties.version, v2.properties.version}
    assert certs.get_certificate("versioned").properties.version == v2.properties.version
    assert certs.get_certificate_version("versioned", v1.properties.version).cer == v1.cer

    updated = certs.update_certificate_properties("versioned", v1.properties.version,
                                                  enabled=False, tags={"kvca-ca": "ca1"})
    assert updated.properties.enabled is False and updated.properties.tags == {"kvca-ca": "ca1"}
    assert certs.get_certificate_version("versioned", v1.properties.version).properties.enabled is False

    new_policy = certs.update_certificate_policy(
        "versioned", CertificatePolicy(issuer_name="Unknown", subject="CN=v2", key_type="EC",
                                       reuse_key=True, validity_in_months=6))
    assert new_policy.issuer_name == "Unknown" and new_policy.subject == "CN=v2"
    got = certs.get_certificate_policy("versioned")
    assert got.reuse_key is True and got.validity_in_months == 6


def test_list_include_pending_shows_pending_only_certificates_disabled(kv_clients):
    certs = kv_clients.certificates
    certs.begin_create_certificate("done", CertificatePolicy(issuer_name="Self", subject="CN=d",
                                                             key_type="EC")).result()
    create_pending(certs, "waiting", unknown_policy())
    assert [c.name for c in certs.list_properties_of_certificates()] == ["done"]
    listed = {c.name: c for c in certs.list_properties_of_certificates(include_pending=True)}
    assert set(listed) == {"done", "waiting"}
    assert listed["waiting"].enabled is False and listed["done"].enabled is True


def test_unknown_certificate_is_404_with_service_code(kv_clients):
    with pytest.raises(ResourceNotFoundError) as info:
        kv_clients.certificates.get_certificate("nothing-here")
    assert info.value.error.code == "CertificateNotFound"
