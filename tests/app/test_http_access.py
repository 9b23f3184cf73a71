"""Authorization of the HTTP API: Entra ID callers (App Service authentication's principal header)
and function-key callers against KVCA_ACCESS_RULES, through the registered functions with real
func.HttpRequest objects, against the emulator."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging

import pytest

from kvca_core import context

from apphelpers import call_http, completed_versions, easy_auth_headers, import_recipe_ca

WEB_TEAM = "5b9c3c53-0a7e-4b4e-9a39-2f0a8d1c7e11"
ADMIN = "0e3f6a12-7c41-4d5b-8f6e-9a1b2c3d4e5f"
OUTSIDER = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"

RULES = {
    "roles": {
        "kvca.web": {"actions": ["issue", "renew", "sign", "inventory"], "cas": ["corp-ca"],
                     "dns_suffixes": ["web.corp.internal"]},
        "kvca.operator": {"actions": ["force_renew", "renew", "sign", "inventory"], "cas": ["*"],
                          "dns_suffixes": ["*"]},
        "kvca.revoker": {"actions": ["revoke"], "cas": ["corp-ca"], "dns_suffixes": ["web.corp.internal"]},
    },
    "callers": {ADMIN: {"actions": ["issue", "renew", "force_renew", "sign", "cancel", "inventory"],
                        "cas": ["*"], "dns_suffixes": ["*"]}},
}


@pytest.fixture
async def ruled(app, monkeypatch):
    """The app with rules, trusting Easy Auth, and two CAs: corp-ca and other-ca."""
    monkeypatch.setenv("KVCA_ACCESS_RULES", json.dumps(RULES))
    monkeypatch.setenv("KVCA_TRUST_EASY_AUTH", "true")
    await context.reset_shared()
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp-ca")
    await import_recipe_ca(ctx.vault, "other-ca")
    return ctx


def web():
    return easy_auth_headers(WEB_TEAM, "Web Team", ("kvca.web",))


def admin():
    return easy_auth_headers(ADMIN, "kvca-admin-automation", app_only=True)


async def issue(body, headers=None):
    return await call_http("kvca_issue", "POST", "certificates", body=body, headers=headers)


async def names_in_vault(ctx):
    return {v.name async for v in ctx.vault.list_certificates()}


async def test_a_function_key_caller_gets_nothing_when_rules_grant_function_keys_nothing(ruled):
    await issue({"name": "api", "ca": "corp-ca", "dns_names": ["api.web.corp.internal"]}, admin())
    for function, method, url, route, body in [
        ("kvca_issue", "POST", "certificates", {}, {"name": "x", "ca": "corp-ca", "dns_names": ["x.web.corp.internal"]}),
        ("kvca_renew", "POST", "certificates/api/renew", {"name": "api"}, {"force": True}),
        ("kvca_sign", "POST", "certificates/api/sign", {"name": "api"}, None),
        ("kvca_inventory", "GET", "certificates", {}, None),
    ]:
        status, answer, _ = await call_http(function, method, url, body=body, route_params=route)
        assert status == 403 and answer["error"] == "Forbidden", (function, answer)
        assert "no rule lets this caller" in answer["message"]
    assert "x" not in await names_in_vault(ruled)


async def test_a_role_may_issue_only_for_its_cas_and_name_suffixes(ruled):
    status, body, _ = await issue({"name": "shop", "ca": "corp-ca", "dns_names": ["shop.web.corp.internal"]}, web())
    assert status == 201, body
    refused = [
        ({"name": "r1", "ca": "other-ca", "dns_names": ["a.web.corp.internal"]}, "CA 'other-ca'"),
        ({"name": "r2", "ca": "corp-ca", "dns_names": ["login.bank.example"]}, "'login.bank.example'"),
        ({"name": "r3", "ca": "corp-ca", "dns_names": ["a.web.corp.internal", "db.corp.internal"]}, "db.corp.internal"),
        ({"name": "r4", "ca": "corp-ca", "dns_names": ["*.corp.internal"]}, "*.corp.internal"),
        ({"name": "r5", "ca": "corp-ca", "dns_names": ["a.web.corp.internal"], "subject": "CN=login.bank.example"},
         "login.bank.example"),
        ({"name": "r6", "ca": "corp-ca", "dns_names": ["evilweb.corp.internal"]}, "evilweb"),  # not a label boundary
    ]
    for body, named in refused:
        status, answer, _ = await issue(body, web())
        assert status == 403 and answer["error"] == "Forbidden", (body, answer)
        assert named in answer["message"], answer
    assert not {"r1", "r2", "r3", "r4", "r5", "r6"} & await names_in_vault(ruled)
    status, body, _ = await issue({"name": "wild", "ca": "corp-ca", "dns_names": ["*.web.corp.internal"]}, web())
    assert status == 201, body


async def test_the_principal_header_is_ignored_unless_easy_auth_is_trusted(ruled, monkeypatch, caplog):
    # Without App Service authentication a client can send any X-MS-CLIENT-PRINCIPAL it likes.
    monkeypatch.setenv("KVCA_TRUST_EASY_AUTH", "false")
    await context.reset_shared()
    caplog.set_level(logging.INFO)
    forged = easy_auth_headers(ADMIN, "kvca-admin-automation", app_only=True)
    status, body, _ = await issue({"name": "forged", "ca": "corp-ca", "dns_names": ["x.web.corp.internal"]}, forged)
    assert status == 403 and body["error"] == "Forbidden"
    assert "ignored an x-ms-client-principal header" in caplog.text
    status, body, _ = await call_http("kvca_health", "GET", "health", headers=forged)
    assert body["access"]["caller"]["kind"] == "function-key"
    assert any("KVCA_TRUST_EASY_AUTH is false" in w for w in body["access"]["warnings"])


@pytest.mark.parametrize("header", [
    "not base64 at all!",
    base64.b64encode(b"[" * 5000).decode(),
    base64.b64encode(json.dumps({"auth_typ": "google", "claims": []}).encode()).decode(),
    base64.b64encode(json.dumps({"auth_typ": "aad", "claims": [{"typ": "name", "val": "no oid"}]}).encode()).decode(),
], ids=["garbage", "deep", "other-idp", "no-oid"])
async def test_a_trusted_principal_header_that_cannot_be_read_is_refused(ruled, header):
    status, body, _ = await issue({"name": "x", "ca": "corp-ca", "dns_names": ["x.web.corp.internal"]},
                                  {"X-MS-CLIENT-PRINCIPAL": header})
    assert status == 403 and body["error"] == "Forbidden" and "X-MS-CLIENT-PRINCIPAL".lower() in body["message"]


async def test_force_renew_needs_its_own_action_and_the_certificate_in_scope(ruled):
    status, body, _ = await issue({"name": "shop", "ca": "corp-ca", "dns_names": ["shop.web.corp.internal"]}, web())
    assert status == 201
    status, body, _ = await issue({"name": "db", "ca": "corp-ca", "dns_names": ["db.corp.internal"]}, admin())
    assert status == 201
    # The web team may renew when due ({"if_due": true}) but not on demand (a plain POST or
    # force); and never a certificate outside its suffixes.
    status, body, _ = await call_http("kvca_renew", "POST", "x", body={"force": True}, route_params={"name": "shop"},
                                      headers=web())
    assert status == 403 and "force_renew" in body["message"]
    status, body, _ = await call_http("kvca_renew", "POST", "x", body=None, route_params={"name": "shop"},
                                      headers=web())
    assert status == 403 and "force_renew" in body["message"]
    status, body, _ = await call_http("kvca_renew", "POST", "x", body={"if_due": True}, route_params={"name": "db"},
                                      headers=web())
    assert status == 403 and "db.corp.internal" in body["message"]
    status, body, _ = await call_http("kvca_renew", "POST", "x", body={"if_due": True}, route_params={"name": "shop"},
                                      headers=web())
    assert status == 200 and body["action"] == "skipped"  # not due: allowed, and a no-op


async def test_a_forced_renewal_is_refused_while_the_current_version_is_young(app, ruled):
    # The review renewed one certificate 6 times in 36 emulated minutes; now a forced renewal waits
    # until the version is KVCA_FORCE_RENEW_MIN_AGE_MINUTES (60) old.
    status, body, _ = await issue({"name": "db", "ca": "corp-ca", "dns_names": ["db.corp.internal"]}, admin())
    assert status == 201
    operator = easy_auth_headers(OUTSIDER, "On-call", ("kvca.operator",))
    renewed = 0
    for _ in range(6):
        app.clock.advance(minutes=6)
        status, body, _ = await call_http("kvca_renew", "POST", "x", body={"force": True},
                                          route_params={"name": "db"}, headers=operator)
        if status == 200 and body["action"] == "renewed":
            renewed += 1
        else:
            assert status == 409 and "at least 60 minutes old" in body["message"], body
    assert renewed == 0
    app.clock.advance(minutes=30)
    status, body, _ = await call_http("kvca_renew", "POST", "x", body={"force": True},
                                      route_params={"name": "db"}, headers=operator)
    assert status == 200 and body["action"] == "renewed", body
    assert len(await completed_versions(ruled.vault, "db")) == 2


async def test_the_inventory_shows_a_caller_only_what_its_rules_cover(ruled):
    for name, ca, dns in [("shop", "corp-ca", "shop.web.corp.internal"), ("db", "corp-ca", "db.corp.internal"),
                          ("partner", "other-ca", "partner.web.corp.internal")]:
        status, body, _ = await issue({"name": name, "ca": ca, "dns_names": [dns]}, admin())
        assert status == 201, body
    status, body, _ = await call_http("kvca_inventory", "GET", "certificates", headers=web())
    assert status == 200 and [c["name"] for c in body["certificates"]] == ["shop"]
    status, body, _ = await call_http("kvca_inventory", "GET", "certificates", headers=admin())
    assert {c["name"] for c in body["certificates"]} == {"shop", "db", "partner"}


async def test_every_decision_is_logged_with_the_callers_object_id_and_name_and_no_token(ruled, caplog):
    caplog.set_level(logging.INFO)
    headers = {**web(), "X-MS-TOKEN-AAD-ACCESS-TOKEN": "eyJ0eXAiOiJKV1Qi.secret-token-body.sig"}
    await issue({"name": "shop", "ca": "corp-ca", "dns_names": ["shop.web.corp.internal"]}, headers)
    await issue({"name": "bank", "ca": "corp-ca", "dns_names": ["login.bank.example"]}, headers)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("kvca authz")]
    assert len(lines) == 2, lines
    assert all(f"oid={WEB_TEAM}" in line and "name='Web Team'" in line for line in lines)
    assert "decision=allowed rule=role:kvca.web" in lines[0] and "decision=refused" in lines[1]
    assert "secret-token-body" not in caplog.text


async def test_without_rules_every_caller_may_do_everything_and_health_warns(app):
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp-ca")
    status, body, _ = await issue({"name": "any", "ca": "corp-ca", "dns_names": ["any.corp.internal"]})
    assert status == 201
    status, body, _ = await call_http("kvca_health", "GET", "health")
    assert body["access"]["rules"]["configured"] is False
    assert any("KVCA_ACCESS_RULES is empty" in w for w in body["access"]["warnings"])


async def test_a_function_key_rule_grants_callers_without_an_identity_exactly_that(app, monkeypatch):
    rules = {"function_key": {"actions": ["inventory"], "cas": ["corp-ca"], "dns_suffixes": ["*"]}}
    monkeypatch.setenv("KVCA_ACCESS_RULES", json.dumps(rules))
    await context.reset_shared()
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp-ca")
    status, body, _ = await call_http("kvca_inventory", "GET", "certificates")
    assert status == 200
    status, body, _ = await issue({"name": "x", "ca": "corp-ca", "dns_names": ["x.corp.internal"]})
    assert status == 403
    status, body, _ = await call_http("kvca_health", "GET", "health")
    assert body["access"]["rules"] == {"configured": True, "roles": [], "callers": 0, "function_key": ["inventory"]}


async def test_revoking_needs_the_revoke_action(ruled):
    """A caller whose rules cover a certificate but not `revoke` cannot revoke it; one that may, can."""
    status, body, _ = await issue({"name": "shop", "ca": "corp-ca", "dns_names": ["shop.web.corp.internal"]}, web())
    assert status == 201, body
    status, body, _ = await call_http("kvca_revoke", "POST", "certificates/shop/revoke", body={"reason": "keyCompromise"},
                                      route_params={"name": "shop"}, headers=web())
    assert status == 403 and body["error"] == "Forbidden" and "revoke" in body["message"], body
    status, body, _ = await call_http("kvca_revoke", "POST", "certificates/shop/revoke", body={"reason": "keyCompromise"},
                                      route_params={"name": "shop"}, headers=admin())
    assert status == 403, body  # the admin's rule names no 'revoke' either
    revoker = easy_auth_headers(OUTSIDER, "Security Desk", ("kvca.revoker",))
    status, body, _ = await call_http("kvca_revoke", "POST", "certificates/shop/revoke", body={"reason": "keyCompromise"},
                                      route_params={"name": "shop"}, headers=revoker)
    assert status == 200, body
    current = await ruled.vault.get_certificate("shop")
    assert current.tags.get("kvca-revoked") == "keyCompromise" and not current.enabled


def _leaf(inter, inter_key, subject: str, sans: list) -> bytes:
    """A leaf of the intermediate named only by `subject` and `sans`, as a password-less PFX."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

    from apphelpers import emulator_now

    key = ec.generate_private_key(ec.SECP256R1())
    now = emulator_now()
    builder = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(subject))
               .issuer_name(inter.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=200))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    return pkcs12.serialize_key_and_certificates(b"leaf", key, builder.sign(inter_key, hashes.SHA256()),
                                                 [inter], NoEncryption())


