"""sweep: walk the vault; sign what is pending, renew what the lifecycle says is due."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Callable

from kvca_core import cawatch, clock, lifecycle, notify, telemetry
from kvca_core.errors import KvcaError, NotManaged
from kvca_core.model import CertificateVersion
from kvca_core.operations.common import CACache, current, log_outcome, pending_status
from kvca_core.operations.ratelimit import CREATE_LIMIT, CREATE_WINDOW, CreateRate
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

logger = logging.getLogger("kvca_core.operations")


class Rotations:
    """Per sweep (or inventory): each CA's current version read once (was it made by `kvca ca
    rotate`?), and the pace of the renewals a rotation causes: at most Key Vault's create limit,
    however many leaves the window makes due in one sweep."""

    def __init__(self) -> None:
        self.reads: dict[str, asyncio.Future] = {}
        self.rate = CreateRate(CREATE_LIMIT, CREATE_WINDOW)

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


async def _sign_listed_pending(ctx, listed: CertificateVersion, dry_run: bool, cas: CACache):
    """A list item without a certificate: a pending request to sign, or (nothing in progress) a
    withdrawn request's leftover or a newer version answered as current over a completed one; the
    current version (the newest completed one) then decides. -> (Outcome or None, the version)."""
    name = listed.name
    pending = await ctx.vault.get_pending(name)
    if pending is not None and pending.in_progress:
        if dry_run:
            return Outcome(name, WOULD_SIGN, reason=pending_status(pending)), listed
        return await sign_pending_now(ctx, name, pending=pending, cas=cas), listed
    version = await current(ctx, name)
    if not version.completed:
        return Outcome(name, SKIPPED, reason=f"nothing to sign: {pending_status(pending)}"), version
    lifecycle.managed_ca(version, version.policy)
    return None, version


async def _sweep_one(ctx, listed: CertificateVersion, dry_run: bool, cas: CACache, rotations: Rotations) -> Outcome:
    """One listed certificate. What the list item holds (tags, nbf/exp, x5t) decides most of it; a
    certificate that is not due costs one call, the pending check: the list item shows the current
    version only, so a "New Version" made by hand on a certificate whose current version is
    completed is visible nowhere else. Whether a leaf is one of a rotated CA's older version costs
    one read per CA per sweep (`rotations`), none per leaf."""
    name = listed.name
    try:
        ca_name = lifecycle.managed_ca(listed)  # the tag; the policy issuer is checked before signing
        if not listed.completed:
            outcome, listed = await _sign_listed_pending(ctx, listed, dry_run, cas)
            if outcome is not None:
                return outcome
        rotation = await rotations.of(ctx, ca_name)
        verdict = lifecycle.verdict(listed, now=clock.now(), rules=lifecycle.Rules.of(ctx.settings),
                                    rotation=rotation)
        if verdict.state == lifecycle.REVOKED:
            return Outcome(name, SKIPPED, version=listed.version, reason=verdict.reason)
        if verdict.action == lifecycle.RENEW:
            if dry_run:
                return Outcome(name, WOULD_RENEW, reason=verdict.reason)
            if verdict.moving:
                await rotations.rate.wait()  # leaves of a rotated CA move within the create limit
            outcome = await renew_now(ctx, name, force=False, version=None, cas=cas, rotations=rotations)
            if verdict.moving and outcome.action == RENEWED:
                outcome = replace(outcome, reason=f"{verdict.reason}; {outcome.reason}")
            return outcome
        pending = await ctx.vault.get_pending(name)
        if pending is not None and pending.in_progress:
            # A "New Version" made by hand (the portal) on a certificate that is not due.
            if dry_run:
                return Outcome(name, WOULD_SIGN, reason="a new version is pending")
            return await sign_pending_now(ctx, name, pending=pending, cas=cas)
        return Outcome(name, SKIPPED, reason=verdict.reason)
    except NotManaged as exc:
        return Outcome(name, SKIPPED, reason=str(exc))
    except KvcaError as exc:
        return Outcome(name, FAILED, reason=str(exc))
    except Exception as exc:  # one broken certificate never stops the sweep
        logger.exception("kvca op=sweep certificate=%s outcome=error kind=%s", name, type(exc).__name__)
        return Outcome(name, FAILED, reason=f"unexpected error ({type(exc).__name__})")


async def sweep(ctx, *, dry_run: bool = False, progress: Callable[[Outcome], None] | None = None) -> SweepSummary:
    """Walk the vault page by page with `KVCA_CONCURRENCY` workers; sign what is pending and renew
    what is due. One failure never stops the others; the summary counts everything."""
    started = time.monotonic()
    queue: asyncio.Queue = asyncio.Queue(maxsize=ctx.settings.concurrency * 2)
    outcomes: list[Outcome] = []
    scanned = managed = 0
    listing_error: str | None = None
    cas = CACache()  # each CA checked against the vault once per sweep
    watch = cawatch.CAWatch.of(ctx.settings)  # the CAs of the same listing
    rotations = Rotations()  # and whether each was rotated, once per sweep

    async def worker() -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            outcome = await _sweep_one(ctx, item, dry_run, cas, rotations)
            if not dry_run and outcome.action != SKIPPED:
                log_outcome("sweep", outcome)
            outcomes.append(outcome)
            if progress is not None:
                try:
                    progress(outcome)
                except Exception:  # a progress bar must not break the sweep
                    logger.debug("sweep progress callback failed", exc_info=True)

    workers = [asyncio.create_task(worker()) for _ in range(ctx.settings.concurrency)]
    try:
        async for listed in ctx.vault.list_certificates(include_pending=True):
            scanned += 1
            watch.observe(listed)
            if not lifecycle.is_managed_leaf(listed):
                continue
            managed += 1
            await queue.put(listed)
    except KvcaError as exc:
        listing_error = f"listing the vault stopped after {scanned} certificates: {exc}"
        telemetry.record("sweep", "error", level=logging.WARNING, reason=listing_error)
    finally:
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    return await _summarize(ctx, outcomes, scanned, managed, listing_error, watch, dry_run, started)


async def _summarize(ctx, outcomes: list[Outcome], scanned: int, managed: int, listing_error: str | None,
                     watch: cawatch.CAWatch, dry_run: bool, started: float) -> SweepSummary:
    def count(*actions: str) -> int:
        return sum(1 for o in outcomes if o.action in actions)

    failures = [(o.name, o.reason) for o in outcomes if o.action == FAILED]
    if listing_error:
        failures.append(("(vault listing)", listing_error))
    warnings = await watch.warnings(ctx)
    summary = SweepSummary(
        scanned=scanned, managed=managed, signed=count(SIGNED, WOULD_SIGN), renewed=count(RENEWED, WOULD_RENEW),
        skipped=count(SKIPPED), failed=len(failures), failures=tuple(failures),
        outcomes=tuple(sorted(outcomes, key=lambda o: o.name)), dry_run=dry_run,
        seconds=time.monotonic() - started, ca_warnings=warnings)
    telemetry.record("sweep", "failed" if summary.failed else "done", scanned=summary.scanned,
                     managed=summary.managed, signed=summary.signed, renewed=summary.renewed,
                     skipped=summary.skipped, failed=summary.failed, dry_run=dry_run,
                     seconds=round(summary.seconds, 1))
    for failed_name, reason in summary.failures:
        telemetry.record("sweep", FAILED, level=logging.WARNING, certificate=failed_name, reason=reason)
    for warning in warnings:
        telemetry.record("ca_warning", f"ca-{warning.state}", level=logging.WARNING, ca=warning.ca,
                         role=warning.role, version=warning.version, days_left=warning.days_left)
    if not dry_run:
        # One notice for all of this sweep's failures, then one per CA warning (once a day).
        # notify.py never raises: the summary stands whatever the webhook answers.
        await notify.renewals_failed(ctx, summary.failures, source="sweep")
        await notify.ca_warnings(ctx, warnings)
    return summary
