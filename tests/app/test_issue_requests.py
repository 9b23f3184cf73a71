"""What an issue request can ask for, and what consumers get: exportable keys, the chain with the
root (API Management, App Service), device identities (MQTT), URI and email SANs; refusals that
leave the vault unchanged; cancel; renew that means now; the batch form."""

from __future__ import annotations

import base64
import json

import pytest
from azure.keyvault.certificates import CertificatePolicy as SdkPolicy
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kvca_core.authority import parse_secret
from kvca_core import context, operations
from kvca_core.errors import Conflict, InvalidRequest, KvcaError, NotFound, NotManaged, PolicyViolation
from kvca_core.vocabulary import CA_TAG, CHAIN_TAG, URIS_TAG
from kvca_core.operations import IssueRequest

from apphelpers import (call_http, chain_from_vault, completed_versions, emulator_now, import_excluding_ca,
                        import_recipe_ca, openssl_verify, snapshot)

DEVICE_POLICY = {"cn_forms": ["dns-name", "ip-address", "device-id"], "allow_uri": True, "allow_email": True}


async def with_policy(monkeypatch, policy: dict):
    """The app's context with KVCA_ISSUANCE_POLICY set to `policy` for every CA (`{}`: the field
    defaults, written as a "*" entry, since an empty setting means no CA has a policy)."""
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", json.dumps({"*": policy}))
    await context.reset_shared()
    return await context.shared()


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


# ---------------------------------------------------------------- keys and chains

async def test_the_pfx_api_management_takes_has_the_key_and_leaf_intermediate_root_in_order(ctx):
    root = await import_recipe_ca(ctx.vault, "corp-ca")
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "apim", "ca": "corp-ca", "dns_names": ["api.corp.internal"], "key": "rsa-2048"})
    assert status == 201, body
    content_type, value = await ctx.vault.get_secret_value("apim")
    assert content_type == "application/x-pkcs12"
    pfx = pkcs12.load_pkcs12(base64.b64decode(value), None)
    assert isinstance(pfx.key, rsa.RSAPrivateKey) and pfx.key.key_size >= 2048  # exportable by default
    chain = [pfx.cert.certificate] + [c.certificate for c in pfx.additional_certs]
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=api.corp.internal", "CN=corp-ca Intermediate", "CN=corp-ca Root"]
    assert chain[-1] == root
    assert pfx.key.public_key().public_numbers() == chain[0].public_key().public_numbers()
    openssl_verify(chain, root)
    policy = await ctx.vault.get_policy("apim")
    assert policy.key.exportable and (await ctx.vault.get_certificate("apim")).tags[CHAIN_TAG] == "with-root"


