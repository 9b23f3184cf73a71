"""kvca over more than one listing page, as the real Key Vault pages (docs/keyvault-behaviour.md,
"Listing and paging"): the nextLink drops includePending, a pending-only certificate answers with dates and no
certificate, a withdrawn request leaves its version behind, 429s may come without Retry-After,
and whether a versionless GET answers a newer pending version is unconfirmed (both ways here)."""

from __future__ import annotations

import asyncio

import pytest

from kvca_core import operations
from kvca_core.errors import PolicyViolation, Throttled
from kvca_core.vocabulary import CA_TAG
from kvca_core.operations import IssueRequest
from kvca_core.rim.azure import Backoff

from apphelpers import (chain_from_vault, completed_versions, import_leaves, import_recipe_ca, openssl_verify,
                        recipe_ca_material, run_timer)

BOTH_WAYS = pytest.mark.parametrize("current_includes_pending", [False, True],
                                    ids=["current-is-completed", "current-includes-pending"])
FILLER = [f"a-{i:03d}" for i in range(30)]  # sorts first: the pending ones land on page 2


async def _vault_of_two_pages(app, ctx, *, days: int = 365):
    """The CA, its root and 30 completed certificates: 32 items, so the listing has two pages."""
    material = await recipe_ca_material("corp-ca")
    root = await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    await import_leaves(ctx.vault, material[2], material[3], FILLER, days=days)
    return root


async def _request(ctx, names) -> None:
    for name in names:
        outcome = await operations.issue(ctx, IssueRequest(name=name, ca="corp-ca",
                                                           dns_names=(f"{name}.corp.internal",)), sign=False)
        assert outcome.action == "requested"


@BOTH_WAYS
async def test_the_sweep_signs_pending_only_certificates_past_the_first_page(app, ctx, current_includes_pending):
    app.set_fidelity(paging_drops_params=True, current_includes_pending=current_includes_pending)
    root = await _vault_of_two_pages(app, ctx)
    pending = [f"z-pending-{i}" for i in range(5)]
    await _request(ctx, pending)
    listed = [v.name async for v in ctx.vault.list_certificates()]
    assert len(listed) == 37 and set(pending) <= set(listed)  # all of them, page 2 included

    summary = await operations.sweep(ctx)
    assert (summary.scanned, summary.managed, summary.signed, summary.failed) == (37, 35, 5, 0)
    for name in pending:
        assert len(await completed_versions(ctx.vault, name)) == 1
        openssl_verify(await chain_from_vault(ctx.vault, name), root)
    assert (await operations.sweep(ctx)).signed == 0  # and nothing twice


@BOTH_WAYS
async def test_the_inventory_shows_later_pages_and_pending_requests_without_invented_dates(
        app, ctx, current_includes_pending):
    app.set_fidelity(current_includes_pending=current_includes_pending)
    await _vault_of_two_pages(app, ctx)
    await _request(ctx, ["z-pending-0", "z-pending-1"])
    infos = {i.name: i for i in (await operations.inventory_report(ctx)).certificates}
    assert len(infos) == 32
    for name in ("z-pending-0", "z-pending-1"):
        # Key Vault gives the pending version nbf/exp from the policy: not a certificate's dates.
        assert (infos[name].state, infos[name].not_after, infos[name].days_left) == ("pending", None, None)
    assert {infos[n].state for n in FILLER} == {"valid"}
    shown = await operations.describe(ctx, "z-pending-0")
    assert shown.pending == "inProgress" and shown.renew_at is None and shown.info.state == "pending"


@BOTH_WAYS
async def test_a_withdrawn_or_pending_newer_version_does_not_stall_renewal(app, ctx, current_includes_pending):
    app.set_fidelity(current_includes_pending=current_includes_pending)
    await _vault_of_two_pages(app, ctx, days=61)
    first = await ctx.vault.get_certificate("a-029")
    # A request made and withdrawn by hand: Key Vault keeps its version, disabled, without a certificate.
    await ctx.vault.create_new_version("a-029", tags=first.tags)
    await ctx.vault.delete_pending("a-029")
    assert (await ctx.vault.get_certificate("a-029")).version == first.version  # passed over as current
    app.clock.advance(days=45)
    summary = await operations.sweep(ctx)
    assert (summary.renewed, summary.failed) == (30, 0)
    renewed = await ctx.vault.get_certificate("a-029")
    assert renewed.version != first.version and renewed.completed and renewed.enabled
    assert len(await completed_versions(ctx.vault, "a-029")) == 2


