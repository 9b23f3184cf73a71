"""The ledger as people read it: `kvca ledger list|show|export`, `kvca show --serial`, and the
certificates of the inventory that live outside the vault (devices' own keys)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, AsyncIterator

from kvca_core import clock
from kvca_core.errors import InvalidRequest, NotFound
from kvca_core.ledger import CertificateRecord, RevocationRecord, serial_text
from kvca_core.vocabulary import check_name

VALID, REVOKED, EXPIRED = "valid", "revoked", "expired"


@dataclass(frozen=True)
class LedgerEntry:
    """One certificate of the ledger with its state (JSON: `ledger_entry`; many: `ledger`)."""

    OBJECT = "ledger_entry"

    record: CertificateRecord
    revocation: RevocationRecord | None
    state: str  # valid | revoked | expired

    def to_dict(self) -> dict[str, Any]:
        r = self.record
        body = {"ca": r.ca, "ca_version": r.ca_version, "serial": r.serial, "subject": r.subject,
                "sans": list(r.sans), "not_before": r.not_before.isoformat(), "not_after": r.not_after.isoformat(),
                "sha256": r.sha256, "profile": r.profile, "location": r.location, "name": r.name,
                "version": r.version, "requested_by": r.requested_by, "recorded_at": r.recorded_at.isoformat(),
                "state": self.state, "revocation": None}
        if self.revocation is not None:
            v = self.revocation
            body["revocation"] = {"reason": v.reason, "revoked_at": v.revoked_at.isoformat(),
                                  "revoked_by": v.revoked_by}
        return body


@dataclass(frozen=True)
class LedgerListing:
    """`kvca ledger list --json` (JSON: `ledger`)."""

    OBJECT = "ledger"

    entries: tuple[LedgerEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"certificates": [e.to_dict() for e in self.entries]}


def _state(record: CertificateRecord, revocation: RevocationRecord | None, now: dt.datetime) -> str:
    if revocation is not None:
        return REVOKED
    return EXPIRED if record.not_after <= now else VALID


async def entries(ctx, *, ca: str | None = None, serial: str | None = None, state: str | None = None,
                  expiring_within_days: int | None = None, location: str | None = None
                  ) -> AsyncIterator[LedgerEntry]:
    """The ledger's certificates that pass every filter given, with their state; ordered by CA, then
    serial (the ledger's order). One read of each CA's revocations, none per certificate."""
    if ca is not None:
        check_name(ca, "CA")
    now = clock.now()
    horizon = now + dt.timedelta(days=expiring_within_days) if expiring_within_days is not None else None
    revoked: dict[str, dict[str, RevocationRecord]] = {}
    if serial is not None:
        found = [r for r in await ctx.ledger.find_serial(serial_text(serial)) if ca is None or r.ca.lower() == ca.lower()]
        source = _each(found)
    else:
        source = ctx.ledger.certificates(ca, expiring_before=horizon, location=location)
    async for record in source:
        key = record.ca.lower()
        if key not in revoked:
            revoked[key] = {r.serial: r for r in await ctx.ledger.revocations(record.ca)}
        revocation = revoked[key].get(record.serial)
        entry = LedgerEntry(record, revocation, _state(record, revocation, now))
        if state is not None and entry.state != state:
            continue
        if location is not None and record.location != location:
            continue
        if horizon is not None and record.not_after > horizon:
            continue
        yield entry


async def _each(records) -> AsyncIterator[CertificateRecord]:
    for record in records:
        yield record


async def listing(ctx, **filters) -> LedgerListing:
    """`entries`, soonest expiry first."""
    found = [e async for e in entries(ctx, **filters)]
    return LedgerListing(tuple(sorted(found, key=lambda e: (e.record.not_after, e.record.ca, e.record.serial))))


async def entry(ctx, *, serial: str, ca: str | None = None) -> LedgerEntry:
    """One certificate by serial (and CA, when two CAs used the same serial), or NotFound."""
    found = [e async for e in entries(ctx, ca=ca, serial=serial)]
    if not found:
        raise NotFound(f"no certificate of serial {serial_text(serial)} in the ledger"
                       + (f" of CA '{ca}'" if ca else ""), subject="ledger")
    if len(found) > 1:
        cas = ", ".join(sorted(e.record.ca for e in found))
        raise InvalidRequest(f"serial {serial_text(serial)} belongs to certificates of several CAs ({cas})",
                             subject="ledger", hint="name one with --ca")
    return found[0]