async def test_a_non_exportable_key_is_kept_out_of_the_secret_and_a_client_chain_stops_below_the_root(ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    outcome = await operations.issue(ctx, IssueRequest(name="held", ca="corp-ca", dns_names=("held.corp.internal",),
                                                       profile="client", exportable=False))
    assert outcome.action == "issued"
    assert not (await ctx.vault.get_policy("held")).key.exportable
    content_type, value = await ctx.vault.get_secret_value("held")
    key, certs = parse_secret("certificate 'held'", content_type, value)
    assert key is None
    assert [c.subject.rfc4514_string() for c in certs] == ["CN=held.corp.internal", "CN=corp-ca Intermediate"]


async def test_renewal_keeps_exportability_the_chain_choice_and_the_uris(app, monkeypatch):
    ctx = await with_policy(monkeypatch, DEVICE_POLICY)
    root = await import_recipe_ca(ctx.vault, "corp-ca")
    request = IssueRequest(name="dev", ca="corp-ca", subject="CN=device-7", profile="client", exportable=False,
                           include_root=True, uris=("spiffe://fleet.corp.internal/device-7",))
    first = await operations.issue(ctx, request)
    app.clock.advance(days=1)
    second = await operations.renew(ctx, "dev", now=True)
    assert second.action == "renewed" and second.version != first.version
    for version in (first.version, second.version):
        chain = await chain_from_vault(ctx.vault, "dev", version)
        assert [c.subject.rfc4514_string() for c in chain] == [
            "CN=device-7", "CN=corp-ca Intermediate", "CN=corp-ca Root"]
        assert _sans(chain[0]) == [x509.UniformResourceIdentifier("spiffe://fleet.corp.internal/device-7")]
        openssl_verify(chain, root)
    current = await ctx.vault.get_certificate("dev")
    assert current.tags[URIS_TAG] == "spiffe://fleet.corp.internal/device-7"
    assert not (await ctx.vault.get_policy("dev")).key.exportable


async def test_the_portal_path_follows_the_certificates_own_policy(ctx, kv_aio_clients):
    """A "New Version"/create in the portal: the policy's exportable flag decides, and a
    certificate without kvca's chain tag gets its profile's default chain."""
    await import_recipe_ca(ctx.vault, "corp-ca")
    await kv_aio_clients.certificates.create_certificate("portal", SdkPolicy(
        issuer_name="Unknown", subject="CN=portal.corp.internal", san_dns_names=["portal.corp.internal"],
        validity_in_months=12, exportable=False, key_type="EC", key_curve_name="P-256",
        enhanced_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH.dotted_string]),
        tags={CA_TAG: "corp-ca"}, _polling_interval=0)
    assert (await operations.sign_pending(ctx, "portal")).action == "signed"
    _, value = await ctx.vault.get_secret_value("portal")
    assert pkcs12.load_pkcs12(base64.b64decode(value), None).key is None
    assert [c.subject.rfc4514_string() for c in await chain_from_vault(ctx.vault, "portal")] == [
        "CN=portal.corp.internal", "CN=corp-ca Intermediate", "CN=corp-ca Root"]


@pytest.mark.parametrize("field,value,fragment", [
    ("exportable", "yes", "field 'exportable' must be true or false"),
    ("include_root", 1, "field 'include_root' must be true or false"),
    ("uris", "spiffe://x.y/z", "field 'uris' must be a list of strings"),
    ("emails", [3], "field 'emails' must be a list of strings"),
])
async def test_http_issue_refuses_malformed_new_fields_naming_them(ctx, field, value, fragment):
    await import_recipe_ca(ctx.vault, "corp-ca")
    before = await snapshot(ctx.vault)
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "x", "ca": "corp-ca", "dns_names": ["x.corp.internal"], field: value})
    assert status == 400 and fragment in body["message"]
    assert await snapshot(ctx.vault) == before


# ---------------------------------------------------------------- device identities

