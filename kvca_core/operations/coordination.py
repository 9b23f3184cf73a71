"""What kvca's instances agree on before a certificate create: one create budget per vault, and one
claim per renewal. Both are rows of the CA's ledger (`Ledger.insert_once`, true for exactly one
caller across processes), the one store every instance already writes and may only insert into.

    await before_create(ctx, name, judged, policy, claim=True)   -> None (go ahead) or why not
    async with waiting_until(deadline): ...                       how long a create may be waited for
    await within(seconds, coro)                                    cancel `coro` if it has not reached
                                                                   its create by then; never after

Why the ledger, and not a blob lease or an ETag token bucket on the host's storage account: the
ledger needs no new resource, role or setting, and an insert that fails on a taken key is all
the coordination needs (no read-modify-write loop that 40 instances would contend on, no lease
to renew or lose mid-create). Why not the budget divided by the plan's maximum instance count:
Flex Consumption may run 40 instances, which leaves each half a create per 10 s while most sit
idle; a shared budget lets one busy instance use all of it.

The create budget (`CreateBudget`) is a schedule of slots: slot s starts at s x spacing seconds
of Unix time, spacing = (10 s + MARGIN) / limit. Whoever inserts ("create-slot",
"<vault>.<s>") owns slot s and starts its create at that time, so creates start at least
`spacing` apart across every instance, and no 10 seconds hold more than `limit` of them,
however Key Vault aligns its windows (fixed windows of a counter that the first request starts,
as far as anyone can tell). MARGIN absorbs the instances' clock differences and the time a
request takes to reach the vault. Rows are only inserted: one per create, a few hundred bytes.

The renewal claim ("renew", "<name>.<version>.<hour>.<n>") is taken before anything else, so a
duplicate trigger (Event Grid delivers at least once, and again while a slow invocation still
runs; several instances sweeping at once) spends nothing: the first to insert renews, the rest say
so and move on. A claimer that gives up before its create (no create slot in time, cancelled by
`within`) inserts ("renew-released", same key) with its claim's token, and the next trigger claims
generation n + 1. A claimer that dies leaves its claim for the rest of the hour; the next hour's
sweep or redelivery renews the certificate (it is due 30 days before it expires: an hour is nothing).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import math
import os
import secrets
import socket
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, TypeVar

from kvca_core import clock, telemetry
from kvca_core.errors import Throttled
from kvca_core.model import CertificatePolicy, CertificateVersion
from kvca_core.operations.ratelimit import CREATE_WINDOW, WINDOW_MARGIN

logger = logging.getLogger("kvca_core.operations")
T = TypeVar("T")

SLOT_KIND, CLAIM_KIND, RELEASE_KIND = "create-slot", "renew", "renew-released"
# Claims of one version in one hour: each a trigger that gave its claim back before creating.
MAX_GENERATIONS = 16
# Seconds added to every 10-second window of the schedule (see the module's docstring): 20 creates
# per 10.5 s, 95 % of Key Vault's ceiling.
MARGIN = WINDOW_MARGIN
# An HSM key costs two of the budget's units: Key Vault creates 10 per 10 s of them, 20 of software
# keys, and counts them against one weighted sum (learn.microsoft.com/azure/key-vault/general/service-limits).
HSM_COST = 2
# How long a create may be waited for when the caller set no bound (`waiting_until`, `within`):
# an HTTP caller, the CLI.
DEFAULT_WAIT = 20.0


def instance_id() -> str:
    """Who holds a slot or claim, for whoever reads the ledger: the Functions instance
    (WEBSITE_INSTANCE_ID, learn.microsoft.com/azure/app-service/reference-app-settings), else host:pid."""
    return (os.environ.get("WEBSITE_INSTANCE_ID") or f"{socket.gethostname()}:{os.getpid()}")[:100]


class NotStarted(Throttled):
    """Nothing was created: the create could not start within the time the caller may wait. An
    HTTP caller gets 503 with Retry-After, Event Grid redelivers, the sweep leaves it for its next
    run. Its kind is Throttled's: callers act on it the same way."""

    @property
    def kind(self) -> str:
        return "Throttled"


