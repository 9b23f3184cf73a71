"""The name rules a security review added, in the engine: each hostile form is refused, and the legitimate
neighbour of each still signs (the corpus holds the hostile CSRs; this file the pairs)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from kvca_core import errors
from kvca_core.signing import IssuancePolicy, issue_leaf, parse_subject
from kvca_core.signing.names import MAX_SUBJECT_DER, normalize_dns_name

KEY = ec.generate_private_key(ec.SECP256R1())


def csr(subject: x509.Name, *dns: str) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return builder.sign(KEY, hashes.SHA256()).public_bytes(Encoding.DER)


def names(*attributes: tuple) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]) for oid, value in attributes])


@pytest.mark.parametrize("dns,signed", [
    ("*.corp.internal", False),  # secret.corp.internal is one label below: excluded
    ("*.secret.corp.internal", False),
    ("*.public.corp.internal", True),  # the excluded subtree is not below public.corp.internal
    ("api.corp.internal", True),
    ("secret.corp.internal", False),
])
async def test_a_wildcard_is_refused_when_an_excluded_subtree_lies_one_label_below_it(pkis, dns, signed):
    """Finding "a wildcard gets around an excluded subtree": *.corp.internal was signed by a CA
    excluding secret.corp.internal, and `openssl verify -verify_hostname secret.corp.internal` accepted it."""
    ca = pkis["ec"].ca("local", constrained="excluding")
    request = csr(x509.Name([]), dns)
    if signed:
        issued = await issue_leaf(request, ca=ca, policy=IssuancePolicy())
        assert issued.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.DNSName) == [dns]
    else:
        with pytest.raises(errors.PolicyViolation, match="excluded by the name constraints"):
            await issue_leaf(request, ca=ca, policy=IssuancePolicy())


@pytest.mark.parametrize("dns,signed", [
    ("*.co.uk", False), ("*.com.au", False), ("*.github.io", False), ("*.azurewebsites.net", False),
    ("*.corp.co.uk", True), ("*.kvca.test", True),
])
async def test_a_wildcard_over_a_public_suffix_is_refused_even_without_constraints(pkis, dns, signed):
    """Finding "strings that should not pass": *.co.uk was signed on a CA without constraints."""
    ca = pkis["ec"].ca("local")
    if signed:
        await issue_leaf(csr(x509.Name([]), dns), ca=ca, policy=IssuancePolicy())
    else:
        with pytest.raises(errors.PolicyViolation, match="public suffix"):
            await issue_leaf(csr(x509.Name([]), dns), ca=ca, policy=IssuancePolicy())


@pytest.mark.parametrize("name,valid", [
    ("xn--bcher-kva.example", True),  # bücher
    ("xn--zz.example", False),  # no Punycode
    ("xn--ls8h.example", False),  # an emoji: DISALLOWED in IDNA 2008 (RFC 5892)
    ("xn--a.example", False),  # decodes to U+0080, a control
    ("api.xn--zz.example", False),  # any label, not only the first
])
def test_an_xn_label_must_be_a_valid_idna_2008_a_label(name, valid):
    """Finding "strings that should not pass": invalid punycode labels were signed."""
    if valid:
        assert normalize_dns_name(name) == name
    else:
        with pytest.raises(errors.InvalidRequest, match="not a valid IDNA A-label"):
            normalize_dns_name(name)


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u200f", "\u200b", "\u200d", "\u2060", "\ufeff", "\u2028"])
async def test_bidi_and_zero_width_characters_in_subject_attributes_are_refused(pkis, char):
    """Finding "strings that should not pass": bidi or zero-width characters in subject attributes."""
    subject = names((NameOID.ORGANIZATION_NAME, f"kvca{char}tests"), (NameOID.COMMON_NAME, "api.kvca.test"))
    with pytest.raises(errors.InvalidRequest, match=f"U\\+{ord(char):04X}"):
        await issue_leaf(csr(subject, "api.kvca.test"), ca=pkis["ec"].ca("local"), policy=IssuancePolicy())
    with pytest.raises(errors.InvalidRequest, match=f"U\\+{ord(char):04X}"):
        parse_subject(f"CN=api.kvca.test, O=kvca{char}tests")  # Key Vault's spelling: the operations' precheck


async def test_a_subject_over_one_kib_of_der_is_refused_and_a_full_ordinary_one_signs(pkis):
    """Finding "strings that should not pass": a 42 KB subject was signed."""
    ca = pkis["ec"].ca("local")
    ordinary = names((NameOID.COUNTRY_NAME, "GB"), (NameOID.STATE_OR_PROVINCE_NAME, "S" * 128),
                     (NameOID.LOCALITY_NAME, "L" * 128), (NameOID.ORGANIZATION_NAME, "O" * 64),
                     (NameOID.ORGANIZATIONAL_UNIT_NAME, "U" * 64), (NameOID.COMMON_NAME, "api.kvca.test"))
    assert len(ordinary.public_bytes()) <= MAX_SUBJECT_DER
    await issue_leaf(csr(ordinary, "api.kvca.test"), ca=ca, policy=IssuancePolicy())
    huge = names(*[(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit {i:03d}") for i in range(120)],
                 (NameOID.COMMON_NAME, "api.kvca.test"))
    with pytest.raises(errors.InvalidRequest, match=f"bytes of DER \\(at most {MAX_SUBJECT_DER}\\)"):
        await issue_leaf(csr(huge, "api.kvca.test"), ca=ca, policy=IssuancePolicy())


@pytest.mark.parametrize("which", ["intermediate", "root"])
async def test_a_leaf_never_repeats_the_subject_of_a_ca_above_it(pkis, which):
    """Finding "strings that should not pass": a leaf whose subject equals its issuer's was signed."""
    pki = pkis["rsa"]
    ca = pki.ca("local")
    subject = (pki.intermediate if which == "intermediate" else pki.root).subject
    with pytest.raises(errors.PolicyViolation, match="repeats the subject of CA"):
        await issue_leaf(csr(subject, "api.kvca.test"), ca=ca, policy=IssuancePolicy())
