"""A sweep cut by its budget (KVCA_SWEEP_BUDGET_SECONDS) finishes every renewal it started, leaves no
request half done, and says how much it left and when the next run takes it."""

from __future__ import annotations

import datetime as dt
import io

from kvca_core import context, operations
from kvca_core.cli.output import Output, print_summary
from kvca_core.settings import next_occurrence

from apphelpers import completed_versions, import_leaves, import_recipe_ca, recipe_ca_material, versions
from scalehelpers import CREATE, timed_requests

DUE = 30


async def _due_fleet(app, ctx) -> list[str]:
    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    names = [f"leaf-{i:02d}" for i in range(DUE)]
    await import_leaves(ctx.vault, material[2], material[3], names, days=61)
    await import_leaves(ctx.vault, material[2], material[3], ["fine"], days=365)
    app.clock.advance(days=45)
    return names


async def test_a_sweep_cut_by_its_budget_finishes_what_it_started_and_reports_the_rest(app, monkeypatch):
    # Key Vault's own create limit (20 per 10 s), throttling on: 30 renewals need 15 s; the budget is 3.
    monkeypatch.setenv("KVCA_SWEEP_BUDGET_SECONDS", "3")
    await context.reset_shared()
    ctx = await context.shared()
    names = await _due_fleet(app, ctx)
    app.throttling(True)

    with timed_requests(app) as log:
        before = dt.datetime.now(dt.timezone.utc)
        cut = await operations.sweep(ctx)
        after = dt.datetime.now(dt.timezone.utc)
    assert cut.failed == 0, cut.failures
    assert 0 < cut.renewed < DUE
    # A renewal whose create slot would come after the budget does not start (nothing created); the
    # workers go on to the pending check of "fine" meanwhile, unless the budget is gone by then.
    assert cut.left == DUE - cut.renewed and cut.unchecked in (0, 1)
    assert cut.skipped == cut.left + 1  # "fine": checked (not due) or left unchecked
    assert cut.budget_seconds == 3
    left = {o.name for o in cut.outcomes if o.reason.startswith("left for the next sweep")}
    assert len(left) == cut.left + cut.unchecked
    # Every create the sweep made was merged: nothing pending anywhere, one create per renewal.
    assert sum(1 for _t, _m, route in log.stamps if route == CREATE) == cut.renewed
    for name in names:
        pending = await ctx.vault.get_pending(name)
        assert pending is None or not pending.in_progress, name
    # The next run is the schedule's next time (KVCA_SWEEP_SCHEDULE, UTC).
    assert cut.next_run in {next_occurrence(ctx.settings.sweep_schedule, before),
                            next_occurrence(ctx.settings.sweep_schedule, after)}
    body = cut.to_dict()
    assert (body["left"], body["unchecked"], body["next_run"]) == (cut.left, cut.unchecked, cut.next_run.isoformat())
    printed = io.StringIO()
    print_summary(Output(False, stdout=printed, stderr=io.StringIO()), cut)
    assert f"left for the next run ({cut.next_run:%Y-%m-%d %H:%M} UTC): {cut.left} due or pending, " \
           f"{cut.unchecked} not checked" in printed.getvalue()

    # The next run, with the default budget, renews the rest; none twice, no request withdrawn.
    monkeypatch.delenv("KVCA_SWEEP_BUDGET_SECONDS")
    await context.reset_shared()
    ctx = await context.shared()
    rest = await operations.sweep(ctx)
    assert (rest.renewed, rest.failed, rest.left, rest.unchecked) == (DUE - cut.renewed, 0, 0, 0)
    for name in names:
        assert len(await completed_versions(ctx.vault, name)) == 2
        assert len(await versions(ctx.vault, name)) == 2, f"{name}: a request was made and withdrawn"


async def test_a_sweep_within_its_budget_leaves_nothing_and_says_so(app, ctx):
    await _due_fleet(app, ctx)
    summary = await operations.sweep(ctx)
    assert (summary.renewed, summary.left, summary.unchecked) == (DUE, 0, 0)
    assert summary.budget_seconds == ctx.settings.sweep_budget_seconds == 510
    printed = io.StringIO()
    print_summary(Output(False, stdout=printed, stderr=io.StringIO()), summary)
    assert "left for the next run" not in printed.getvalue()
