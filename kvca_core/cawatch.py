"""CA certificates nearing expiry: the warnings of the inventory, the sweep summary and /api/health.

    await ca_warnings(ctx)      every kvca CA of the vault within its renewal window, or expired

A kvca CA is an intermediate (tag kvca-role=intermediate: `kvca ca create`, `kvca ca import`)
or a root (tag kvca-role=root: `NAME-root`, made by `kvca ca create`). A leaf's validity is
capped at its CA's notAfter (signing/issue.py), so an intermediate that expires takes every leaf
with it, silently: renewals go on, each shorter than the last, until nothing can be signed.

The window is KVCA_CA_RENEW_BEFORE_DAYS, 398 days by default: the longest leaf validity kvca
signs (signing/policy.py DEFAULT_MAX_VALIDITY_DAYS, the CA/Browser Forum's 398-day limit). From
the moment a CA has less than that left, a leaf asked for at the longest lifetime comes out
shorter: that is when someone should be told, and when rotating the CA (`kvca ca rotate`) keeps
every leaf at its full length.

The listing decides (a list item carries tags and expiry), so a CA far from expiry costs no
call; a CA that is warned about is read once, for its version id (a list item's id is
versionless), as is one whose listed item is a pending version (a rotation in flight).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import Any, Iterable

from kvca_core import clock
from kvca_core.errors import KvcaError
from kvca_core.model import CertificateVersion
from kvca_core.vocabulary import INTERMEDIATE, ROLES, role_of
EXPIRING, EXPIRED = "expiring", "expired"


@dataclass(frozen=True)
class CAWarning:
    """One CA certificate within its renewal window (`state` expiring) or past its notAfter (expired)."""

    ca: str  # the CA certificate's name in the vault
    role: str  # intermediate | root
    version: str | None
    not_after: dt.datetime
    days_left: int  # whole days until notAfter, rounded down; negative once expired
    state: str  # expiring | expired
    message: str
    hint: str

    def to_dict(self) -> dict[str, Any]:
        return {"ca": self.ca, "role": self.role, "version": self.version, "not_after": self.not_after.isoformat(),
                "days_left": self.days_left, "state": self.state, "message": self.message, "hint": self.hint}


def is_ca(version: CertificateVersion) -> bool:
    """Whether the listed item is one of kvca's CA certificates: a role kvca writes (vocabulary.ROLES)."""
    return role_of(version.tags) in ROLES


def _days(delta: dt.timedelta) -> int:
    return math.floor(delta.total_seconds() / 86400)