async def test_a_device_id_certificate_is_issued_over_http_when_the_policy_allows_it(app, monkeypatch):
    ctx = await with_policy(monkeypatch, DEVICE_POLICY)
    root = await import_recipe_ca(ctx.vault, "corp-ca")
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body={
        "name": "device-001", "ca": "corp-ca", "subject": "CN=device-001", "profile": "client"})
    assert status == 201, body
    chain = await chain_from_vault(ctx.vault, "device-001")
    assert chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "device-001"
    assert _sans(chain[0]) == []
    assert list(chain[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    openssl_verify(chain, root)


async def test_a_device_id_cn_is_refused_by_default_and_nothing_is_left_pending(ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    before = await snapshot(ctx.vault)
    with pytest.raises(InvalidRequest, match="single label") as caught:
        await operations.issue(ctx, IssueRequest(name="device-001", ca="corp-ca", subject="CN=device-001",
                                                 profile="client"))
    assert "cn_forms" in str(caught.value)
    assert await snapshot(ctx.vault) == before


async def test_email_sans_reach_the_leaf_through_the_vaults_policy(app, monkeypatch):
    ctx = await with_policy(monkeypatch, DEVICE_POLICY)
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="mailer", ca="corp-ca", subject="CN=device-9", profile="client",
                                             emails=("device-9@fleet.corp.internal",)))
    assert (await ctx.vault.get_policy("mailer")).emails == ("device-9@fleet.corp.internal",)
    leaf = (await chain_from_vault(ctx.vault, "mailer"))[0]
    assert _sans(leaf) == [x509.RFC822Name("device-9@fleet.corp.internal")]


@pytest.mark.parametrize("fields,fragment", [
    ({"uris": ["spiffe://evil.example/d"]}, "host 'evil.example' is outside the allowed domains"),
    ({"emails": ["d@evil.example"]}, "host 'evil.example' is outside the allowed domains"),
    ({"uris": ["spiffe://fleet.corp.internal/" + "x" * 250]}, "which holds at most 256"),
])
async def test_uri_and_email_sans_outside_the_allowed_domains_are_refused_before_the_vault(
        app, monkeypatch, fields, fragment):
    ctx = await with_policy(monkeypatch, {**DEVICE_POLICY, "allowed_domains": ["corp.internal"]})
    await import_recipe_ca(ctx.vault, "corp-ca")
    before = await snapshot(ctx.vault)
    with pytest.raises(KvcaError, match=fragment):
        await operations.issue(ctx, IssueRequest(name="d", ca="corp-ca", subject="CN=device-1", profile="client",
                                                 **{k: tuple(v) for k, v in fields.items()}))
    assert await snapshot(ctx.vault) == before


# ---------------------------------------------------------------- the hostile corpus, before the vault

def _corpus_requests() -> list[tuple[str, dict]]:
    """The corpus CSRs whose hostile part an issue request can ask for too (names, profile),
    as request bodies: (case file, {"body", "policy", "ca", "kind"})."""
    from pathlib import Path

    from kvca_core.signing import parse_csr, profile_from_ekus, read_request

    corpus = Path(__file__).resolve().parent.parent / "corpus"
    labels = {NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATION_NAME: "O", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
              NameOID.LOCALITY_NAME: "L", NameOID.STATE_OR_PROVINCE_NAME: "S", NameOID.COUNTRY_NAME: "C",
              NameOID.DOMAIN_COMPONENT: "DC", NameOID.EMAIL_ADDRESS: "E"}
    cases = []
    for case in json.loads((corpus / "index.json").read_text())["cases"]:
        if case["step"] != "check-names":
            continue
        asked = read_request(parse_csr((corpus / case["file"]).read_bytes()))
        if asked.ip_addresses or asked.other_names or asked.asks_ca or asked.asks_cert_sign:
            continue  # an issue request cannot ask for these: no field holds them
        try:
            profile = profile_from_ekus(asked.ekus).value
        except KvcaError:
            continue
        rdns = []
        for rdn in reversed(asked.subject.rdns):
            rdns.append("+".join(f"{labels[a.oid]}=" + str(a.value).replace("\\", "\\\\").replace(",", "\\,")
                                 .replace("+", "\\+").replace('"', '\\"') for a in rdn))
        body = {"name": "hostile", "ca": "corp-ca", "profile": profile, "dns_names": list(asked.dns_names),
                "emails": list(asked.emails), "uris": list(asked.uris)}
        if rdns:
            body["subject"] = ", ".join(rdns)
        cases.append((case["file"].split("/")[-1], {"body": body, "policy": case.get("policy", {}),
                                                    "ca_kind": case.get("ca"),
                                                    "kind": case["kind"]}))
    return cases


CORPUS_REQUESTS = _corpus_requests()


def test_most_of_the_name_corpus_can_be_asked_for_in_an_issue_request():
    assert len(CORPUS_REQUESTS) >= 30


async def _corpus_ca(ctx, ca_kind: str | None) -> None:
    """The corpus case's CA as `corp-ca`: the recipe's; "constrained" (permits mycompany.local);
    "excluding" (permits corp.internal, excludes secret.corp.internal)."""
    from kvca_core.signing import IssuingCA, LocalSigner, create_intermediate, create_root

    if ca_kind == "excluding":
        await import_excluding_ca(ctx.vault, "corp-ca")
        return
    if ca_kind != "constrained":
        await import_recipe_ca(ctx.vault, "corp-ca")
        return
    now = emulator_now()
    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = await create_root("CN=corp-ca Root", LocalSigner(root_key), years=10, now=now)
    inter = await create_intermediate("CN=corp-ca Intermediate", inter_key.public_key(),
                                      IssuingCA(root, (), LocalSigner(root_key)), years=9, now=now,
                                      permitted_dns=["mycompany.local"])
    await import_recipe_ca(ctx.vault, "corp-ca", material=(root, root_key, inter, inter_key))


@pytest.mark.parametrize("case", [c for _, c in CORPUS_REQUESTS], ids=[f for f, _ in CORPUS_REQUESTS])
async def test_a_hostile_name_is_refused_by_issue_and_http_before_anything_is_created(app, monkeypatch, case):
    ctx = await with_policy(monkeypatch, case["policy"])
    await _corpus_ca(ctx, case["ca_kind"])
    before = await snapshot(ctx.vault)
    with pytest.raises(KvcaError) as caught:
        await operations.issue(ctx, IssueRequest.from_mapping(case["body"]))
    assert caught.value.kind == case["kind"], str(caught.value)
    assert await snapshot(ctx.vault) == before
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", body=case["body"])
    assert status in (400, 422) and body["error"] == case["kind"], body
    assert await snapshot(ctx.vault) == before


# ---------------------------------------------------------------- finishing a pending request

async def test_a_pending_request_with_another_key_is_not_completed_for_a_caller(ctx, kv_aio_clients):
    """Issue 13: a pre-created RSA-2048 exportable request was completed for a caller who asked
    for EC P-256."""
    await import_recipe_ca(ctx.vault, "corp-ca")
    await kv_aio_clients.certificates.create_certificate("api", SdkPolicy(
        issuer_name="Unknown", subject="CN=api.corp.internal", san_dns_names=["api.corp.internal"],
        validity_in_months=12, key_type="RSA", key_size=2048, exportable=True,
        enhanced_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH.dotted_string]),
        tags={CA_TAG: "corp-ca"}, _polling_interval=0)
    before = await snapshot(ctx.vault)
    with pytest.raises(Conflict, match="key RSA 2048") as caught:
        await operations.issue(ctx, IssueRequest(name="api", ca="corp-ca", dns_names=("api.corp.internal",),
                                                 key="ec-p256"))
    assert "cancel" in str(caught.value)
    assert await snapshot(ctx.vault) == before


