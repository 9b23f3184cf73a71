"""The names issue 13's review got signed, through every door of the app against the emulator:
`operations.issue`, the HTTP trigger, the sweep / Event Grid path (a portal-made request) and
the CLI. Each is refused and the vault is left exactly as it was.

The same cases as CSRs are in the hostile corpus (tests/corpus, make_corpus.py "issue 13")."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.keyvault.certificates import CertificatePolicy
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12
from cryptography.x509.oid import NameOID

from kvca_core import clock, events, operations
from kvca_core.errors import KvcaError
from kvca_core.model import CA_ROLE_TAG, CA_TAG
from kvca_core.operations import IssueRequest

from apphelpers import call_http, deliver, import_recipe_ca
from test_refusals import snapshot

# (request fields, error kind, message fragment); each was issued before issue 13 (or, for the
# issuer's subject, refused for another reason).
HOSTILE = {
    "wildcard-over-excluded-subtree": ({"ca": "excl-ca", "dns_names": ["*.corp.internal"]},
                                       "PolicyViolation", "excluded by the name constraints"),
    "wildcard-public-suffix": ({"dns_names": ["*.co.uk"]}, "PolicyViolation", "public suffix 'co.uk'"),
    "idna-not-punycode": ({"dns_names": ["xn--zz.corp.internal"]}, "InvalidRequest",
                          "not a valid IDNA A-label"),
    "idna-forbidden-code-point": ({"dns_names": ["xn--ls8h.corp.internal"]}, "InvalidRequest",
                                  "not a valid IDNA A-label"),
    "bidi-override-in-subject": ({"dns_names": ["api.corp.internal"], "subject": "CN=api.corp.internal, "
                                  "O=kvca \u202egnp.exe"}, "InvalidRequest", "invisible character U+202E"),
    "zero-width-in-subject": ({"dns_names": ["api.corp.internal"], "subject": "CN=api.corp.internal, "
                               "OU=Pay\u200bments"}, "InvalidRequest", "invisible character U+200B"),
    "subject-repeats-issuer": ({"dns_names": ["api.corp.internal"], "subject": "CN=corp-ca Intermediate"},
                               "PolicyViolation", "repeats the subject of CA"),
}


async def import_excluding_ca(vault, name: str) -> None:
    """An intermediate made elsewhere whose name constraints permit corp.internal and exclude
    secret.corp.internal (the review's setup), imported with its root the recipe's way."""
    now = clock.now()
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def build(subject: str, public_key, issuer: x509.Name, constraints: x509.NameConstraints | None):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer).public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=700))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None if constraints is None else 0),
                                  critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
        if constraints is not None:
            builder = builder.add_extension(constraints, critical=True)
        return builder.sign(root_key, hashes.SHA256())

    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root")])
    root = build(f"{name} Root", root_key.public_key(), root_name, None)
    inter = build(f"{name} Intermediate", key.public_key(), root_name, x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("corp.internal")], excluded_subtrees=[x509.DNSName("secret.corp.internal")]))
    await vault.import_certificate(f"{name}-root", pkcs12.serialize_key_and_certificates(
        b"root", root_key, root, None, NoEncryption()))
    await vault.import_certificate(name, pkcs12.serialize_key_and_certificates(
        b"intermediate", key, inter, None, NoEncryption()), tags={CA_ROLE_TAG: "intermediate"})


@pytest.fixture
async def cas(ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    await import_excluding_ca(ctx.vault, "excl-ca")
    return ctx


def _request(case: str) -> dict:
    fields, _, _ = HOSTILE[case]
    return {"name": "hostile", "ca": "corp-ca", **fields}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_names_are_refused_by_operations_issue_leaving_the_vault_unchanged(cas, case):
    """Issue 13, findings "a wildcard gets around an excluded subtree" and "strings that should not
    pass" (invalid punycode, bidi / zero-width characters, *.co.uk, the issuer's subject)."""
    ctx = cas
    _, kind, fragment = HOSTILE[case]
    body = _request(case)
    before = await snapshot(ctx.vault)
    with pytest.raises(KvcaError) as caught:
        await operations.issue(ctx, IssueRequest(**body))
    assert caught.value.kind == kind and fragment in str(caught.value), str(caught.value)
    assert await snapshot(ctx.vault) == before


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_names_are_refused_by_the_http_trigger_leaving_the_vault_unchanged(cas, case):
    """The same findings through POST /api/certificates: a 4xx naming the rule, nothing created."""
    ctx = cas
    _, kind, fragment = HOSTILE[case]
    before = await snapshot(ctx.vault)
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body=_request(case))
    assert status == {"InvalidRequest": 400, "PolicyViolation": 422}[kind], body
    assert body["error"] == kind and fragment in body["message"]
    assert await snapshot(ctx.vault) == before


@pytest.mark.parametrize("dns,ca,fragment", [
    ("*.corp.internal", "excl-ca", "excluded by the name constraints"),
    ("*.co.uk", "corp-ca", "public suffix 'co.uk'"),
    ("xn--zz.corp.internal", "corp-ca", "not a valid IDNA A-label"),
])
async def test_a_portal_made_request_with_a_hostile_name_stays_pending_through_event_and_sweep(
        app, cas, kv_aio_clients, dns, ca, fragment):
    """The Event Grid trigger and the sweep sign portal-made requests: the same names are refused
    there, and the request stays pending, unmerged."""
    ctx = cas
    await kv_aio_clients.certificates.create_certificate("portal", CertificatePolicy(
        issuer_name="Unknown", subject=f"CN={dns}", san_dns_names=[dns], validity_in_months=12), tags={CA_TAG: ca}, _polling_interval=0)
    before = await snapshot(ctx.vault)
    await deliver(events.pending_request_event(vault_name=app.vault_name, vault_url=app.url, name="portal"))
    summary = await operations.sweep(ctx)
    assert summary.signed == 0 and summary.failed == 1 and fragment in summary.failures[0][1], summary.failures
    assert await snapshot(ctx.vault) == before
