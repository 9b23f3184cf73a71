"""The names a security review once got signed, through every door of the app against the emulator:
`operations.issue`, the HTTP trigger, the sweep / Event Grid path (a portal-made request) and
the CLI. Each is refused and the vault is left exactly as it was.

The same cases as CSRs are in the hostile corpus (tests/corpus, make_corpus.py "names that once passed")."""

from __future__ import annotations

import pytest
from azure.keyvault.certificates import CertificatePolicy

from kvca_core import events, operations
from kvca_core.errors import KvcaError
from kvca_core.vocabulary import CA_TAG
from kvca_core.operations import IssueRequest

from apphelpers import call_http, deliver, import_excluding_ca, import_recipe_ca, snapshot

# (request fields, error kind, message fragment); each was once issued (or, for the
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