@pytest.mark.parametrize("differs,fragment", [
    ({"exportable": False}, "an exportable key"),
    ({"profile": "server-client"}, "EKUs 1.3.6.1.5.5.7.3.1"),
    ({"key": "rsa-2048"}, "key EC P-256"),
    ({"content_type": "application/x-pem-file"}, "content type application/x-pkcs12"),
])
async def test_a_retried_issue_finishes_the_same_request_and_refuses_a_different_one(ctx, differs, fragment):
    await import_recipe_ca(ctx.vault, "corp-ca")
    fields = {"name": "api", "ca": "corp-ca", "dns_names": ["api.corp.internal"]}
    assert (await operations.issue(ctx, IssueRequest.from_mapping(fields), sign=False)).action == "requested"
    with pytest.raises(Conflict, match=fragment):
        await operations.issue(ctx, IssueRequest.from_mapping({**fields, **differs}))
    assert (await operations.issue(ctx, IssueRequest.from_mapping(fields))).action == "issued"


# ---------------------------------------------------------------- cancel

async def test_cancel_withdraws_a_pending_request_once_and_then_says_nothing_is_pending(ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    request = IssueRequest(name="later", ca="corp-ca", dns_names=("later.corp.internal",))
    await operations.issue(ctx, request, sign=False)
    status, body, _ = await call_http("kvca_cancel", "POST", "x", route_params={"name": "later"})
    assert status == 200 and body["action"] == "cancelled", body
    assert await ctx.vault.get_pending("later") is None
    # The request was the certificate's only version: Key Vault keeps it, disabled and never
    # completed (docs/keyvault-behaviour.md, "Pending versions"), so a second cancel finds the
    # name and says there is nothing to cancel.
    status, body, _ = await call_http("kvca_cancel", "POST", "x", route_params={"name": "later"})
    assert status == 200 and body["action"] == "skipped" and body["reason"].startswith("nothing to cancel: "), body
    # The name is free again: a new request for it is issued; with a completed version, a
    # cancel with nothing pending is a plain skip that says so.
    assert (await operations.issue(ctx, request)).action == "issued"
    for _ in range(2):
        again = await operations.cancel(ctx, "later")
        assert again.action == "skipped" and again.reason.startswith("nothing to cancel: ")
    await operations.renew(ctx, "later", now=True, force=True)
    assert (await completed_versions(ctx.vault, "later"))


async def test_cancel_refuses_what_kvca_does_not_manage_and_names_it_does_not_know(ctx, kv_aio_clients):
    await kv_aio_clients.certificates.create_certificate("theirs", SdkPolicy(
        issuer_name="Unknown", subject="CN=theirs.corp.internal", validity_in_months=12), _polling_interval=0)
    before = await snapshot(ctx.vault)
    with pytest.raises(NotManaged, match="no kvca-ca tag"):
        await operations.cancel(ctx, "theirs")
    status, body, _ = await call_http("kvca_cancel", "POST", "x", route_params={"name": "theirs"})
    assert status == 409 and body["error"] == "NotManaged"
    status, body, _ = await call_http("kvca_cancel", "POST", "x", route_params={"name": "ghost"})
    assert status == 404 and body["error"] == "NotFound"
    assert await snapshot(ctx.vault) == before


# ---------------------------------------------------------------- renew means now

async def _short_http_rate_limit(monkeypatch):
    """The app with the HTTP renewal rate limit at its lowest (1 minute): these tests are about
    the 5-minute "renewed moments ago" rule; the rate limit has its own in test_http_access.py."""
    monkeypatch.setenv("KVCA_FORCE_RENEW_MIN_AGE_MINUTES", "1")
    await context.reset_shared()
    return await context.shared()


async def test_renew_right_after_the_first_issuance_renews(ctx):
    """Nothing to repeat: the first issuance is no renewal, so `kvca renew` right after it does what it says."""
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="web", ca="corp-ca", dns_names=("web.corp.internal",)))
    assert (await operations.renew(ctx, "web", now=True)).action == "renewed"
    assert len(await completed_versions(ctx.vault, "web")) == 2