def _plural(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _adopted(version: CertificateVersion, issuing_cas: Iterable[str]) -> bool:
    """A CA adopted the recipe's way: imported by hand (`az keyvault certificate import`, no role
    tag) and named in KVCA_ISSUING_CAS, so it signs leaves like an intermediate kvca made."""
    return role_of(version.tags) is None and version.name.lower() in {n.lower() for n in issuing_cas}


def warning_for(version: CertificateVersion, now: dt.datetime, renew_before_days: int,
                issuing_cas: Iterable[str] = ()) -> CAWarning | None:
    """The warning for one CA version, or None when it is not a CA kvca uses (a role kvca writes,
    or a name in KVCA_ISSUING_CAS: `issuing_cas`), not completed, or not within `renew_before_days`
    of its notAfter. Vault data is untrusted: a role tag kvca did not write is not a CA."""
    adopted = _adopted(version, issuing_cas)
    role = INTERMEDIATE if adopted else role_of(version.tags)
    if role not in ROLES or not version.completed or version.expires_on is None:
        return None
    not_after = version.expires_on
    left = not_after - now
    if left > dt.timedelta(days=renew_before_days):
        return None
    name, date = version.name, f"{not_after:%Y-%m-%d}"
    if adopted:
        # Its root key is not in the vault (kvca did not make it), so `kvca ca rotate` cannot help.
        hint = f"replace it where it was made and import the new intermediate (kvca ca import), or create " \
               f"a new CA (kvca ca create) and move the certificates to it before {date}"
        effect = "leaves are now capped at that date"
        dead = "it signs nothing more, and the certificates it issued no longer verify"
    elif role == INTERMEDIATE:
        hint = f"kvca ca rotate {name}"
        effect = "leaves are now capped at that date"
        dead = "it signs nothing more, and the certificates it issued no longer verify"
    else:
        # A root cannot be rotated in place: its successor is a new trust anchor that every
        # relying party must be given, so the hint is a new CA, not a command that hides that.
        hint = f"a root cannot be rotated: create a new CA (kvca ca create NEW-NAME), distribute its root " \
               f"and move the certificates to it before {date}"
        effect = "intermediates under it, and so every leaf, are now capped at that date"
        dead = "every certificate under it no longer verifies"
    if left <= dt.timedelta(0):
        ago = -_days(left)
        message = f"CA '{name}' ({role}) expired on {date}, {_plural(ago)} ago: {dead}"
        state = EXPIRED
    else:
        days = _days(left)
        when = f"in {_plural(days)}" if days >= 1 else "today"
        message = f"CA '{name}' ({role}) expires on {date}, {when}: {effect}"
        state = EXPIRING
    return CAWarning(ca=name, role=role, version=version.version, not_after=not_after, days_left=_days(left),
                     state=state, message=message, hint=hint)


class CAWatch:
    """The CA items of one listing of the vault, turned into warnings at the end. The sweep feeds
    it the items it lists anyway (`observe`); `ca_warnings` feeds it a listing of its own."""

    def __init__(self, renew_before_days: int, issuing_cas: Iterable[str] = ()) -> None:
        self.renew_before_days = renew_before_days
        self.issuing_cas = tuple(issuing_cas)
        self.items: list[CertificateVersion] = []

    @classmethod
    def of(cls, settings) -> "CAWatch":
        return cls(settings.ca_renew_before_days, settings.issuing_cas)

    def observe(self, listed: CertificateVersion) -> bool:
        """Keep the item if it is a CA kvca uses; True when it was one."""
        if is_ca(listed) or _adopted(listed, self.issuing_cas):
            self.items.append(listed)
            return True
        return False

    async def warnings(self, ctx, now: dt.datetime | None = None) -> tuple[CAWarning, ...]:
        now = now or clock.now()
        found = []
        for item in self.items:
            # A list item carries tags and dates but a versionless id (Key Vault's list answers
            # /certificates/NAME). Only a CA that is warned about, or whose item shows a pending
            # version (a rotation in flight), is read: its current, completed version is the one
            # that signs, expires and is named in the warning.
            if item.completed and warning_for(item, now, self.renew_before_days, self.issuing_cas) is None:
                continue
            try:
                item = await ctx.vault.get_certificate(item.name)
            except KvcaError:
                continue
            warning = warning_for(item, now, self.renew_before_days, self.issuing_cas)
            if warning is not None:
                found.append(warning)
        return sort_warnings(found)


def sort_warnings(warnings: Iterable[CAWarning]) -> tuple[CAWarning, ...]:
    """Soonest notAfter first (expired ones lead), then by name."""
    return tuple(sorted(warnings, key=lambda w: (w.not_after, w.ca)))


async def ca_warnings(ctx) -> tuple[CAWarning, ...]:
    """Every kvca CA of the vault within KVCA_CA_RENEW_BEFORE_DAYS of its notAfter, or past it,
    soonest first. One listing of the vault."""
    watch = CAWatch.of(ctx.settings)
    async for listed in ctx.vault.list_certificates(include_pending=True):
        watch.observe(listed)
    return await watch.warnings(ctx)


# /api/health: at most one listing per instance every HEALTH_MAX_AGE, and none longer than
# HEALTH_TIMEOUT (a probe must answer quickly, and Key Vault lists 25 certificates per page).
HEALTH_MAX_AGE = 300.0
HEALTH_TIMEOUT = 10.0


async def cached_ca_warnings(ctx, *, max_age: float | None = None,
                             timeout: float | None = None) -> tuple[tuple[CAWarning, ...], str]:
    """(warnings, error): `ca_warnings` at most once per `max_age` seconds per context, within
    `timeout` seconds. A vault that cannot be listed gives no warnings and the reason, never an
    exception; a failure is not cached, so the next call tries again."""
    max_age = HEALTH_MAX_AGE if max_age is None else max_age
    timeout = HEALTH_TIMEOUT if timeout is None else timeout
    cache = ctx.__dict__.setdefault("_kvca_ca_warnings", {})
    now = time.monotonic()
    if "at" in cache and now - cache["at"] < max_age:
        return cache["warnings"], ""
    try:
        warnings = await asyncio.wait_for(ca_warnings(ctx), timeout)
    except asyncio.TimeoutError:
        return (), f"listing the vault took longer than {timeout:g} s; CA warnings unknown"
    except KvcaError as exc:
        return (), f"could not list the vault: {exc}"
    cache.update(at=now, warnings=warnings)
    return warnings, ""
