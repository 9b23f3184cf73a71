"""A sweep over 500 certificates with 5 % due, then again with 10 % of Key Vault calls failing
(429 / 503 with Retry-After): every due certificate renewed, none twice."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from kvca_core import operations

from apphelpers import completed_versions, import_leaves, import_recipe_ca, recipe_ca_material, run_timer

TOTAL = 500
DUE = 25  # 5 %


async def _populate(ctx, inter, inter_key) -> tuple[list[str], list[str]]:
    """25 two-month certificates and 475 one-year ones, imported with the kvca-ca tag."""
    short = [f"short-{i:03d}" for i in range(DUE)]
    long_ = [f"long-{i:03d}" for i in range(TOTAL - DUE)]
    await asyncio.gather(import_leaves(ctx.vault, inter, inter_key, short, days=61),
                         import_leaves(ctx.vault, inter, inter_key, long_, days=365))
    return short, long_


async def _version_counts(ctx, names) -> dict[str, int]:
    limit = asyncio.Semaphore(16)

    async def count(name):
        async with limit:
            return name, len(await completed_versions(ctx.vault, name))

    return dict(await asyncio.gather(*(count(n) for n in names)))


async def _thumbprints(ctx) -> dict[str, bytes]:
    """The current version's thumbprint of every certificate: one listing shows any new version."""
    return {v.name: v.x5t async for v in ctx.vault.list_certificates()}


@pytest.mark.slow
async def test_sweep_over_500_certificates_renews_the_due_ones_even_through_throttling(app, ctx):
    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    short, long_ = await _populate(ctx, material[2], material[3])
    app.take_events()
    initial = await _thumbprints(ctx)

    # 45 days on: the two-month certificates are past two thirds of their life (due), the others are not.
    app.clock.advance(days=45)
    summary = await operations.sweep(ctx)
    assert (summary.scanned, summary.managed) == (TOTAL + 2, TOTAL)  # + the CA and its root
    assert (summary.renewed, summary.signed, summary.failed) == (DUE, 0, 0)
    assert summary.skipped == TOTAL - DUE
    assert await _version_counts(ctx, short) == {n: 2 for n in short}
    assert {n for n, x5t in (await _thumbprints(ctx)).items() if initial[n] != x5t} == set(short)

    # 45 more days: the renewed short ones are due again; now 10 % of all calls fail.
    app.clock.advance(days=45)
    app.faults.add(kind="429", rate=0.05, retry_after=0.05)
    app.faults.add(kind="503", rate=0.05, retry_after=0.05)
    renewed = 0
    for _ in range(3):  # what does not get through comes back at the next sweep
        result = await operations.sweep(ctx)
        renewed += result.renewed
        if result.failed == 0:
            break
    app.faults.clear()
    # The timer trigger's sweep finds nothing left: fresh certificates are never due.
    app.take_events()
    await run_timer()
    assert await _version_counts(ctx, short) == {n: 3 for n in short}
    assert {n for n, x5t in (await _thumbprints(ctx)).items() if initial[n] != x5t} == set(short)
    assert renewed <= DUE