async def test_renew_right_after_a_renewal_is_a_conflict_unless_forced(app, monkeypatch):
    ctx = await _short_http_rate_limit(monkeypatch)
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="web", ca="corp-ca", dns_names=("web.corp.internal",)))
    app.clock.advance(minutes=1)
    assert (await operations.renew(ctx, "web", now=True)).action == "renewed"
    before = await snapshot(ctx.vault)
    with pytest.raises(Conflict, match="renewed [0-9]+ s ago"):
        await operations.renew(ctx, "web", now=True)
    app.clock.advance(minutes=1)  # the HTTP rate limit (1 minute here) is met; the 5-minute rule is not
    status, body, _ = await call_http("kvca_renew", "POST", "x", route_params={"name": "web"})
    assert status == 409 and body["error"] == "Conflict" and "--force" in body["message"], body
    assert await snapshot(ctx.vault) == before
    # force lifts that rule, not the rate limit
    status, body, _ = await call_http("kvca_renew", "POST", "x", route_params={"name": "web"}, body={"force": True})
    assert status == 200 and body["action"] == "renewed", body
    assert len(await completed_versions(ctx.vault, "web")) == 3


async def test_renew_if_due_is_a_plain_skip_and_renew_later_makes_a_version(app, monkeypatch):
    ctx = await _short_http_rate_limit(monkeypatch)
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="web", ca="corp-ca", dns_names=("web.corp.internal",)))
    status, body, _ = await call_http("kvca_renew", "POST", "x", route_params={"name": "web"}, body={"if_due": True})
    assert status == 200 and body["action"] == "skipped" and "not due" in body["reason"]
    app.clock.advance(minutes=10)
    status, body, _ = await call_http("kvca_renew", "POST", "x", route_params={"name": "web"})
    assert status == 200 and body["action"] == "renewed", body


