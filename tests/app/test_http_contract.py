"""The HTTP API's side of the JSON contract: every route answers a document of
schemas/kvca-v1.schema.json, and where the CLI returns the same data it prints the same document."""

from __future__ import annotations

import asyncio
import json

from kvca_core.cli import main

from apphelpers import call_http
from contract import check


async def kvca_json(capsys, *argv: str) -> tuple[int, dict]:
    """`kvca --json ARGS` in-process, as a user runs it (its own event loop, in a thread)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["--json", *argv])
    return code, check(json.loads(capsys.readouterr().out))


async def http(function: str, method: str, url: str, status: int, **kwargs) -> dict:
    got, body, _ = await call_http(function, method, url, **kwargs)
    assert got == status, body
    return check(body)


def named(name: str) -> dict:
    return {"route_params": {"name": name}}


async def test_every_route_answers_a_document_and_the_cli_prints_the_same_ones(app, capsys):
    code, created = await kvca_json(capsys, "ca", "create", "corp", "--subject", "CN=Corp CA",
                                    "--permitted-dns", "corp.internal")
    assert code == 0 and created["object"] == "ca"

    issued = await http("kvca_issue", "POST", "certificates", 201,
                        body={"name": "api", "ca": "corp", "dns_names": ["api.corp.internal"]})
    assert (issued["object"], issued["action"]) == ("outcome", "issued")
    requested = await http("kvca_issue", "POST", "certificates", 201,
                           body={"name": "web", "ca": "corp", "dns_names": ["web.corp.internal"], "sign": False})
    assert requested["action"] == "requested"
    assert (await http("kvca_sign", "POST", "certificates/web/sign", 200, **named("web")))["action"] == "signed"
    app.clock.advance(hours=2)  # past KVCA_FORCE_RENEW_MIN_AGE_MINUTES, the HTTP API's limit on renewing on demand
    renewed = await http("kvca_renew", "POST", "certificates/api/renew", 200, body={"force": True}, **named("api"))
    await http("kvca_issue", "POST", "certificates", 201,
               body={"name": "gone", "ca": "corp", "dns_names": ["gone.corp.internal"], "sign": False})
    assert (await http("kvca_cancel", "POST", "certificates/gone/cancel", 200, **named("gone")))["action"] == "cancelled"
    batch = await http("kvca_issue_batch", "POST", "certificates/batch", 200, body={"certificates": [
        {"name": "d1", "ca": "corp", "dns_names": ["d1.corp.internal"], "profile": "client"}]})
    assert batch["object"] == "batch" and [o["action"] for o in batch["outcomes"]] == ["issued"]
    health = await http("kvca_health", "GET", "health", 200)
    assert health["status"] == "ok" and health["ca_warnings"] == []

    # The same data, the same document: the inventory, the CA's policy, a renewal's outcome.
    inventory = await http("kvca_inventory", "GET", "certificates", 200)
    code, listed = await kvca_json(capsys, "list")
    assert code == 0 and listed == inventory and listed["object"] == "inventory"
    policy = await http("kvca_ca_policy", "GET", "cas/corp/policy", 200, route_params={"ca": "corp"})
    code, shown = await kvca_json(capsys, "ca", "policy", "show", "corp")
    assert code == 0 and shown == policy
    code, cli_renewed = await kvca_json(capsys, "renew", "api", "--force")
    assert code == 0 and cli_renewed.keys() == renewed.keys() and cli_renewed["action"] == renewed["action"]

    revoked = await http("kvca_revoke", "POST", "certificates/web/revoke", 200, body={"reason": "superseded"},
                         **named("web"))
    assert (revoked["object"], revoked["action"]) == ("revocation", "revoked")


async def test_errors_are_one_document_from_the_cli_and_the_http_api(app, capsys):
    assert (await kvca_json(capsys, "ca", "create", "corp", "--subject", "CN=Corp CA",
                            "--permitted-dns", "corp.internal"))[0] == 0
    missing = await http("kvca_sign", "POST", "certificates/nope/sign", 404, **named("nope"))
    code, cli_missing = await kvca_json(capsys, "sign", "nope")
    assert code == 1 and cli_missing.pop("exit_code") == 1
    assert cli_missing == missing and missing["error"] == "NotFound"

    refused = await http("kvca_issue", "POST", "certificates", 422,
                         body={"name": "evil", "ca": "corp", "dns_names": ["www.example.com"]})
    code, cli_refused = await kvca_json(capsys, "request", "evil", "--ca", "corp", "--dns", "www.example.com", "--sign")
    assert code == 1 and cli_refused["error"] == refused["error"] == "PolicyViolation"
    assert cli_refused["step"] == refused["step"] and "'www.example.com'" in refused["message"]

    malformed = await http("kvca_issue", "POST", "certificates", 400, body={"name": "x", "ca": "corp", "colour": "red"})
    assert malformed["error"] == "InvalidRequest" and "'colour'" in malformed["message"]
    code, cli_malformed = await kvca_json(capsys, "request", "x", "--ca", "corp", "--dns", "x.corp.internal",
                                          "--months", "0")
    assert code == 2 and cli_malformed["exit_code"] == 2
