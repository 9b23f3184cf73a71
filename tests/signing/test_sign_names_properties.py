"""Property-based tests (hypothesis) of the name rules."""

from __future__ import annotations

import asyncio

import pytest
import validators
from cryptography import x509
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kvca_core import errors
from kvca_core.signing import IssuancePolicy, issue_leaf, normalize_dns_name, parse_subject
from kvca_core.signing.names import check_dns_name_policy, is_public_suffix, within_domain
from signing_helpers import make_csr

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# LDH labels: letters/digits at both ends, hyphens inside (RFC 1035 2.3.1, RFC 1123 2.1).
label = st.one_of(
    st.sampled_from(ALNUM),
    st.builds(lambda a, mid, b: a + mid + b, st.sampled_from(ALNUM), st.text(ALNUM + "-", max_size=20),
              st.sampled_from(ALNUM)))
tld = st.builds(lambda a, mid, b: a + mid + b, st.sampled_from(LETTERS), st.text(ALNUM + "-", max_size=8),
                st.sampled_from(LETTERS))
hostname = st.builds(lambda labels, top: ".".join([*labels, top]), st.lists(label, min_size=1, max_size=4), tld)
domain = st.builds(lambda labels, top: ".".join([*labels, top]), st.lists(label, min_size=1, max_size=2), tld)


@given(name=hostname)
def test_valid_host_names_are_accepted_lower_cased_and_pkilint_agrees(name):
    assume(len(name) <= 253)
    assert normalize_dns_name(name.upper()) == name
    assert validators.domain(name) is True  # pkilint's RFC 5280 dNSName check


@given(text=st.text(max_size=300))
def test_any_text_is_either_a_clean_name_or_an_invalid_request(text):
    try:
        name = normalize_dns_name(text)
    except errors.InvalidRequest as exc:
        assert exc.step == "check-names"
        return
    assert name == name.lower() and name.isascii() and len(name) <= 253
    assert "*" not in name[1:]
    if name.startswith("*.") and name.count(".") < 2:
        # '*.tld' passes syntax but never policy
        with pytest.raises(errors.PolicyViolation, match="whole top-level domain"):
            check_dns_name_policy(name, IssuancePolicy())
        return
    assert validators.domain(name[2:] if name.startswith("*.") else name) is True  # what pkilint checks


@given(host=hostname, allowed=domain)
def test_names_under_an_allowed_domain_pass_and_others_are_policy_violations(host, allowed):
    policy = IssuancePolicy(allowed_domains=(allowed,))
    inside = f"{host}.{allowed}"
    assume(len(inside) <= 253)
    check_dns_name_policy(normalize_dns_name(inside), policy)
    check_dns_name_policy(allowed, policy)
    if not within_domain(host, allowed):
        with pytest.raises(errors.PolicyViolation, match="outside the allowed domains"):
            check_dns_name_policy(host, policy)


@given(prefix=label, allowed=domain)
def test_a_suffix_without_a_dot_is_not_inside_a_domain(prefix, allowed):
    # "evilmycompany.local" is not under "mycompany.local"
    assert not within_domain(prefix + allowed, allowed)
    with pytest.raises(errors.PolicyViolation):
        check_dns_name_policy(prefix + allowed, IssuancePolicy(allowed_domains=(allowed,)))


@given(base=hostname, allow=st.booleans())
def test_a_leftmost_wildcard_follows_the_policy_switch(base, allow):
    assume(len(base) <= 250 and base.count(".") >= 1)
    name = normalize_dns_name("*." + base)
    # A wildcard over a public suffix ('*.a.mm': the list has '*.mm') is refused whatever the switch
    # says: its own test is in test_sign_hostile_names.py.
    assume(not is_public_suffix(name[2:]))
    policy = IssuancePolicy(allow_wildcards=allow)
    if allow:
        check_dns_name_policy(name, policy)
    else:
        with pytest.raises(errors.PolicyViolation, match="allow_wildcards is false"):
            check_dns_name_policy(name, policy)


@given(labels=st.lists(label, min_size=2, max_size=5), position=st.integers(min_value=0, max_value=4),
       partial=st.booleans())
def test_a_wildcard_anywhere_but_the_whole_leftmost_label_is_invalid(labels, position, partial):
    labels = [*labels, "test"]
    position = position % len(labels)
    assume(position > 0 or partial)
    labels[position] = ("x*" + labels[position]) if partial else "*"
    with pytest.raises(errors.InvalidRequest):
        normalize_dns_name(".".join(labels))


safe_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF,
                                           exclude_characters="".join(map(chr, range(0x7F, 0xA0))),
                                           exclude_categories=("Cf",)),  # invisible: refused
                     min_size=1, max_size=40).map(str.strip).filter(bool)


def _escape(value: str) -> str:
    for char in '\\,+";':
        value = value.replace(char, "\\" + char)
    return value


@given(cn=safe_value, org=safe_value)
def test_parse_subject_reads_back_any_escaped_value(cn, org):
    text = f"CN={_escape(cn)}, O={_escape(org)}"
    if max(len(cn.encode()), len(org.encode())) > 64:
        with pytest.raises(errors.InvalidRequest, match="bytes long"):
            parse_subject(text)
        return
    name = parse_subject(text)
    assert [(a.oid._name, a.value) for a in name] == [("organizationName", org), ("commonName", cn)]
    assert x509.Name.from_rfc4514_string(name.rfc4514_string()) == name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hosts=st.lists(hostname, min_size=1, max_size=6))
def test_issued_sans_are_exactly_the_requested_names_deduplicated(hosts, pkis, keys):
    allowed = "kvca.test"
    names = [f"{h}.{allowed}" for h in hosts]
    assume(all(len(n) <= 253 for n in names))
    csr = make_csr(keys.get("ec:leaf"), subject=None, dns=[n.upper() if i % 2 else n for i, n in enumerate(names)])
    issued = asyncio.run(issue_leaf(csr, ca=pkis["ec"].ca(), policy=IssuancePolicy(allowed_domains=(allowed,))))
    san = issued.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == list(dict.fromkeys(names))