# ---------------------------------------------------------------- batch

async def test_http_batch_is_refused_whole_when_its_ca_would_refuse_one_item(app, monkeypatch):
    """The CA's policy is checked for every item before the first is created: one item outside it
    refuses the batch (422, naming the item) and nothing is created."""
    ctx = await with_policy(monkeypatch, {"allowed_domains": ["corp.internal"]})
    await import_recipe_ca(ctx.vault, "corp-ca")
    before = await snapshot(ctx.vault)
    items = [{"name": f"svc-{i}", "ca": "corp-ca", "dns_names": [f"svc-{i}.corp.internal"]} for i in range(4)]
    items.insert(2, {"name": "outside", "ca": "corp-ca", "dns_names": ["svc.evil.example"]})
    status, body, _ = await call_http("kvca_issue_batch", "POST", "certificates/batch", body={"certificates": items})
    assert status == 422 and body["error"] == "PolicyViolation", body
    assert "certificates[2]" in body["message"] and "outside the allowed domains" in body["message"]
    assert await snapshot(ctx.vault) == before


async def test_http_batch_gives_one_outcome_per_item_in_order_and_resumes(app, monkeypatch):
    ctx = await with_policy(monkeypatch, {"allowed_domains": ["corp.internal"]})
    root = await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="taken", ca="corp-ca", dns_names=("other.corp.internal",)))
    items = [{"name": f"svc-{i}", "ca": "corp-ca", "dns_names": [f"svc-{i}.corp.internal"]} for i in range(4)]
    # A name another certificate holds fails at its turn, in the vault; the others go on.
    items.insert(2, {"name": "taken", "ca": "corp-ca", "dns_names": ["taken.corp.internal"]})
    status, body, _ = await call_http("kvca_issue_batch", "POST", "certificates/batch",
                                      body={"certificates": items})
    assert status == 207, body
    assert [(o["name"], o["action"]) for o in body["outcomes"]] == [
        ("svc-0", "issued"), ("svc-1", "issued"), ("taken", "failed"), ("svc-2", "issued"), ("svc-3", "issued")]
    assert "different request" in body["outcomes"][2]["reason"]
    openssl_verify(await chain_from_vault(ctx.vault, "svc-3"), root)
    before = await snapshot(ctx.vault)
    status, body, _ = await call_http("kvca_issue_batch", "POST", "certificates/batch",
                                      body={"certificates": [i for i in items if i["name"] != "taken"]})
    assert status == 200 and {o["action"] for o in body["outcomes"]} == {"skipped"}
    assert {o["reason"] for o in body["outcomes"]} == {operations.ALREADY_ISSUED}
    assert await snapshot(ctx.vault) == before


