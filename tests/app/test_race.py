"""Overlapping triggers: an event, a sweep and an HTTP renew on the same certificate make one version."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from kvca_core import operations
from kvca_core.context import Context
from kvca_core.operations import IssueRequest
from kvca_core.settings import Settings

from apphelpers import call_http, completed_versions, deliver, import_recipe_ca, run_timer, versions

NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"


async def _due_certificate(app, ctx, name: str):
    await operations.issue(ctx, IssueRequest(name=name, ca="corp-ca", dns_names=(f"{name}.corp.internal",)))
    current = await ctx.vault.get_certificate(name)
    app.take_events()
    app.clock.set(current.expires_on - dt.timedelta(days=29))
    near = [e for e in app.take_events() if e["eventType"] == NEAR_EXPIRY and e["data"]["ObjectName"] == name]
    assert len(near) == 1
    return current, near[0]


@pytest.mark.parametrize("round_", range(5))
async def test_event_sweep_and_http_renew_racing_make_exactly_one_new_version(app, ctx, round_):
    await import_recipe_ca(ctx.vault, "corp-ca")
    first, near = await _due_certificate(app, ctx, "contested")
    # A second "instance" of the app: its own context, clients and CA cache, like another worker.
    async with Context.open(Settings.from_env()) as other:
        racers = [
            deliver(near),
            run_timer(),
            call_http("kvca_renew", "POST", "x", route_params={"name": "contested"}),
            operations.renew(other, "contested"),
            operations.sweep(other),
        ]
        order = racers[round_:] + racers[:round_]  # who starts first changes each round
        results = await asyncio.gather(*order, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    done = await completed_versions(ctx.vault, "contested")
    assert len(done) == 2
    assert (await ctx.vault.get_certificate("contested")).version != first.version
    pending = await ctx.vault.get_pending("contested")
    assert pending is None or not pending.in_progress  # no orphaned request left to sign twice later
    # Nothing more happens afterwards: a duplicate event, another sweep.
    await deliver(near)
    await run_timer()
    assert len(await completed_versions(ctx.vault, "contested")) == 2


async def test_a_duplicate_event_is_a_no_op(app, ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    first, near = await _due_certificate(app, ctx, "twice")
    await deliver(near)
    after_first = await versions(ctx.vault, "twice")
    await deliver(near)
    await deliver(near)
    assert [v.version for v in await versions(ctx.vault, "twice")] == [v.version for v in after_first]
    assert len(await completed_versions(ctx.vault, "twice")) == 2


async def test_two_sign_requests_for_one_pending_request_merge_once(app, ctx):
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="queued", ca="corp-ca", dns_names=("q.corp.internal",)),
                           sign=False)
    async with Context.open(Settings.from_env()) as other:
        outcomes = await asyncio.gather(operations.sign_pending(ctx, "queued"),
                                        operations.sign_pending(other, "queued"),
                                        operations.sign_pending(ctx, "queued"))
    assert sorted(o.action for o in outcomes).count("signed") == 1
    assert len(await completed_versions(ctx.vault, "queued")) == 1