# --- how long a create may be waited for -------------------------------------------------------
@dataclass
class Bound:
    """The latest time (Unix seconds) a create may start, and whether the task passed the point
    after which nothing may cancel it (`commit`)."""

    deadline: float
    committed: bool = False

    def commit(self) -> None:
        self.committed = True


_bound: contextvars.ContextVar[Bound | None] = contextvars.ContextVar("kvca_create_bound", default=None)


@contextmanager
def waiting_until(deadline: float) -> Iterator[Bound]:
    """Inside (this task and the tasks it starts), a create is waited for until `deadline` (Unix
    seconds) at the latest; past it `before_create` raises NotStarted."""
    bound = Bound(deadline)
    token = _bound.set(bound)
    try:
        yield bound
    finally:
        _bound.reset(token)


async def within(seconds: float, work: Awaitable[T], *, what: str) -> T:
    """`await work`, cancelled if it has not committed to a create (`before_create`) `seconds` from
    now: then NotStarted, and nothing was created. Once committed it runs to its end, however long
    that takes: a create is never left without its merge by a bound.

    For Event Grid, which counts a delivery failed after 30 s and delivers it again (while the first
    invocation may still run): the waiting is bounded, so the answer comes in time, and a failed
    delivery is retried on Event Grid's own backoff instead of inside the invocation. Work that
    creates nothing (a renewal that finds a request pending and signs it) may be cut too: the
    request stays pending, and the redelivery (or the sweep) signs it."""
    with waiting_until(time.time() + seconds) as bound:
        task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done and not bound.committed:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            raise NotStarted(f"not started within {seconds:g} s: waiting for Key Vault's create budget "
                             f"(or the vault)", subject=what, retry_after=CREATE_WINDOW) from None
    return await task