@pytest.mark.parametrize("payload,fragment", [
    ({"certificates": []}, "list of 1 to 100"),
    ({"certificates": [{"name": "a", "ca": "c", "dns_names": ["a.b.c"]}] * 101}, "list of 1 to 100"),
    ({"certificates": [{"name": "a", "ca": "c", "dns_names": ["a.b.example"]},
                       {"name": "b", "ca": "c", "dns_names": ["b.b.example"], "exportable": "no"}]},
     "certificates[1]: field 'exportable'"),
    # Key Vault names are case-insensitive: `a` and `A` would be one certificate.
    ({"certificates": [{"name": "a", "ca": "c", "dns_names": ["a.b.example"]},
                       {"name": "A", "ca": "c", "dns_names": ["a.b.example"]}]},
     "certificates[1]: field 'name': 'A' is already requested at certificates[0]"),
    ({"certificates": [{"name": "a", "ca": "c", "uris": ["spiffe://b.example/a"]}]},
     "certificates[0]: give a subject, or at least one DNS name or email"),
    ({"certificates": [{"name": "a", "ca": "c", "sign": False}]}, "'sign' is set once for the batch"),
    ({"items": []}, "unknown field(s) 'items'"),
    # A malformed name in a later item: the whole batch, not a half-run with one failed outcome.
    ({"certificates": [{"name": "a", "ca": "corp-ca", "dns_names": ["a.corp.internal"]},
                       {"name": "b", "ca": "corp-ca", "dns_names": ["b..corp.internal"]}]},
     "certificates[1]: field 'dns_names': DNS name 'b..corp.internal' has an empty label"),
    ({"certificates": [{"name": "a", "ca": "corp-ca", "dns_names": ["a.corp.internal"], "profile": "client",
                        "uris": ["spiffe://corp.internal:99999/a"]}]}, "certificates[0]: field 'uris'"),
])
async def test_a_malformed_batch_is_refused_whole_before_anything_is_created(ctx, payload, fragment):
    await import_recipe_ca(ctx.vault, "corp-ca")
    before = await snapshot(ctx.vault)
    status, body, _ = await call_http("kvca_issue_batch", "POST", "certificates/batch", body=payload)
    assert status == 400 and fragment in body["message"], body
    assert await snapshot(ctx.vault) == before


async def test_issue_many_keeps_going_past_a_failure_and_reports_progress(ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="held", ca="corp-ca", dns_names=("held.corp.internal",)))
    requests = [IssueRequest(name=f"dev-{i}", ca="corp-ca", dns_names=(f"dev-{i}.corp.internal",), profile="client")
                for i in range(5)] + [IssueRequest(name="held", ca="corp-ca", dns_names=("x.corp.internal",))]
    seen = []
    outcomes = await operations.issue_many(ctx, requests, progress=seen.append)
    assert [o.name for o in outcomes] == [r.name for r in requests]
    assert [o.action for o in outcomes] == ["issued"] * 5 + ["failed"]
    assert sorted(o.name for o in seen) == sorted(r.name for r in requests)


async def test_issue_many_refuses_every_request_before_creating_any_when_one_names_an_unknown_ca(ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    before = await snapshot(ctx.vault)
    requests = [IssueRequest(name=f"dev-{i}", ca="corp-ca", dns_names=(f"dev-{i}.corp.internal",)) for i in range(3)]
    with pytest.raises(NotFound, match="no-such-ca"):
        await operations.issue_many(ctx, [*requests, IssueRequest(name="bad", ca="no-such-ca",
                                                                 dns_names=("x.corp.internal",))])
    assert await snapshot(ctx.vault) == before


async def test_issue_many_skips_only_what_an_earlier_run_issued_for_the_same_request(ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    same = IssueRequest(name="dev", ca="corp-ca", dns_names=("dev.corp.internal",), profile="client")
    await operations.issue(ctx, same)
    other = IssueRequest(name="dev", ca="corp-ca", dns_names=("other.corp.internal",), profile="client")
    (again,) = await operations.issue_many(ctx, [same])
    (clash,) = await operations.issue_many(ctx, [other])
    assert (again.action, again.reason) == ("skipped", operations.ALREADY_ISSUED)
    assert clash.action == "failed" and "different request" in clash.reason and "dev.corp.internal" in clash.reason


async def test_a_pace_never_starts_more_than_its_limit_in_any_window():
    """On a fake clock: 45 starts at 20 per 10 s come in three bursts, 10 s apart."""
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    rate = operations.Pace(20, 10.0, monotonic=lambda: clock[0], sleep=sleep)
    starts = []
    for _ in range(45):
        await rate.wait()
        starts.append(clock[0])
    assert starts == [0.0] * 20 + [10.0] * 20 + [20.0] * 5
    assert all(sum(1 for t in starts if s <= t < s + 10.0) <= 20 for s in starts)
