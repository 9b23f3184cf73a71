"""MQTT and mTLS client identities: device-ID CNs, URI and email SANs, the allowed domains and the
CA's uniformResourceIdentifier / rfc822Name name constraints (RFC 5280 4.2.1.10)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kvca_core import errors
from kvca_core.signing import IssuancePolicy, IssuingCA, LocalSigner, issue_leaf
from signing_helpers import make_csr

DEVICE_POLICY = IssuancePolicy(cn_forms=("dns-name", "ip-address", "device-id"), allow_uri=True, allow_email=True)


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


async def test_a_device_id_cn_is_issued_for_a_client_when_the_policy_allows_it(pkis, keys):
    csr = make_csr(keys.get("ec:device"), subject="CN=device-001", dns=())
    issued = await issue_leaf(csr, ca=pkis["ec"].ca(), policy=DEVICE_POLICY, profile="client")
    leaf = issued.leaf
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "device-001"
    assert _sans(leaf) == []  # a device ID is no DNS name: it is not copied into a SAN
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


async def test_a_device_id_cn_with_a_uri_san_keeps_both(pkis, keys):
    csr = make_csr(keys.get("ec:device"), subject="CN=device-002", dns=())
    issued = await issue_leaf(csr, ca=pkis["ec"].ca(), policy=DEVICE_POLICY, profile="client",
                              uris=["spiffe://fleet.kvca.test/device-002"])
    assert _sans(issued.leaf) == [x509.UniformResourceIdentifier("spiffe://fleet.kvca.test/device-002")]


@pytest.mark.parametrize("policy,profile,fragment", [
    (IssuancePolicy(), "client", "device-id"),  # the default refuses it, as before, with a hint
    (DEVICE_POLICY, "server", "single label"),  # a server needs a host name
    (DEVICE_POLICY, "server-client", "single label"),
])
async def test_a_device_id_cn_is_refused_by_default_and_for_servers(pkis, keys, policy, profile, fragment):
    csr = make_csr(keys.get("ec:device"), subject="CN=device-001", dns=())
    with pytest.raises(errors.InvalidRequest, match=fragment) as caught:
        await issue_leaf(csr, ca=pkis["ec"].ca(), policy=policy, profile=profile)
    assert caught.value.step == "check-names"


async def test_a_policy_without_dns_name_cns_refuses_a_host_name_cn(pkis, keys):
    policy = IssuancePolicy(cn_forms=("device-id",))
    with pytest.raises(errors.PolicyViolation, match="cn_forms: device-id"):
        await issue_leaf(make_csr(keys.get("ec:device")), ca=pkis["ec"].ca(), policy=policy)


def test_a_cn_form_kvca_does_not_know_is_a_configuration_error():
    with pytest.raises(errors.ConfigurationError, match="CN form 'serial'"):
        IssuancePolicy.from_mapping({"cn_forms": ["serial"]})


@pytest.mark.parametrize("uris,emails,fragment", [
    (["spiffe://evil.example/device-1"], [], "URI SAN 'spiffe://evil.example/device-1': host 'evil.example' is "
                                             "outside the allowed domains"),
    (["https://10.0.0.1/x"], [], "host '10.0.0.1' is outside the allowed domains"),
    ([], ["ops@evil.example"], "email SAN 'ops@evil.example': host 'evil.example' is outside"),
    ([], ["ops@*.corp.kvca.test"], "a wildcard is not a host"),
])
async def test_allowed_domains_apply_to_uri_hosts_and_email_domains(pkis, keys, uris, emails, fragment):
    policy = IssuancePolicy(allowed_domains=("corp.kvca.test",), allow_uri=True, allow_email=True)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d.corp.kvca.test")])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName("d.corp.kvca.test")] + [x509.RFC822Name(e) for e in emails]),
        critical=False)
    csr = builder.sign(keys.get("ec:device"), hashes.SHA256())
    with pytest.raises(errors.KvcaError, match=fragment.replace("*", r"\*")):
        await issue_leaf(csr, ca=pkis["ec"].ca(), policy=policy, profile="client", uris=uris)


async def test_uris_and_emails_inside_the_allowed_domains_are_issued(pkis, keys):
    policy = IssuancePolicy(allowed_domains=("corp.kvca.test",), allow_uri=True, allow_email=True)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d.corp.kvca.test")])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName("d.corp.kvca.test"), x509.RFC822Name("ops@corp.kvca.test")]),
        critical=False)
    issued = await issue_leaf(builder.sign(keys.get("ec:device"), hashes.SHA256()), ca=pkis["ec"].ca(),
                              policy=policy, profile="client", uris=["spiffe://fleet.corp.kvca.test/d"])
    assert set(_sans(issued.leaf)) == {x509.DNSName("d.corp.kvca.test"), x509.RFC822Name("ops@corp.kvca.test"),
                                       x509.UniformResourceIdentifier("spiffe://fleet.corp.kvca.test/d")}


def _ca_with_constraints(pki, permitted: list[x509.GeneralName]) -> IssuingCA:
    """An intermediate of `pki`'s root whose nameConstraints permit `permitted` only."""
    now = dt.datetime.now(dt.timezone.utc)
    key = pki.intermediate_key
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fleet CA")]))
            .issuer_name(pki.root.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True)
            .sign(pki.root_key, hashes.SHA256()))
    return IssuingCA(cert, (pki.root,), LocalSigner(key))


@pytest.mark.parametrize("uris,email,refused", [
    (["spiffe://fleet.kvca.test/d"], None, None),
    (["spiffe://elsewhere.example/d"], None, "URI 'spiffe://elsewhere.example/d' is outside the name constraints"),
    ([], "ops@fleet.kvca.test", None),
    ([], "ops@elsewhere.example", "email address 'ops@elsewhere.example' is outside the name constraints"),
])
async def test_the_cas_uri_and_rfc822_name_constraints_bind_client_sans(pkis, keys, uris, email, refused):
    ca = _ca_with_constraints(pkis["ec"], [x509.UniformResourceIdentifier("fleet.kvca.test"),
                                           x509.RFC822Name("fleet.kvca.test")])
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-9")]))
    if email:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    csr = builder.sign(keys.get("ec:device"), hashes.SHA256())
    if refused is None:
        issued = await issue_leaf(csr, ca=ca, policy=DEVICE_POLICY, profile="client", uris=uris)
        assert issued.leaf.issuer == ca.certificate.subject
    else:
        with pytest.raises(errors.PolicyViolation, match=refused):
            await issue_leaf(csr, ca=ca, policy=DEVICE_POLICY, profile="client", uris=uris)
