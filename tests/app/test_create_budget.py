"""One create budget per vault, shared by every instance through the ledger: however many processes
renew at once, no 10 seconds see more than KVCA_CREATE_LIMIT creates, and an HSM key counts 2."""

from __future__ import annotations

import asyncio

import pytest
from azure.keyvault.certificates import CertificatePolicy, KeyType

from kvca_core import context, operations
from kvca_core.context import Context
from kvca_core.ledger import open_ledger
from kvca_core.operations.coordination import SLOT_KIND, CreateBudget, NotStarted, budget_for
from kvca_core.settings import Settings
from kvca_core.vocabulary import CA_TAG

from apphelpers import completed_versions, import_leaves, import_recipe_ca, recipe_ca_material, versions
from scalehelpers import FakeClock, most_in_window, timed_requests


async def test_two_instances_sharing_a_ledger_never_start_more_than_the_limit_in_10_seconds(ledger_url):
    clock = FakeClock()
    ledgers = [open_ledger(ledger_url, None), open_ledger(ledger_url, None)]  # two processes' handles
    budgets = [CreateBudget(ledger, "vault", 20, clock=clock.now, sleep=clock.sleep) for ledger in ledgers]
    starts: list[float] = []

    async def create(budget: CreateBudget) -> None:
        starts.append(await budget.acquire())

    try:
        await asyncio.gather(*(create(budgets[i % 2]) for i in range(100)))
    finally:
        for ledger in ledgers:
            await ledger.close()
    assert len(starts) == len(set(starts)) == 100
    assert most_in_window(starts, 10.0) == 20  # 20 per 10.5 s: the whole budget, and no more
    assert budgets[0].claimed + budgets[1].claimed == 100
    assert min(b.claimed for b in budgets) > 0  # both instances created


async def test_an_hsm_key_costs_two_and_a_slot_past_the_deadline_is_not_taken(ledger_url):
    clock = FakeClock()
    ledger = open_ledger(ledger_url, None)
    budget = CreateBudget(ledger, "vault", 20, clock=clock.now, sleep=clock.sleep)
    try:
        first = await budget.acquire(cost=2)
        second = await budget.acquire()
        assert budget.claimed == 3 and second - first == pytest.approx(budget.spacing)
        with pytest.raises(NotStarted) as refused:
            await budget.acquire(deadline=clock.now() + budget.spacing / 2)
        assert refused.value.kind == "Throttled" and "create budget" in refused.value.message
        assert budget.claimed == 3  # nothing claimed for a create that will not start
        slot = round(second / budget.spacing)
        assert await ledger.get(SLOT_KIND, f"vault.{slot}") is not None
        assert await ledger.get(SLOT_KIND, f"vault.{slot + 1}") is None
    finally:
        await ledger.close()


async def test_two_instances_sweeping_one_vault_renew_each_once_within_key_vaults_create_limit(app, ctx):
    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    names = [f"leaf-{i:02d}" for i in range(30)]
    await import_leaves(ctx.vault, material[2], material[3], names, days=61)
    app.clock.advance(days=45)
    # Key Vault's limit as it is (20 creates per 10 s), no Retry-After: a create over the limit would be
    # answered 429 and tried again, so it would show in the log twice.
    app.throttling(True)
    with timed_requests(app) as log:
        async with Context.open(Settings.from_env()) as other:  # a second instance: its own clients and budget
            first, second = await asyncio.gather(operations.sweep(ctx), operations.sweep(other))
    assert first.failed == second.failed == 0, (first.failures, second.failures)
    assert first.renewed + second.renewed == len(names)
    creates = log.times(creates=True)
    assert len(creates) == len(names)  # one create per renewal: none throttled, none a duplicate
    assert most_in_window(creates, 10.0) <= 20
    for name in names:
        assert len(await completed_versions(ctx.vault, name)) == 2
        assert len(await versions(ctx.vault, name)) == 2


async def test_a_renewal_of_an_hsm_certificate_takes_two_units_of_the_budget(app, ctx, kv_aio_clients):
    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=hsm.corp.internal", san_dns_names=["hsm.corp.internal"],
                               key_type=KeyType.rsa_hsm, key_size=2048, exportable=False, validity_in_months=12)
    await kv_aio_clients.certificates.create_certificate("hsm", policy, tags={CA_TAG: "corp-ca"})
    assert (await operations.sign_pending(ctx, "hsm")).action == "signed"
    assert (await ctx.vault.get_policy("hsm")).key.hsm
    budget = budget_for(ctx)
    before = budget.claimed
    assert (await operations.renew(ctx, "hsm", now=True, force=True)).action == "renewed"
    assert budget.claimed - before == 2
    assert len(await completed_versions(ctx.vault, "hsm")) == 2


async def test_the_budget_follows_kvca_create_limit(app, monkeypatch):
    monkeypatch.setenv("KVCA_CREATE_LIMIT", "10")
    await context.reset_shared()
    ctx = await context.shared()
    assert budget_for(ctx).limit == 10 and budget_for(ctx).spacing == pytest.approx(1.05)


async def test_issuance_and_renewals_of_two_instances_share_one_create_budget(app, ctx):
    """A fleet issued by one instance (issue_many, what `kvca request --from` and the batch route run)
    while another sweeps due renewals: every create of both waits for the same schedule, so Key
    Vault's limit is kept and nothing is throttled or made twice."""
    from kvca_core.operations import IssueRequest

    material = await recipe_ca_material("corp-ca")
    await import_recipe_ca(ctx.vault, "corp-ca", material=material)
    due = [f"due-{i:02d}" for i in range(15)]
    await import_leaves(ctx.vault, material[2], material[3], due, days=61)
    app.clock.advance(days=45)
    fleet = [IssueRequest(name=f"dev-{i:02d}", ca="corp-ca", dns_names=(f"dev-{i:02d}.corp.internal",),
                          profile="client") for i in range(15)]
    app.throttling(True)
    with timed_requests(app) as log:
        async with Context.open(Settings.from_env()) as other:  # a second instance, its own clients and budget
            issued, swept = await asyncio.gather(operations.issue_many(ctx, fleet), operations.sweep(other))
    assert [o.action for o in issued] == ["issued"] * len(fleet), [o.reason for o in issued]
    assert swept.renewed == len(due) and swept.failed == 0, swept.failures
    creates = log.times(creates=True)
    assert len(creates) == len(fleet) + len(due)  # none throttled and tried again, none twice
    assert most_in_window(creates, 10.0) <= 20