async def test_a_suffix_rule_covers_only_certificates_whose_every_name_is_inside_it(app, monkeypatch):
    """A caller limited to example.com may force-renew, revoke and list a certificate only when every name
    it carries is inside: not one named by O=/OU= alone, nor one whose URI SAN (or kvca-uris tag, the
    names its next version carries) points elsewhere. The certificate inside is the control."""
    from cryptography import x509

    from apphelpers import recipe_ca_material
    from kvca_core.vocabulary import CA_TAG, URIS_TAG

    rules = {"roles": {"kvca.suffix": {"actions": ["force_renew", "renew", "revoke", "inventory"],
                                       "cas": ["corp-ca"], "dns_suffixes": ["example.com"]}}}
    monkeypatch.setenv("KVCA_ACCESS_RULES", json.dumps(rules))
    monkeypatch.setenv("KVCA_TRUST_EASY_AUTH", "true")
    monkeypatch.setenv("KVCA_FORCE_RENEW_MIN_AGE_MINUTES", "0")
    await context.reset_shared()
    ctx = await context.shared()
    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    _, _, inter, inter_key = material
    leaves = {
        "org-only": ("O=Example Corp,OU=example.com", [], {}),
        "mesh": ("O=Example Corp,OU=Mesh", [x509.UniformResourceIdentifier("spiffe://mesh.other.test/svc")], {}),
        "tagged-uri": ("CN=svc.example.com", [x509.DNSName("svc.example.com")],
                       {URIS_TAG: "spiffe://elsewhere.test/svc"}),
        "inside": ("CN=api.example.com", [x509.DNSName("api.example.com"),
                                          x509.UniformResourceIdentifier("https://api.example.com/id")], {}),
    }
    for name, (subject, sans, tags) in leaves.items():
        await ctx.vault.import_certificate(name, _leaf(inter, inter_key, subject, sans), tags={CA_TAG: "corp-ca", **tags})
    caller = easy_auth_headers(OUTSIDER, "Example team", ("kvca.suffix",))

    status, body, _ = await call_http("kvca_inventory", "GET", "certificates", headers=caller)
    assert status == 200 and [c["name"] for c in body["certificates"]] == ["inside"], body
    for name in ("org-only", "mesh", "tagged-uri"):
        before = await ctx.vault.get_certificate(name)
        status, body, _ = await call_http("kvca_renew", "POST", "x", body={"force": True}, route_params={"name": name},
                                          headers=caller)
        assert status == 403 and body["error"] == "Forbidden", (name, body)
        status, body, _ = await call_http("kvca_revoke", "POST", "x", body={"reason": "keyCompromise"},
                                          route_params={"name": name}, headers=caller)
        assert status == 403 and body["error"] == "Forbidden", (name, body)
        after = await ctx.vault.get_certificate(name)
        assert (after.version, after.enabled) == (before.version, True), name
    assert "names no host" in (await call_http("kvca_revoke", "POST", "x", body={"reason": "keyCompromise"},
                                               route_params={"name": "org-only"}, headers=caller))[1]["message"]
    status, body, _ = await call_http("kvca_revoke", "POST", "x", body={"reason": "keyCompromise"},
                                      route_params={"name": "inside"}, headers=caller)
    assert status == 200 and body["action"] == "revoked", body
