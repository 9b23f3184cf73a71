"""kvca_core.access and its settings, without the app: rules checked at start, one rule at a time."""

from __future__ import annotations

import json

import pytest

from kvca_core import access
from kvca_core.access import AccessRules, Caller
from kvca_core.errors import ConfigurationError, Forbidden
from kvca_core.operations import IssueRequest
from kvca_core.settings import Settings

from apphelpers import easy_auth_headers

VAULT = {"KVCA_VAULT_URL": "https://corp.vault.azure.net/"}
OID = "5b9c3c53-0a7e-4b4e-9a39-2f0a8d1c7e11"


def test_every_problem_of_the_access_rules_is_reported_at_start():
    rules = {"roles": {"r": {"actions": ["delete"], "cas": ["../x"], "dns_suffixes": ["*.x.com"]}},
             "callers": {"bob": {"actions": ["issue"], "cas": ["*"], "dns_suffixes": ["*"]}}, "admins": {}}
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**VAULT, "KVCA_ACCESS_RULES": json.dumps(rules)})
    text = str(caught.value)
    for fragment in ("unknown key(s) 'admins'", "unknown action(s) 'delete'", "'../x' is not a CA name",
                     "dns suffix '*.x.com'", "callers['bob']: a caller is named by its Entra object id"):
        assert fragment in text


def test_access_rules_nested_beyond_the_limit_are_a_reported_problem_not_a_crash():
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**VAULT, "KVCA_ACCESS_RULES": "[" * 30_000})
    assert "KVCA_ACCESS_RULES nests arrays or objects more than 32 levels deep" in str(caught.value)


def test_trusting_easy_auth_while_app_service_authentication_is_off_is_refused_at_start():
    env = {**VAULT, "KVCA_TRUST_EASY_AUTH": "true", "WEBSITE_SITE_NAME": "func-kvca"}
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    assert "App Service authentication is off" in str(caught.value)
    assert Settings.from_env({**env, "WEBSITE_AUTH_ENABLED": "True"}).trust_easy_auth is True


def test_a_ca_from_one_rule_and_a_suffix_from_another_never_combine():
    rules = AccessRules.parse({"roles": {
        "a": {"actions": ["issue"], "cas": ["corp-ca"], "dns_suffixes": ["web.corp.internal"]},
        "b": {"actions": ["issue"], "cas": ["other-ca"], "dns_suffixes": ["db.corp.internal"]}}})
    caller = Caller(access.ENTRA, OID, "both", ("a", "b"))
    mixed = IssueRequest(name="m", ca="corp-ca", dns_names=("x.db.corp.internal",))
    assert not access.decide_issue(caller, rules, mixed).allowed
    assert access.decide_issue(caller, rules, IssueRequest(name="m", ca="other-ca",
                                                           dns_names=("x.db.corp.internal",))).allowed


def test_the_principal_of_an_app_only_token_names_the_app_and_keeps_its_roles():
    header = easy_auth_headers(OID, "3f2a1b0c-app-id", ("kvca.operator", "kvca.web"), app_only=True)
    caller, note = access.caller_from_headers(header, trust_easy_auth=True)
    assert note == ""
    assert caller == Caller(access.ENTRA, OID, "3f2a1b0c-app-id", ("kvca.operator", "kvca.web"))


def test_an_oversized_principal_is_refused_before_decoding():
    with pytest.raises(Forbidden):
        access.parse_principal("A" * (access.MAX_PRINCIPAL_BYTES + 4))


def test_a_name_field_the_rules_do_not_know_makes_a_name_restricted_rule_refuse():
    # Fail closed: a field added to IssueRequest later (emails, URIs) carries names no suffix check saw.
    import dataclasses

    Wider = dataclasses.make_dataclass("Wider", [("emails", tuple, dataclasses.field(default=()))], bases=(IssueRequest,),
                                       frozen=True)
    rules = AccessRules.parse({"roles": {"a": {"actions": ["issue"], "cas": ["corp-ca"], "dns_suffixes": ["corp.internal"]},
                                         "all": {"actions": ["issue"], "cas": ["*"], "dns_suffixes": ["*"]}}})
    request = Wider(name="m", ca="corp-ca", dns_names=("a.corp.internal",), emails=("x@bank.example",))
    refused = access.decide_issue(Caller(access.ENTRA, OID, "n", ("a",)), rules, request)
    assert not refused.allowed and "emails" in refused.reason
    assert access.decide_issue(Caller(access.ENTRA, OID, "n", ("all",)), rules, request).allowed
    assert access.decide_issue(Caller(access.ENTRA, OID, "n", ("a",)), rules,
                               Wider(name="m", ca="corp-ca", dns_names=("a.corp.internal",))).allowed


def test_every_name_a_certificate_carries_counts_and_a_kind_no_rule_reads_needs_a_rule_for_every_name():
    """scope_names: subject CNs, each SAN kind, the kvca-uris/kvca-ips tags and the policy's names; an
    otherName (or directoryName) SAN is kept as a name only "*" covers."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ObjectIdentifier

    from kvca_core.model import CertificatePolicy

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string("CN=svc.example.com,O=Example")
    now = dt.datetime.now(dt.timezone.utc)

    def cert(*sans):
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(list(sans)), False).sign(key, hashes.SHA256()))

    plain = cert(x509.DNSName("a.example.com"), x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                 x509.RFC822Name("ops@example.com"), x509.UniformResourceIdentifier("spiffe://mesh.example.com/x"))
    assert access.scope_names(plain) == ["a.example.com", "10.0.0.1", "example.com", "mesh.example.com",
                                         "svc.example.com"]
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=next.example.com", dns_names=("next.example.com",), upns=("u@corp.test",))
    tagged = access.scope_names(plain, tags={"kvca-uris": "https://id.other.test/a", "kvca-ips": "10.0.0.2"},
                                policy=policy)
    assert {"id.other.test", "10.0.0.2", "next.example.com", "corp.test"} <= set(tagged)
    rules = AccessRules.parse({"roles": {"suffix": {"actions": ["revoke"], "cas": ["*"], "dns_suffixes": ["example.com"]},
                                         "all": {"actions": ["revoke"], "cas": ["*"], "dns_suffixes": ["*"]}}})
    limited, everything = Caller(access.ENTRA, OID, "n", ("suffix",)), Caller(access.ENTRA, OID, "n", ("all",))
    odd = cert(x509.DNSName("a.example.com"), x509.OtherName(ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x01u"))
    for names in (access.scope_names(odd), tagged):
        assert not access.decide_certificate(limited, rules, "revoke", ca="c", names=names).allowed, names
        assert access.decide_certificate(everything, rules, "revoke", ca="c", names=names).allowed
    assert access.decide_certificate(limited, rules, "revoke", ca="c", names=access.scope_names(plain)[2:]).allowed
