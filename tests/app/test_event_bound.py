"""The Event Grid function bounds the waiting before a create, never the work after it: when the
vault's create budget is taken for longer than it may wait, it fails fast with nothing created (Event
Grid delivers again later); once the create is made, the merge follows however long it takes."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import math
import time

import pytest

from kvca_core import clock, operations
from kvca_core.errors import Throttled
from kvca_core.ledger import open_ledger
from kvca_core.operations.coordination import SLOT_KIND, Claim, budget_for, claim_key, claim_renewal, release

from apphelpers import completed_versions, deliver, import_leaves, import_recipe_ca, recipe_ca_material, versions
from scalehelpers import CREATE, timed_requests

NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
eventgrid = importlib.import_module("blueprints.eventgrid")  # the module (the package exports its Blueprint)


async def _near_expiry(app, ctx, name: str) -> dict:
    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    await import_leaves(ctx.vault, material[2], material[3], [name], days=365)
    expires = (await ctx.vault.get_certificate(name)).expires_on
    app.take_events()
    app.clock.set(expires - dt.timedelta(days=29))
    (event,) = [e for e in app.take_events() if e["eventType"] == NEAR_EXPIRY]
    return event


async def test_an_event_that_cannot_get_a_create_slot_in_time_fails_fast_and_creates_nothing(app, ctx, monkeypatch):
    monkeypatch.setattr(eventgrid, "CREATE_WAIT_SECONDS", 2.0)
    event = await _near_expiry(app, ctx, "busy")
    # Another instance holds the vault's create budget for the next 3 s.
    budget = budget_for(ctx)
    now = time.time()
    for slot in range(math.ceil(now / budget.spacing), math.ceil((now + 3) / budget.spacing) + 1):
        assert await ctx.ledger.insert_once(SLOT_KIND, f"{ctx.vault.vault_name}.{slot}", {"by": "another instance"})
    with timed_requests(app) as log:
        started = time.monotonic()
        with pytest.raises(Throttled):
            await deliver(event)  # raised: Event Grid counts the delivery failed and delivers it again
        assert time.monotonic() - started < eventgrid.CREATE_WAIT_SECONDS + 1
        assert log.times(creates=True) == []
    # Nothing claimed either: the redelivery renews it once the budget has room.
    assert len(await versions(ctx.vault, "busy")) == 1
    while time.time() < now + 3 - eventgrid.CREATE_WAIT_SECONDS / 2:
        await asyncio.sleep(0.2)
    await deliver(event)
    assert len(await completed_versions(ctx.vault, "busy")) == 2


async def test_once_the_create_is_made_the_merge_follows_past_the_bound(app, ctx, monkeypatch):
    monkeypatch.setattr(eventgrid, "CREATE_WAIT_SECONDS", 1.0)
    event = await _near_expiry(app, ctx, "slow")
    # The merge takes 2 s, twice the bound on the waiting before the create.
    app.faults.add(kind="latency", route=r"^/certificates/slow/pending/merge", seconds=2.0)
    with timed_requests(app) as log:
        await deliver(event)
    assert len(log.times(creates=True)) == 1
    assert len(await completed_versions(ctx.vault, "slow")) == 2
    pending = await ctx.vault.get_pending("slow")
    assert pending is None or not pending.in_progress


async def test_a_duplicate_event_finds_the_renewal_claimed_and_creates_nothing(app, ctx):
    event = await _near_expiry(app, ctx, "twice")
    judged = await ctx.vault.get_certificate("twice")
    # The first delivery's invocation is still at work (it claimed the version, Event Grid gave up waiting).
    first = Claim()
    assert await claim_renewal(ctx.ledger, claim_key("twice", judged.version, clock.now()), first) == ""
    with timed_requests(app) as log:
        await deliver(event)  # acknowledged
        outcome = await operations.renew(ctx, "twice", version=judged.version)
    assert outcome.action == "skipped" and "being renewed by another trigger" in outcome.reason
    assert [r for _t, _m, r in log.stamps if r == CREATE] == []
    assert len(await versions(ctx.vault, "twice")) == 1


async def test_a_claim_given_back_before_its_create_lets_the_next_trigger_claim(ledger_url):
    ledger = open_ledger(ledger_url, None)
    try:
        first, second, third = Claim(), Claim(), Claim()
        assert await claim_renewal(ledger, "api.v1.2026120801", first) == ""
        assert "being renewed by another trigger" in await claim_renewal(ledger, "api.v1.2026120801", second)
        assert second.key == ""  # nothing of someone else's to give back
        await release(ledger, first)  # e.g. no create slot within the bound: nothing was created
        assert await claim_renewal(ledger, "api.v1.2026120801", second) == ""
        assert second.key == "api.v1.2026120801.1"
        # A give-back carrying another claim's token frees nothing.
        await release(ledger, Claim("api.v1.2026120801.1", "not-its-token"))
        assert "being renewed by another trigger" in await claim_renewal(ledger, "api.v1.2026120801", third)
    finally:
        await ledger.close()