@BOTH_WAYS
async def test_a_request_pending_on_a_completed_certificate_is_signed_and_never_twice(
        app, ctx, current_includes_pending):
    """The portal's "New Version" on a certificate that is not due, on page 2."""
    app.set_fidelity(current_includes_pending=current_includes_pending)
    await _vault_of_two_pages(app, ctx)
    await operations.issue(ctx, IssueRequest(name="z-handmade", ca="corp-ca", dns_names=("h.corp.internal",)))
    app.clock.advance(minutes=10)  # past the "completed moments ago" guard
    await ctx.vault.create_new_version("z-handmade", tags={CA_TAG: "corp-ca"})
    await run_timer()
    await run_timer()
    assert len(await completed_versions(ctx.vault, "z-handmade")) == 2
    assert (await ctx.vault.get_pending("z-handmade")).status.lower() == "completed"


async def test_issue_renew_and_sweep_ride_out_429s_without_retry_after(app, ctx):
    """azure-core does not retry a POST on a 429 without Retry-After; kvca backs off itself."""
    await _vault_of_two_pages(app, ctx, days=61)
    app.faults.add(kind="429", method="POST", route=r"/create$", count=2)
    app.faults.add(kind="429", method="POST", route=r"/pending/merge$", count=2)
    issued = await operations.issue(ctx, IssueRequest(name="z-hot", ca="corp-ca", dns_names=("hot.corp.internal",)))
    assert issued.action == "issued"
    app.clock.advance(days=45)
    app.faults.add(kind="429", method="POST", route=r"/create$", count=3)
    app.faults.add(kind="429", method="POST", route=r"/pending/merge$", count=3)
    assert (await operations.renew(ctx, "a-000")).action == "renewed"
    summary = await operations.sweep(ctx)
    assert (summary.renewed, summary.failed) == (29, 0)
    assert {len(v) for v in await asyncio.gather(*(completed_versions(ctx.vault, n) for n in FILLER))} == {2}


async def test_throttling_that_outlasts_the_backoff_fails_once_and_is_logged_once(app, ctx, caplog):
    await import_recipe_ca(ctx.vault, "corp-ca")
    app.faults.add(kind="429", method="POST", route=r"/certificates/z-cold/create$", rate=1)
    ctx.vault._backoff = Backoff(attempts=3, base=0.05, cap=0.1)  # a short run of the same rule
    with pytest.raises(Throttled):
        await operations.issue(ctx, IssueRequest(name="z-cold", ca="corp-ca", dns_names=("c.corp.internal",)))
    assert [f["fired"] for f in app.faults.list()] == [3]  # bounded: three tries in all
    assert sum("throttled without Retry-After" in r.getMessage() for r in caplog.records) == 1


async def test_a_409_from_a_concurrent_change_of_the_pending_request_is_no_failure(app, ctx, kv_aio_clients):
    """Key Vault's "conflict while updating/deleting pending certificate": someone else (here a
    person cancelling in the portal) changed the request while kvca merged. Not a failure."""
    app.set_fidelity(pending_conflict_seconds=30, cancel_settle_seconds=30)
    await import_recipe_ca(ctx.vault, "corp-ca")
    await operations.issue(ctx, IssueRequest(name="busy", ca="corp-ca", dns_names=("b.corp.internal",)), sign=False)
    app.faults.add(kind="latency", method="POST", route=r"/certificates/busy/pending/merge$", count=1, seconds=1)
    signing = asyncio.create_task(operations.sign_pending(ctx, "busy"))
    while app.faults.list():  # the rule goes once it has fired: the merge is on its way
        await asyncio.sleep(0.02)
    await kv_aio_clients.certificates.cancel_certificate_operation("busy")
    outcome = await signing
    assert outcome.action == "skipped" and "another caller is changing the pending request" in outcome.reason
    assert await completed_versions(ctx.vault, "busy") == []


@BOTH_WAYS
async def test_a_disabled_ca_version_is_not_swapped_for_an_older_one(app, ctx, current_includes_pending):
    """Disabling the CA's current version stops signing; kvca does not fall back to the version
    before it (Key Vault, too, answers the disabled version as current)."""
    app.set_fidelity(current_includes_pending=current_includes_pending)
    await import_recipe_ca(ctx.vault, "corp-ca")
    older = await ctx.vault.get_certificate("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca")
    newest = await ctx.vault.get_certificate("corp-ca")
    await ctx.vault.update_properties("corp-ca", newest.version, enabled=False)
    current = await ctx.vault.get_certificate("corp-ca")
    assert (current.version, current.enabled) == (newest.version, False) and current.version != older.version
    with pytest.raises(PolicyViolation, match="disabled"):
        await operations.issue(ctx, IssueRequest(name="z-refused", ca="corp-ca", dns_names=("r.corp.internal",)))
