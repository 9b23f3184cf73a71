"""CAs nearing expiry (kvca_core/cawatch.py): warned about in the sweep summary (the timer's run),
the HTTP inventory and /api/health, from the vault's listing. The CAs are real: imported the
recipe's way with a short life, or made by `create_ca` in the vault; time moves on the emulator."""

from __future__ import annotations

import json
import logging

from kvca_core import cawatch, context, operations
from kvca_core.ca import create_ca
from kvca_core.operations import IssueRequest

from apphelpers import call_http, import_recipe_ca, run_timer


async def test_the_timer_sweep_summary_warns_of_an_intermediate_within_398_days(app, caplog):
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp", years=2)  # the intermediate lives 1 year
    await import_recipe_ca(ctx.vault, "long")  # 9 years: no warning
    with caplog.at_level(logging.INFO, logger="kvca_core.telemetry"):
        await run_timer()
    records = [r for r in caplog.records if "outcome=ca-" in r.getMessage()]
    assert len(records) == 1 and "ca=corp" in records[0].getMessage() and "outcome=ca-expiring" in records[0].getMessage()
    # The record's dimensions, as Application Insights stores them (kvca_core/telemetry.py).
    dims = {k: v for k, v in vars(records[0]).items() if k.startswith("kvca.")}
    assert dims["kvca.operation"] == "ca_warning" and dims["kvca.ca"] == "corp"
    assert dims["kvca.role"] == "intermediate" and dims["kvca.outcome"] == "ca-expiring"
    assert dims["kvca.source"] == "timer"
    summary = await operations.sweep(ctx)
    [warning] = summary.ca_warnings
    assert warning.ca == "corp" and warning.role == "intermediate" and warning.state == "expiring"
    assert warning.version == (await ctx.vault.get_certificate("corp")).version
    assert warning.message.startswith("CA 'corp' (intermediate) expires on ")
    assert warning.message.endswith(": leaves are now capped at that date") and warning.hint == "kvca ca rotate corp"
    [shown] = summary.to_dict()["ca_warnings"]
    assert shown == warning.to_dict() and shown["not_after"].endswith("+00:00") and 360 <= shown["days_left"] <= 366


async def test_the_sweep_collects_the_warnings_from_its_own_listing(app):
    """No second listing: the warnings come from the items the sweep lists anyway."""
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp", years=2)
    listings = 0
    real = ctx.vault.list_certificates

    def counted(*args, **kwargs):
        nonlocal listings
        listings += 1
        return real(*args, **kwargs)

    ctx.vault.list_certificates = counted
    try:
        summary = await operations.sweep(ctx)
    finally:
        ctx.vault.list_certificates = real
    assert listings == 1 and [w.ca for w in summary.ca_warnings] == ["corp"]


async def test_an_expired_ca_is_warned_as_expired(app):
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp", years=2)
    app.clock.advance(days=400)
    [warning] = await cawatch.ca_warnings(ctx)
    assert warning.state == "expired" and warning.days_left < 0
    assert "expired on" in warning.message and "days ago" in warning.message


async def test_a_kvca_created_ca_warns_for_its_root_too_with_a_new_ca_as_the_hint(app):
    ctx = await context.shared()
    await create_ca(ctx, "short", subject="CN=Short CA", years=1, root_years=1)
    warnings = {w.role: w for w in await cawatch.ca_warnings(ctx)}
    assert set(warnings) == {"intermediate", "root"}
    root = warnings["root"]
    assert root.ca == "short-root" and "kvca ca create" in root.hint and "cannot be rotated" in root.hint
    assert "intermediates under it" in root.message


async def test_the_window_is_kvca_ca_renew_before_days(app, monkeypatch):
    monkeypatch.setenv("KVCA_CA_RENEW_BEFORE_DAYS", "30")
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp", years=2)
    assert await cawatch.ca_warnings(ctx) == ()
    app.clock.advance(days=340)
    assert [w.ca for w in await cawatch.ca_warnings(ctx)] == ["corp"]


async def test_the_http_inventory_returns_the_ca_warnings_beside_the_certificates(app):
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp", years=2)
    await operations.issue(ctx, IssueRequest(name="web", ca="corp", dns_names=("web.corp.internal",)))
    status, body, _ = await call_http("kvca_inventory", "GET", "certificates")
    assert status == 200, body
    assert [c["name"] for c in body["certificates"]] == ["web"]
    [warning] = body["ca_warnings"]
    assert warning["ca"] == "corp" and warning["state"] == "expiring" and warning["hint"] == "kvca ca rotate corp"


async def test_the_inventory_shows_a_caller_only_the_warnings_of_cas_its_rule_covers(app, monkeypatch):
    rules = {"function_key": {"actions": ["inventory"], "cas": ["other"], "dns_suffixes": ["*"]}}
    monkeypatch.setenv("KVCA_ACCESS_RULES", json.dumps(rules))
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp", years=2)
    await import_recipe_ca(ctx.vault, "other", years=2)
    status, body, _ = await call_http("kvca_inventory", "GET", "certificates")
    assert status == 200 and [w["ca"] for w in body["ca_warnings"]] == ["other"]


async def test_health_reports_the_ca_warnings(app):
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp", years=2)
    status, body, _ = await call_http("kvca_health", "GET", "health")
    assert status == 200 and body["status"] == "ok", body
    assert [w["ca"] for w in body["ca_warnings"]] == ["corp"] and "ca_warnings_error" not in body


async def test_health_answers_when_the_vault_is_too_slow_and_says_the_warnings_are_unknown(app, monkeypatch):
    monkeypatch.setattr(cawatch, "HEALTH_TIMEOUT", 0.5)
    await context.shared()
    app.faults.add(kind="latency", method="GET", route=r"/certificates$", seconds=3)
    status, body, _ = await call_http("kvca_health", "GET", "health")
    assert status == 200 and body["status"] == "ok", body
    assert body["ca_warnings"] == [] and "took longer than 0.5 s" in body["ca_warnings_error"]
    app.faults.clear()
    status, body, _ = await call_http("kvca_health", "GET", "health")  # a failure is not cached
    assert status == 200 and "ca_warnings_error" not in body


async def test_health_lists_the_vault_at_most_once_in_five_minutes(app):
    ctx = await context.shared()
    await call_http("kvca_health", "GET", "health")
    await import_recipe_ca(ctx.vault, "corp", years=2)
    status, body, _ = await call_http("kvca_health", "GET", "health")
    assert status == 200 and body["ca_warnings"] == []  # the first answer, cached
    warnings, error = await cawatch.cached_ca_warnings(ctx, max_age=0)
    assert [w.ca for w in warnings] == ["corp"] and error == ""
