"""The sweep works most urgent first: due renewals by when they fell due (the verdict's `at`), pending
requests by age, whatever their names, then the pending checks of the certificates not due."""

from __future__ import annotations

import pytest

from kvca_core import context, operations
from kvca_core.operations import IssueRequest

from apphelpers import completed_versions, import_leaves, import_recipe_ca, recipe_ca_material


@pytest.fixture
async def one_worker(app, monkeypatch):
    """The app's context with one sweep worker, so that the order of the outcomes is the sweep's order."""
    monkeypatch.setenv("KVCA_CONCURRENCY", "1")
    await context.reset_shared()
    return await context.shared()


async def test_due_certificates_are_renewed_soonest_due_first_whatever_their_names(app, one_worker):
    ctx = one_worker
    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    # Listing order is alphabetical; urgency runs the other way: z falls due first (61 days of life:
    # due at two thirds, day 41), w last (120 days: due at day 90); m is a year away from due.
    lives = {"z-61": 61, "y-75": 75, "x-90": 90, "w-120": 120, "m-365": 365}
    for name, days in lives.items():
        await import_leaves(ctx.vault, material[2], material[3], [name], days=days)
    app.clock.advance(days=100)

    order: list[tuple[str, str]] = []
    summary = await operations.sweep(ctx, progress=lambda o: order.append((o.name, o.action)))

    assert order == [("z-61", "renewed"), ("y-75", "renewed"), ("x-90", "renewed"), ("w-120", "renewed"),
                     ("m-365", "skipped")]
    assert (summary.renewed, summary.failed, summary.left, summary.unchecked) == (4, 0, 0, 0)
    for name in ("z-61", "y-75", "x-90", "w-120"):
        assert len(await completed_versions(ctx.vault, name)) == 2


async def test_pending_requests_are_signed_oldest_first_after_what_fell_due_before_them(app, one_worker):
    ctx = one_worker
    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    await import_leaves(ctx.vault, material[2], material[3], ["b-due"], days=61)
    await import_leaves(ctx.vault, material[2], material[3], ["a-fine"], days=365)
    app.clock.advance(days=50)  # b-due fell due on day 41
    # Requests left pending (a portal's "New Version", an issue without signing), oldest first:
    # their names run the other way.
    for name in ("q-oldest", "k-middle", "c-newest"):
        await operations.issue(ctx, IssueRequest(name=name, ca="corp-ca", dns_names=(f"{name}.corp.internal",)),
                               sign=False)
        app.clock.advance(minutes=10)

    order: list[tuple[str, str]] = []
    summary = await operations.sweep(ctx, progress=lambda o: order.append((o.name, o.action)))

    assert order == [("b-due", "renewed"), ("q-oldest", "signed"), ("k-middle", "signed"), ("c-newest", "signed"),
                     ("a-fine", "skipped")]
    assert (summary.signed, summary.renewed, summary.failed) == (3, 1, 0)


async def test_a_dry_run_lists_the_work_in_the_order_a_sweep_would_do_it(app, one_worker):
    ctx = one_worker
    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    for name, days in {"a-late": 120, "b-early": 61, "c-fine": 365}.items():
        await import_leaves(ctx.vault, material[2], material[3], [name], days=days)
    app.clock.advance(days=100)
    order: list[tuple[str, str]] = []
    summary = await operations.sweep(ctx, dry_run=True, progress=lambda o: order.append((o.name, o.action)))
    assert order == [("b-early", "would-renew"), ("a-late", "would-renew"), ("c-fine", "skipped")]
    assert summary.renewed == 2
    for name in ("a-late", "b-early"):
        assert len(await completed_versions(ctx.vault, name)) == 1  # a dry run changes nothing