# --- the create budget -------------------------------------------------------------------------
class CreateBudget:
    """At most `limit` creates start in any 10 seconds in one vault, counted by every instance that
    shares the ledger (see the module's docstring). `clock` is Unix time: the instances' clocks are
    synchronised (NTP) where the vault's Date header, at one-second resolution, is too coarse."""

    def __init__(self, ledger: Any, vault_name: str, limit: int, *, window: float = CREATE_WINDOW,
                 margin: float = MARGIN, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.ledger, self.vault = ledger, vault_name
        self.limit, self.spacing = limit, (window + margin) / max(1, limit)
        self.clock, self.sleep = clock, sleep
        self._next = 0  # the lowest slot this process has not tried yet
        self.claimed = 0  # slots this process inserted
        self.lost = 0  # slots it found taken

    def slot_time(self, slot: int) -> float:
        return slot * self.spacing

    def earliest(self, cost: int = 1) -> float:
        """The earliest a create could start, as far as this process knows (other instances may
        have taken that slot already)."""
        return self.slot_time(max(math.ceil(self.clock() / self.spacing), self._next) + cost - 1)

    async def acquire(self, *, cost: int = 1, deadline: float | None = None, purpose: str = "") -> float:
        """Own `cost` consecutive slots, then wait for the last one's time; returns that time. A
        slot whose time would be past `deadline` is not claimed: NotStarted instead."""
        while True:
            first = max(math.ceil(self.clock() / self.spacing), self._next)
            last = first + cost - 1
            if deadline is not None and self.slot_time(last) > deadline:
                raise NotStarted(f"Key Vault's create budget ({self.limit} per {CREATE_WINDOW:g} s, shared by kvca's "
                                 f"instances) is taken until {_hhmmss(self.slot_time(first))} UTC",
                                 subject=purpose or f"vault '{self.vault}'",
                                 retry_after=max(1.0, self.slot_time(last) - self.clock()))
            self._next = last + 1
            if await self._claim(first, cost, purpose):
                break
        start = self.slot_time(last)
        wait = start - self.clock()
        if wait > 0:
            await self.sleep(wait)
        return start

    async def _claim(self, first: int, cost: int, purpose: str) -> bool:
        for slot in range(first, first + cost):
            data = {"at": f"{self.slot_time(slot):.3f}", "by": instance_id(), "for": purpose[:200]}
            if not await self.ledger.insert_once(SLOT_KIND, f"{self.vault}.{slot}", data):
                self.lost += 1
                return False  # a slot of a pair already taken leaves the other unused: it stays spent
            self.claimed += 1
        return True


def _hhmmss(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.timezone.utc).strftime("%H:%M:%S")


# One budget per process and vault: every trigger of the process shares its frontier (`_next`).
_budgets: "weakref.WeakKeyDictionary[Any, CreateBudget]" = weakref.WeakKeyDictionary()


def budget_for(ctx) -> CreateBudget:
    budget = _budgets.get(ctx.vault)
    if budget is None or budget.ledger is not ctx.ledger or budget.limit != ctx.settings.create_limit:
        budget = _budgets[ctx.vault] = CreateBudget(ctx.ledger, ctx.vault.vault_name, ctx.settings.create_limit)
    return budget


# --- the renewal claim -------------------------------------------------------------------------
def claim_key(name: str, version: str | None, now: dt.datetime) -> str:
    return f"{name}.{version or 'none'}.{now.astimezone(dt.timezone.utc):%Y%m%d%H}"


@dataclass
class Claim:
    """One trigger's claim on renewing one version: the row's key (empty until it tries one) and
    the claim's token."""

    key: str = ""
    token: str = field(default_factory=lambda: secrets.token_hex(8))


async def claim_renewal(ledger: Any, base: str, claim: Claim) -> str:
    """Claim the renewal `base` (`claim_key`): "" for the one trigger that inserts the first
    generation not given back (`claim.key` is then its row), else why not (`claim.key` empty).
    Interrupted while inserting, `claim.key` names the row it may hold: `release` gives it back."""
    data = {"token": claim.token, "at": clock.now().isoformat(timespec="seconds"), "by": instance_id(),
            "source": telemetry.actor()[:100]}
    for generation in range(MAX_GENERATIONS):
        claim.key = f"{base}.{generation}"
        if await ledger.insert_once(CLAIM_KIND, claim.key, data):
            return ""
        key, claim.key = claim.key, ""  # someone else's: never ours to give back
        held = await ledger.get(CLAIM_KIND, key) or {}
        released = await ledger.get(RELEASE_KIND, key) or {}
        if not held.get("token") or released.get("token") != held.get("token"):
            return f"being renewed by another trigger (it claimed this version at {held.get('at', '?')}; claim {key})"
    return f"its renewal was claimed and given back {MAX_GENERATIONS} times this hour; the next hour's tries again"


async def release(ledger: Any, claim: Claim) -> None:
    """Give a claim back, before any create: the next trigger claims the next generation. Never
    raises: a claim that could not be given back stays until the hour ends."""
    try:
        await ledger.insert_once(RELEASE_KIND, claim.key, {"token": claim.token})
    except Exception:  # the ledger's trouble is said where it matters: the signing's record
        logger.warning("kvca claim=%s could not be given back; it holds until the hour ends", claim.key, exc_info=True)


async def before_create(ctx, name: str, judged: CertificateVersion, policy: CertificatePolicy, *,
                        claim: bool = True) -> str | None:
    """What a renewal does right before its create: None to go ahead, else why not.

    With `claim`: this version's renewal claim first (`claim_renewal`): a duplicate trigger stops
    here, having spent nothing. Then a slot of the vault's create budget, waited for until the bound
    in force (`waiting_until`, `within`; else DEFAULT_WAIT): NotStarted past it, the claim given
    back. Then the point of no return (`Bound.commit`): the caller creates."""
    held = Claim()
    bound = _bound.get()
    deadline = bound.deadline if bound is not None else time.time() + DEFAULT_WAIT
    try:
        if claim:
            why_not = await claim_renewal(ctx.ledger, claim_key(name, judged.version, clock.now()), held)
            if why_not:
                return why_not
        cost = HSM_COST if policy.key.hsm else 1
        await budget_for(ctx).acquire(cost=cost, deadline=deadline, purpose=f"certificate '{name}'")
    except BaseException:  # NotStarted, a cancellation by `within`, the ledger's failure: nothing created
        if held.key:
            await release(ctx.ledger, held)
        raise
    if bound is not None:
        bound.commit()
    return None
