"""Issuance policy, profiles, validity and what goes into a leaf."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from kvca_core import errors
from kvca_core.signing import (BACKDATE, IssuancePolicy, IssuanceUrls, IssuingCA, LocalSigner, Profile, add_months,
                               create_intermediate, create_root, issue_leaf, parse_csr, parse_subject, policy_for_ca,
                               profile_from_ekus)
from signing_helpers import assert_is_leaf, make_csr

UTC = dt.timezone.utc


# ---------------------------------------------------------------- policy loading

def test_default_policy_keeps_the_recipe_working_and_is_safe():
    policy = IssuancePolicy()
    assert (policy.allow_wildcards, policy.allow_ip, policy.allow_email, policy.allow_uri) == (True, False, False, False)
    assert policy.max_validity_days == 398
    assert policy.min_rsa_bits == 2048


def test_policy_from_json_normalises_domains():
    policy = IssuancePolicy.from_json(json.dumps({"allowed_domains": ["*.MyCompany.local", ".corp.example"],
                                                  "allow_wildcards": False, "max_sans": 5}))
    assert policy.allowed_domains == ("mycompany.local", "corp.example")
    assert not policy.allow_wildcards and policy.max_sans == 5


@pytest.mark.parametrize("data,fragment", [
    ({"allow_wildcard": False}, "unknown issuance policy field(s) 'allow_wildcard'"),
    ({"max_sans": 0}, "max_sans=0"),
    ({"max_validity_days": "398"}, "max_validity_days='398'"),
    ({"min_rsa_bits": 1024}, "below 2048"),
    ({"key_types": ["ec-p256k"]}, "'ec-p256k'"),
    ({"profiles": ["codesigning"]}, "'codesigning'"),
    ({"allowed_domains": "example.com"}, "must be a list of strings"),
    ({"allow_ip": "yes"}, "allow_ip='yes'"),
    ({"allowed_domains": ["my company.local"]}, "'my company.local' is not a DNS name"),
    ({"allowed_names": ["api..example.com"]}, "'api..example.com' is not a DNS name"),
    ({"max_validity_days": 10 ** 9}, "max_validity_days=1000000000 is more than 36525 days"),
    ({"default_validity_days": 10 ** 7}, "default_validity_days=10000000 is more than 36525 days"),
])
def test_malformed_policy_is_a_configuration_error_naming_the_field(data, fragment):
    with pytest.raises(errors.ConfigurationError) as caught:
        IssuancePolicy.from_mapping(data)
    assert fragment in str(caught.value) and "KVCA_ISSUANCE_POLICY" in str(caught.value)


def test_policy_from_json_refuses_bad_json():
    with pytest.raises(errors.ConfigurationError, match="not valid JSON"):
        IssuancePolicy.from_json("{allowed_domains: []}")


def test_policy_for_ca_reads_one_policy_or_a_map_per_ca():
    single = {"allowed_domains": ["a.example"]}
    assert policy_for_ca(single, "any-ca").allowed_domains == ("a.example",)
    per_ca = {"web-ca": {"allowed_domains": ["web.example"]}, "*": {"allow_wildcards": False}}
    assert policy_for_ca(per_ca, "web-ca").allowed_domains == ("web.example",)
    assert policy_for_ca(per_ca, "web-ca").allow_wildcards is True  # an entry stands alone
    assert policy_for_ca(per_ca, "other-ca").allow_wildcards is False
    assert policy_for_ca({"web-ca": {}}, "web-ca") == IssuancePolicy()  # configured: the field defaults
    with pytest.raises(errors.ConfigurationError, match=r"KVCA_ISSUANCE_POLICY\['web-ca'\]"):
        policy_for_ca({"web-ca": {"max_sans": -1}}, "web-ca")


@pytest.mark.parametrize("setting", [None, {}, {"web-ca": {}}, {"web-ca": {"allowed_domains": ["web.example"]}}])
def test_a_ca_without_a_configured_policy_is_refused_not_defaulted(setting):
    """Issue 13, finding "a leaf signed by the root": an unlisted CA got the permissive default
    policy. Now it is refused, and the message says how to configure one."""
    with pytest.raises(errors.PolicyViolation) as caught:
        policy_for_ca(setting, "corp-ca-root")
    text = str(caught.value)
    assert "CA 'corp-ca-root' has no issuance policy" in text
    assert 'KVCA_ISSUANCE_POLICY to {"corp-ca-root": {"allowed_domains"' in text and '"*" entry' in text


def test_a_stored_policy_comes_before_the_setting():
    """The lookup order a policy stored with the CA (a later issue) slots into."""
    stored = {"allowed_domains": ["stored.example"]}
    assert policy_for_ca({"*": {}}, "web-ca", stored=stored).allowed_domains == ("stored.example",)
    assert policy_for_ca(None, "web-ca", stored=stored).allowed_domains == ("stored.example",)


# ---------------------------------------------------------------- profiles

@pytest.mark.parametrize("ekus,profile", [
    (["1.3.6.1.5.5.7.3.1"], Profile.SERVER),
    (["1.3.6.1.5.5.7.3.2"], Profile.CLIENT),
    (["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"], Profile.SERVER_CLIENT),  # Key Vault's default policy
    (["clientAuth", "serverAuth"], Profile.SERVER_CLIENT),
    ([ExtendedKeyUsageOID.CLIENT_AUTH], Profile.CLIENT),
    ([], Profile.SERVER),
])
def test_profile_follows_the_requested_ekus(ekus, profile):
    assert profile_from_ekus(ekus) is profile


def test_profile_from_unknown_eku_is_refused():
    with pytest.raises(errors.PolicyViolation, match="anyExtendedKeyUsage"):
        profile_from_ekus(["2.5.29.37.0"])


async def test_profile_argument_wins_over_key_vault_ekus_and_csr_ekus(pkis, keys):
    key = keys.get("ec:leaf")
    csr = make_csr(key, ekus=[ExtendedKeyUsageOID.CLIENT_AUTH])
    assert (await issue_leaf(csr, ca=pkis["ec"].ca())).profile is Profile.CLIENT
    assert (await issue_leaf(csr, ca=pkis["ec"].ca(), requested_ekus=["1.3.6.1.5.5.7.3.1",
                                                                      "1.3.6.1.5.5.7.3.2"])).profile \
        is Profile.SERVER_CLIENT
    issued = await issue_leaf(csr, ca=pkis["ec"].ca(), profile="server", requested_ekus=["1.3.6.1.5.5.7.3.2"])
    assert issued.profile is Profile.SERVER
    assert_is_leaf(issued.leaf, issuer=pkis["ec"].intermediate, public_key=key.public_key(), profile=Profile.SERVER)


# ---------------------------------------------------------------- validity

async def test_validity_is_key_vault_months_from_now_with_notbefore_backdated(pkis, keys):
    now = dt.datetime(2027, 1, 31, 12, 0, 0, 500, tzinfo=UTC)
    # The test CA was made "now" (2026); give it room by signing from a fresh CA valid in 2027.
    issued = await issue_leaf(make_csr(keys.get("ec:leaf")), ca=pkis["ec"].ca(), validity_months=1, now=now)
    assert issued.leaf.not_valid_before_utc == dt.datetime(2027, 1, 31, 11, 55, tzinfo=UTC)
    assert issued.leaf.not_valid_after_utc == dt.datetime(2027, 2, 28, 12, 0, tzinfo=UTC)  # month-end clamp
    assert BACKDATE == dt.timedelta(minutes=5)


def test_add_months_counts_calendar_months():
    assert add_months(dt.datetime(2024, 1, 31, tzinfo=UTC), 1) == dt.datetime(2024, 2, 29, tzinfo=UTC)
    assert add_months(dt.datetime(2024, 11, 15, tzinfo=UTC), 14) == dt.datetime(2026, 1, 15, tzinfo=UTC)


async def test_validity_beyond_the_policy_maximum_is_capped_with_a_warning(pkis, keys):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    issued = await issue_leaf(make_csr(keys.get("ec:leaf")), ca=pkis["ec"].ca(), validity_months=24, now=now)
    lifetime = issued.leaf.not_valid_after_utc - issued.leaf.not_valid_before_utc
    assert lifetime == dt.timedelta(days=398) - dt.timedelta(seconds=1)
    assert any("policy's maximum of 398 days" in w for w in issued.warnings)


async def test_validity_is_capped_at_the_cas_notafter_with_a_warning(pkis, keys):
    pki = pkis["ec"]
    now = pki.intermediate.not_valid_after_utc - dt.timedelta(days=30)
    issued = await issue_leaf(make_csr(keys.get("ec:leaf")), ca=pki.ca(), validity_months=12, now=now)
    assert issued.leaf.not_valid_after_utc == pki.intermediate.not_valid_after_utc
    assert issued.warnings == (f"validity capped at the CA's notAfter "
                               f"({pki.intermediate.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z)",)


async def test_an_expired_ca_refuses_to_issue(pkis, keys):
    pki = pkis["ec"]
    with pytest.raises(errors.PolicyViolation) as caught:
        await issue_leaf(make_csr(keys.get("ec:leaf")), ca=pki.ca(),
                         now=pki.intermediate.not_valid_after_utc + dt.timedelta(seconds=1))
    assert caught.value.step == "decide-validity" and "expired" in str(caught.value)


@pytest.mark.parametrize("months", [0, -1, 1201, "12", True])
async def test_nonsense_validity_is_refused(months, pkis, keys):
    with pytest.raises(errors.InvalidRequest) as caught:
        await issue_leaf(make_csr(keys.get("ec:leaf")), ca=pkis["ec"].ca(), validity_months=months)
    assert caught.value.step == "decide-validity"


async def test_default_validity_comes_from_the_policy(pkis, keys):
    issued = await issue_leaf(make_csr(keys.get("ec:leaf")), ca=pkis["ec"].ca(),
                              policy=IssuancePolicy(default_validity_days=90))
    assert issued.leaf.not_valid_after_utc - issued.leaf.not_valid_before_utc == dt.timedelta(days=90) + BACKDATE


async def test_serials_are_random_and_long(pkis, keys):
    csr = make_csr(keys.get("ec:leaf"))
    serials = {(await issue_leaf(csr, ca=pkis["ec"].ca())).serial for _ in range(20)}
    assert len(serials) == 20
    assert all(1 << 64 <= s < 1 << 159 for s in serials)


# ---------------------------------------------------------------- what goes in

async def test_leaf_is_built_from_policy_not_from_the_csrs_extensions(pkis, keys):
    key = keys.get("rsa:leaf")
    hostile_extras = [
        (x509.TLSFeature([x509.TLSFeatureType.status_request]), False),
        (x509.CRLDistributionPoints([x509.DistributionPoint([x509.UniformResourceIdentifier("http://evil/crl")],
                                                            None, None, None)]), False),
        (x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True, data_encipherment=True,
                       key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False,
                       decipher_only=False), True),
        (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True),
    ]
    issued = await issue_leaf(make_csr(key, extensions=hostile_extras), ca=pkis["ec"].ca("remote"))
    assert_is_leaf(issued.leaf, issuer=pkis["ec"].intermediate, public_key=key.public_key())


async def test_crl_and_aia_urls_come_from_configuration(pkis, keys):
    key = keys.get("ec:leaf")
    issued = await issue_leaf(make_csr(key), ca=pkis["ec"].ca(),
                              urls=IssuanceUrls(crl="http://pki.kvca.test/int.crl", aia="http://pki.kvca.test/int.cer"))
    assert_is_leaf(issued.leaf, issuer=pkis["ec"].intermediate, public_key=key.public_key(),
                   crl="http://pki.kvca.test/int.crl", aia="http://pki.kvca.test/int.cer")


async def test_subject_keeps_only_allowed_attributes_in_order(pkis, keys):
    issued = await issue_leaf(make_csr(keys.get("ec:leaf"), subject="CN=api.kvca.test, OU=Ops, O=Contoso, L=Redmond, "
                                                                    "S=WA, C=US"), ca=pkis["ec"].ca())
    assert issued.leaf.subject.rfc4514_string() == "CN=api.kvca.test,OU=Ops,O=Contoso,L=Redmond,ST=WA,C=US"


async def test_empty_subject_makes_the_san_critical(pkis, keys):
    key = keys.get("ec:leaf")
    issued = await issue_leaf(make_csr(key, subject=None), ca=pkis["ec"].ca())
    assert len(issued.leaf.subject) == 0
    assert issued.leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).critical
    assert_is_leaf(issued.leaf, issuer=pkis["ec"].intermediate, public_key=key.public_key())


async def test_cn_without_sans_becomes_the_dns_san(pkis, keys):
    key = keys.get("ec:leaf")
    issued = await issue_leaf(make_csr(key, subject="CN=Device-7.Clients.kvca.test", dns=()), ca=pkis["ec"].ca(),
                              profile="client")
    assert_is_leaf(issued.leaf, issuer=pkis["ec"].intermediate, public_key=key.public_key(), profile=Profile.CLIENT,
                   dns=("device-7.clients.kvca.test",))
    assert issued.leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Device-7.Clients.kvca.test"


async def test_cn_that_is_no_host_name_and_no_sans_is_refused(pkis, keys):
    with pytest.raises(errors.InvalidRequest, match="is not a DNS name or IP address"):
        await issue_leaf(make_csr(keys.get("ec:leaf"), subject="CN=Device 7", dns=()), ca=pkis["ec"].ca())


async def test_ip_sans_when_the_policy_allows_them(pkis, keys):
    issued = await issue_leaf(make_csr(keys.get("ec:leaf"), subject="CN=10.0.0.7", dns=("api.kvca.test",),
                                       ips=("10.0.0.7", "::1")), ca=pkis["ec"].ca(), policy=IssuancePolicy(allow_ip=True))
    san = issued.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7", "::1"]


async def test_duplicate_and_upper_case_sans_are_written_once_in_lower_case(pkis, keys):
    issued = await issue_leaf(make_csr(keys.get("ec:leaf"), subject="CN=API.kvca.test",
                                       dns=("API.kvca.test", "api.kvca.test", "www.kvca.test")), ca=pkis["ec"].ca())
    san = issued.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.kvca.test", "www.kvca.test"]


async def test_uris_that_differ_only_in_path_case_are_both_issued(pkis, keys):
    from cryptography.hazmat.primitives import hashes
    uris = ["https://api.kvca.test/A", "https://api.kvca.test/a"]
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.kvca.test")] +
                                                      [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
           .sign(keys.get("ec:leaf"), hashes.SHA256()))
    issued = await issue_leaf(csr, ca=pkis["ec"].ca(), policy=IssuancePolicy(allow_uri=True))
    san = issued.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == uris


async def test_ca_name_constraints_apply_even_when_the_policy_allows_everything(pkis, keys):
    with pytest.raises(errors.PolicyViolation) as caught:
        await issue_leaf(make_csr(keys.get("ec:leaf"), subject="CN=db.mycompany.local.evil.test",
                                  dns=("db.mycompany.local.evil.test",)),
                         ca=pkis["rsa"].ca(constrained=True), policy=IssuancePolicy())
    assert caught.value.step == "check-names"
    assert "outside the name constraints of CA 'CN=kvca Constrained CA,O=kvca tests' (permitted: mycompany.local)" \
        in str(caught.value)


async def test_csr_in_every_spelling_key_vault_and_files_use(pkis, keys):
    import base64
    der = make_csr(keys.get("ec:leaf"))
    pem = parse_csr(der).public_bytes(__import__("cryptography.hazmat.primitives.serialization",
                                                 fromlist=["Encoding"]).Encoding.PEM)
    for spelling in (der, pem, pem.decode(), base64.b64encode(der), base64.b64encode(der).decode() + "\n",
                     parse_csr(der), bytearray(der)):
        issued = await issue_leaf(spelling, ca=pkis["ec"].ca())
        assert issued.leaf.public_key() == keys.get("ec:leaf").public_key()


# ---------------------------------------------------------------- CA certificates

async def test_create_root_and_intermediate_refuse_bad_input(keys):
    signer = LocalSigner(keys.get("ec:root"))
    with pytest.raises(errors.InvalidRequest):
        await create_root("", signer, years=10)
    with pytest.raises(errors.InvalidRequest):
        await create_root("CN=Root", signer, years=0)
    root = await create_root("CN=Root", signer, years=1)
    root_ca = IssuingCA(root, (), signer)
    with pytest.raises(errors.PolicyViolation, match="1024 bits"):
        from cryptography.hazmat.primitives.asymmetric import rsa
        await create_intermediate("CN=Int", rsa.generate_private_key(65537, 1024).public_key(), root_ca, years=1)
    with pytest.raises(errors.InvalidRequest, match="partial wildcard|only be the leftmost"):
        await create_intermediate("CN=Int", keys.get("ec:intermediate").public_key(), root_ca, years=1,
                                  permitted_dns=["a.*.example"])
    with pytest.raises(errors.InvalidRequest, match="must be a list of names"):
        await create_intermediate("CN=Int", keys.get("ec:intermediate").public_key(), root_ca, years=1,
                                  permitted_dns="kvca.test")
    # longer than the root: capped at the root's notAfter
    intermediate = await create_intermediate("CN=Int", keys.get("ec:intermediate").public_key(), root_ca, years=5)
    assert intermediate.not_valid_after_utc == root.not_valid_after_utc
    # pathLen 0 below: the intermediate cannot make another CA
    with pytest.raises(errors.PolicyViolation, match="pathLen 0"):
        await create_intermediate("CN=Sub", keys.get("ec:leaf").public_key(),
                                  IssuingCA(intermediate, (root,), LocalSigner(keys.get("ec:intermediate"))), years=1)


def test_parse_subject_reads_key_vaults_spelling():
    name = parse_subject('CN=api.kvca.test, O="Contoso, Ltd", OU=Ops\\, Team, S=WA, C=us')
    assert name.rfc4514_string() == "CN=api.kvca.test,O=Contoso\\, Ltd,OU=Ops\\, Team,ST=WA,C=US"
    assert [a.oid for a in name][0] == NameOID.COUNTRY_NAME  # encoded most general first
    assert parse_subject("CN=a;O=b") == parse_subject("CN=a, O=b")


@pytest.mark.parametrize("text,fragment", [("", "empty"), ("CN", "not NAME=value"), ("XX=1", "'XX'"),
                                           ("CN=a+O=b", "multi-valued"), ("C=USA", "two-letter"),
                                           ("CN=" + "a" * 65, "at most 64"), ('CN="open', "unfinished"),
                                           ("CN=a,,O=b", "empty attribute"), ("CN=", "CN is empty"),
                                           # cryptography writes these as IA5String / PrintableString as given
                                           ("CN=a, DC=\u00e9", "DC is not ASCII"),
                                           ("CN=a, SERIALNUMBER=a_b", "outside PrintableString"),
                                           ("CN=a, DC=0", "DC components '0' do not form a DNS name")])
def test_parse_subject_refuses_malformed_subjects(text, fragment):
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_subject(text)
    assert fragment in str(caught.value)


async def test_errors_name_the_certificate_the_step_and_the_rule(pkis, keys):
    # The engine names the step; the caller says which certificate the errors are about.
    with pytest.raises(errors.PolicyViolation) as caught, errors.about("certificate 'api-internal'"):
        await issue_leaf(make_csr(keys.get("ec:leaf"), subject=None, dns=("api.example.com",)), ca=pkis["ec"].ca(),
                         policy=IssuancePolicy(allowed_domains=("mycompany.local",)))
    assert str(caught.value) == ("certificate 'api-internal': check-names: DNS name 'api.example.com' is outside "
                                 "the allowed domains (*.mycompany.local)")
    assert caught.value.to_dict() == {"error": "PolicyViolation", "message": str(caught.value), "step": "check-names"}


async def test_a_key_vault_shaped_csr_gets_the_key_usage_of_its_key_type(pkis, keys):
    # Key Vault's default policy asks for digitalSignature + keyEncipherment and both EKUs,
    # whatever the key type; an EC leaf still gets digitalSignature only.
    key = keys.get("ec:leaf")
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    csr = make_csr(key, subject="CN=portal.kvca.test", dns=("portal.kvca.test",),
                   ekus=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                   extensions=[(usage, False)])
    issued = await issue_leaf(csr, ca=pkis["rsa"].ca("remote"), validity_months=12)
    assert_is_leaf(issued.leaf, issuer=pkis["rsa"].intermediate, public_key=key.public_key(),
                   profile=Profile.SERVER_CLIENT, dns=("portal.kvca.test",))


@pytest.mark.parametrize("bits,exponent,fragment", [(8200, 65537, "8200 bits is too large"),
                                                    (2048, 17, "exponent 17 is not allowed"),
                                                    (3072, 65537, None)])
def test_check_key_bounds_rsa_size_and_exponent(bits, exponent, fragment):
    import secrets

    from cryptography.hazmat.primitives.asymmetric import rsa

    from kvca_core.signing import check_key
    modulus = secrets.randbits(bits) | (1 << (bits - 1)) | 1  # only its size matters here
    public_key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    if fragment is None:
        assert check_key(public_key, IssuancePolicy()) == "rsa"
        with pytest.raises(errors.PolicyViolation, match="3072 bits is too small"):
            check_key(public_key, IssuancePolicy(min_rsa_bits=4096))
    else:
        with pytest.raises(errors.PolicyViolation, match=fragment):
            check_key(public_key, IssuancePolicy())
