"""sweep: list the vault, then sign what is pending and renew what is due, most urgent first,
within a budget of time (KVCA_SWEEP_BUDGET_SECONDS) and of vault calls (KVCA_SWEEP_READ_SHARE).

    1. list every certificate (pages of 25) and judge each list item (lifecycle.verdict, each
       CA's rotation read once);
    2. work through, KVCA_CONCURRENCY at a time: due renewals and pending signings together,
       the longest waiting first (a renewal since the verdict's `at`, a request since it was
       made), then the pending check of every other certificate (a "New Version" made by hand on a
       certificate that is not due shows only there);
    3. past the budget, start nothing more: what was started runs to its end (a renewal to its
       merge), the rest is reported as left, with the time of the next scheduled run.

Every renewal waits for a slot of the vault's create budget, shared by all instances, and claims
its certificate first (coordination.py); every call but a create waits for the sweep's share of
Key Vault's transaction limit (ratelimit.py ReadPace, counted per request by the vault adapter).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, replace
from typing import Callable

from kvca_core import cawatch, clock, lifecycle, notify, telemetry
from kvca_core.errors import KvcaError, NotManaged
from kvca_core.model import CertificateVersion
from kvca_core.operations.common import CACache, current, log_outcome, pending_status
from kvca_core.operations.coordination import NotStarted, budget_for, waiting_until
from kvca_core.operations.ratelimit import ReadPace
from kvca_core.operations.renewal import renew_now
from kvca_core.operations.results import (
    FAILED,
    RENEWED,
    SIGNED,
    SKIPPED,
    WOULD_RENEW,
    WOULD_SIGN,
    Outcome,
    SweepSummary,
)
from kvca_core.operations.signing import sign_pending_now
from kvca_core.settings import next_occurrence

logger = logging.getLogger("kvca_core.operations")

SIGN, RENEW, CHECK = "sign", "renew", "check"
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


class Rotations:
    """Per sweep (or inventory): each CA's current version read once (was it made by `kvca ca
    rotate`?). The renewals a rotation causes are paced like every other create (coordination.py)."""

    def __init__(self) -> None:
        self.reads: dict[str, asyncio.Future] = {}

    async def of(self, ctx, ca_name: str) -> lifecycle.Rotation | None:
        key = ca_name.lower()
        if key not in self.reads:
            self.reads[key] = asyncio.ensure_future(self._read(ctx, ca_name))
        return await asyncio.shield(self.reads[key])

    @staticmethod
    async def _read(ctx, ca_name: str) -> lifecycle.Rotation | None:
        try:
            return lifecycle.rotation_of(ca_name, await ctx.vault.get_certificate(ca_name))
        except KvcaError:
            return None  # the CA's own trouble is said when one of its leaves is signed


@dataclass(frozen=True)
class Work:
    """One managed certificate to work on: what to do, since when it waits (None: a pending check)."""

    kind: str  # SIGN | RENEW | CHECK
    listed: CertificateVersion
    since: dt.datetime | None
    verdict: lifecycle.Verdict | None = None


@dataclass
class _Run:
    """What one sweep shares between its workers."""

    ctx: object
    dry_run: bool
    deadline: float  # Unix seconds: no work starts after it
    cas: CACache
    rotations: Rotations
    outcomes: list[Outcome]
    progress: Callable[[Outcome], None] | None
    left: int = 0  # due renewals and pending signings not started
    unchecked: int = 0  # pending checks not made


async def plan(ctx, listed: list[CertificateVersion], rotations: Rotations,
               now: dt.datetime) -> tuple[list[Work], list[Outcome]]:
    """The order of the work (most urgent first, then the checks in listing order), and the outcomes
    that need no call: a certificate kvca does not manage, a revoked one."""
    rules = lifecycle.Rules.of(ctx.settings)
    urgent: list[Work] = []
    checks: list[Work] = []
    settled: list[Outcome] = []
    for item in listed:
        try:
            ca_name = lifecycle.managed_ca(item)  # the tag; the policy issuer is checked before signing
        except NotManaged as exc:
            settled.append(Outcome(item.name, SKIPPED, reason=str(exc)))
            continue
        if not item.completed:
            urgent.append(Work(SIGN, item, item.created_on or _EARLIEST))
            continue
        verdict = lifecycle.verdict(item, now=now, rules=rules, rotation=await rotations.of(ctx, ca_name))
        if verdict.state == lifecycle.REVOKED:
            settled.append(Outcome(item.name, SKIPPED, version=item.version, reason=verdict.reason))
        elif verdict.action == lifecycle.RENEW:
            urgent.append(Work(RENEW, item, verdict.at or _EARLIEST, verdict))
        else:
            checks.append(Work(CHECK, item, None, verdict))
    urgent.sort(key=lambda w: w.since)  # stable: equal times keep the listing's order
    return urgent + checks, settled


async def _sign_listed_pending(run: _Run, listed: CertificateVersion) -> tuple[Outcome | None, CertificateVersion]:
    """A list item without a certificate: a pending request to sign, or (nothing in progress) a
    withdrawn request's leftover or a newer version answered as current over a completed one; the
    current version (the newest completed one) then decides. -> (Outcome or None, the version)."""
    ctx, name = run.ctx, listed.name
    pending = await ctx.vault.get_pending(name)
    if pending is not None and pending.in_progress:
        if run.dry_run:
            return Outcome(name, WOULD_SIGN, reason=pending_status(pending)), listed
        return await sign_pending_now(ctx, name, pending=pending, cas=run.cas), listed
    version = await current(ctx, name)
    if not version.completed:
        return Outcome(name, SKIPPED, reason=f"nothing to sign: {pending_status(pending)}"), version
    lifecycle.managed_ca(version, version.policy)
    return None, version


async def _renew(run: _Run, name: str, verdict: lifecycle.Verdict) -> Outcome:
    if run.dry_run:
        return Outcome(name, WOULD_RENEW, reason=verdict.reason)
    outcome = await renew_now(run.ctx, name, force=False, version=None, cas=run.cas, rotations=run.rotations)
    if verdict.moving and outcome.action == RENEWED:
        outcome = replace(outcome, reason=f"{verdict.reason}; {outcome.reason}")
    return outcome


async def _check(run: _Run, name: str, verdict: lifecycle.Verdict) -> Outcome:
    """The pending check: the list item shows the current version only, so a "New Version" made by
    hand on a certificate whose current version is completed is visible nowhere else."""
    pending = await run.ctx.vault.get_pending(name)
    if pending is not None and pending.in_progress:
        if run.dry_run:
            return Outcome(name, WOULD_SIGN, reason="a new version is pending")
        return await sign_pending_now(run.ctx, name, pending=pending, cas=run.cas)
    return Outcome(name, SKIPPED, reason=verdict.reason)


async def _do(run: _Run, work: Work) -> Outcome:
    ctx, name = run.ctx, work.listed.name
    if work.kind == SIGN:
        outcome, version = await _sign_listed_pending(run, work.listed)
        if outcome is not None:
            return outcome
        # A leftover over a completed version: that version decides, as if listed.
        ca_name = lifecycle.managed_ca(version)
        verdict = lifecycle.verdict(version, now=clock.now(), rules=lifecycle.Rules.of(ctx.settings),
                                    rotation=await run.rotations.of(ctx, ca_name))
        if verdict.state == lifecycle.REVOKED:
            return Outcome(name, SKIPPED, version=version.version, reason=verdict.reason)
        work = Work(RENEW if verdict.action == lifecycle.RENEW else CHECK, version, None, verdict)
    if work.kind == RENEW:
        return await _renew(run, name, work.verdict)
    return await _check(run, name, work.verdict)


def _left(name: str, why: str) -> Outcome:
    return Outcome(name, SKIPPED, reason=f"left for the next sweep: {why}")


async def _one(run: _Run, work: Work) -> Outcome:
    name = work.listed.name
    try:
        return await _do(run, work)
    except NotManaged as exc:
        return Outcome(name, SKIPPED, reason=str(exc))
    except NotStarted as exc:
        # No create slot before the budget ran out: nothing was created, the next run renews it.
        run.left += 1
        return _left(name, exc.message)
    except KvcaError as exc:
        return Outcome(name, FAILED, reason=str(exc))
    except Exception as exc:  # one broken certificate never stops the sweep
        logger.exception("kvca op=sweep certificate=%s outcome=error kind=%s", name, type(exc).__name__)
        return Outcome(name, FAILED, reason=f"unexpected error ({type(exc).__name__})")


async def _work(run: _Run, work: list[Work], concurrency: int, budget_seconds: float) -> None:
    """`concurrency` workers take the work in order until it is done or the deadline has passed;
    what was taken runs to its end. What nobody took is left, each with an outcome saying so."""
    position = 0
    budget = budget_for(run.ctx)
    spent = f"no create slot before the sweep's budget of {budget_seconds:g} s (KVCA_SWEEP_BUDGET_SECONDS) ends"

    def record(outcome: Outcome) -> None:
        if not run.dry_run and outcome.action != SKIPPED:
            log_outcome("sweep", outcome)
        run.outcomes.append(outcome)
        if run.progress is not None:
            try:
                run.progress(outcome)
            except Exception:  # a progress bar must not break the sweep
                logger.debug("sweep progress callback failed", exc_info=True)

    def take() -> Work | None:
        """The next work to do. A renewal is passed over (left, costing nothing) once the create
        budget has no slot left before the deadline, as far as this process knows: the time goes
        to the signings and checks that need none."""
        nonlocal position
        while position < len(work) and time.time() < run.deadline:
            position += 1
            item = work[position - 1]
            if item.kind == RENEW and not run.dry_run and budget.earliest() > run.deadline:
                run.left += 1
                record(_left(item.listed.name, spent))
                continue
            return item
        return None

    async def worker() -> None:
        while (item := take()) is not None:
            record(await _one(run, item))

    with waiting_until(run.deadline):  # no renewal waits for a create slot past the budget
        workers = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
    await asyncio.gather(*workers)
    why = f"the sweep's budget of {budget_seconds:g} s (KVCA_SWEEP_BUDGET_SECONDS) was spent"
    for item in work[position:]:
        if item.kind == CHECK:
            run.unchecked += 1
        else:
            run.left += 1
        record(_left(item.listed.name, why))


async def sweep(ctx, *, dry_run: bool = False, progress: Callable[[Outcome], None] | None = None,
                budget: float | None = None, reads: ReadPace | None = None) -> SweepSummary:
    """List the vault, then sign what is pending and renew what is due, most urgent first, with
    `KVCA_CONCURRENCY` workers, for `budget` seconds (KVCA_SWEEP_BUDGET_SECONDS) and within `reads`
    (KVCA_SWEEP_READ_SHARE of Key Vault's limit). One failure never stops the others; the summary
    counts everything, and what was left for the next run."""
    started = time.monotonic()
    budget = ctx.settings.sweep_budget_seconds if budget is None else budget
    reads = reads if reads is not None else ReadPace.share(ctx.settings.sweep_read_share)
    watch = cawatch.CAWatch.of(ctx.settings)  # the CAs of the same listing
    run = _Run(ctx, dry_run, time.time() + budget, CACache(), Rotations(), [], progress)
    scanned = 0
    listing_error: str | None = None
    with ctx.vault.paced(reads):
        managed: list[CertificateVersion] = []
        try:
            async for listed in ctx.vault.list_certificates(include_pending=True):
                scanned += 1
                if not watch.observe(listed) and lifecycle.is_managed_leaf(listed):
                    managed.append(listed)
        except KvcaError as exc:
            listing_error = f"listing the vault stopped after {scanned} certificates: {exc}"
            telemetry.record("sweep", "error", level=logging.WARNING, reason=listing_error)
        work, settled = await plan(ctx, managed, run.rotations, clock.now())
        run.outcomes.extend(settled)
        await _work(run, work, ctx.settings.concurrency, budget)
    return await _summarize(ctx, run, scanned, len(managed), listing_error, watch, started, budget, reads)


async def _summarize(ctx, run: _Run, scanned: int, managed: int, listing_error: str | None,
                     watch: cawatch.CAWatch, started: float, budget: float, reads: ReadPace) -> SweepSummary:
    outcomes, dry_run = run.outcomes, run.dry_run

    def count(*actions: str) -> int:
        return sum(1 for o in outcomes if o.action in actions)

    failures = [(o.name, o.reason) for o in outcomes if o.action == FAILED]
    if listing_error:
        failures.append(("(vault listing)", listing_error))
    warnings = await watch.warnings(ctx)
    devices = await _devices_due(ctx)
    # The timer fires on the host's clock (UTC), not the vault's.
    next_run = next_occurrence(ctx.settings.sweep_schedule, dt.datetime.now(dt.timezone.utc))
    summary = SweepSummary(
        scanned=scanned, managed=managed, signed=count(SIGNED, WOULD_SIGN), renewed=count(RENEWED, WOULD_RENEW),
        skipped=count(SKIPPED), failed=len(failures), failures=tuple(failures),
        outcomes=tuple(sorted(outcomes, key=lambda o: o.name)), dry_run=dry_run,
        seconds=time.monotonic() - started, ca_warnings=warnings, devices_due=devices, left=run.left,
        unchecked=run.unchecked,
        next_run=next_run, budget_seconds=budget, reads=reads.count, peak_reads=reads.peak,
        read_cap=reads.limit, read_window=reads.window)
    telemetry.record("sweep", "failed" if summary.failed else "done", scanned=summary.scanned,
                     managed=summary.managed, signed=summary.signed, renewed=summary.renewed,
                     skipped=summary.skipped, failed=summary.failed, left=summary.left,
                     unchecked=summary.unchecked, reads=summary.reads, peak_reads=summary.peak_reads,
                     dry_run=dry_run, seconds=round(summary.seconds, 1))
    for failed_name, reason in summary.failures:
        telemetry.record("sweep", FAILED, level=logging.WARNING, certificate=failed_name, reason=reason)
    if summary.left or summary.unchecked:
        telemetry.record("sweep", "left", level=logging.WARNING, left=summary.left, unchecked=summary.unchecked,
                         next_run=next_run.isoformat() if next_run else None,
                         reason=f"the budget of {budget:g} s was spent")
    for warning in warnings:
        telemetry.record("ca_warning", f"ca-{warning.state}", level=logging.WARNING, ca=warning.ca,
                         role=warning.role, version=warning.version, days_left=warning.days_left)
    for device in devices:
        telemetry.record("device_warning", f"device-{device.state}", level=logging.WARNING, certificate=device.name,
                         ca=device.ca, serial=device.serial, days_left=device.days_left)
    if not dry_run:
        # One notice for all of this sweep's failures, then one per CA warning (once a day).
        # notify.py never raises: the summary stands whatever the webhook answers.
        await notify.renewals_failed(ctx, summary.failures, source="sweep")
        await notify.ca_warnings(ctx, warnings)
        await notify.devices_due(ctx, devices)
    return summary


async def _devices_due(ctx) -> tuple:
    """The devices whose newest certificate is due (they should have re-enrolled by now: the same
    due rule as a renewal) or expired, from the ledger (inventory.external_inventory: one query of
    the still-valid external certificates). A ledger that cannot be read is a warning, never the
    end of the sweep, whose renewals are done."""
    from kvca_core.operations.inventory import external_inventory  # inventory imports the sweep

    try:
        due = await external_inventory(ctx, clock.now(), states=(lifecycle.DUE, lifecycle.EXPIRED))
    except KvcaError as exc:
        telemetry.record("device_warning", "error", level=logging.WARNING, kind=exc.kind, reason=str(exc))
        return ()
    return tuple(sorted(due, key=lambda i: (i.not_after, i.name)))
