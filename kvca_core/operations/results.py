"""What the operations answer: plain values with a `to_dict()` for kvca's JSON contract
(kvca_core/jsonshape.py). Each carries OBJECT, the name of its document."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from kvca_core.ledger.records import VAULT
from kvca_core.model import CertificatePolicy

# A sweep's document lists this many devices that have not re-enrolled, and counts them all.
MAX_DEVICES_LISTED = 100

SIGNED, RENEWED, ISSUED, REQUESTED, SKIPPED, FAILED = "signed", "renewed", "issued", "requested", "skipped", "failed"
CANCELLED = "cancelled"
ALREADY_ISSUED = "already issued"  # the reason issue_many gives a certificate an earlier run issued
WOULD_SIGN, WOULD_RENEW = "would-sign", "would-renew"


@dataclass(frozen=True)
class Outcome:
    """What one operation did to one certificate (JSON: `outcome`)."""

    OBJECT = "outcome"

    name: str
    action: str  # signed | renewed | issued | requested | skipped | failed | cancelled | would-sign | would-renew
    version: str | None = None
    serial: str | None = None  # hex
    reason: str = ""
    not_after: dt.datetime | None = None
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.action in (SIGNED, RENEWED, ISSUED)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["not_after"] = self.not_after.isoformat() if self.not_after else None
        body["warnings"] = list(self.warnings)
        return body


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did (JSON: `sweep`): counts, every managed certificate's outcome, what it left
    for the next run, and how much of the vault's transaction limit it used."""

    OBJECT = "sweep"

    scanned: int = 0  # every certificate listed
    managed: int = 0  # those carrying the kvca-ca tag
    signed: int = 0
    renewed: int = 0
    skipped: int = 0  # the ones left for the next run included
    failed: int = 0
    failures: tuple[tuple[str, str], ...] = ()  # (certificate, reason)
    outcomes: tuple[Outcome, ...] = ()
    dry_run: bool = False
    seconds: float = 0.0
    # The vault's CAs within KVCA_CA_RENEW_BEFORE_DAYS of their notAfter, or past it (cawatch.py).
    ca_warnings: tuple[Any, ...] = ()
    # Devices whose newest certificate is due or expired: they have not re-enrolled (CertificateInfo).
    devices_due: tuple[Any, ...] = ()
    # The budget (KVCA_SWEEP_BUDGET_SECONDS): due renewals and pending signings it did not start,
    # pending checks it did not make, and when the timer (KVCA_SWEEP_SCHEDULE) runs next.
    left: int = 0
    unchecked: int = 0
    next_run: dt.datetime | None = None
    budget_seconds: float = 0.0
    # Calls to the vault other than creates, the most in one window, and the cap (KVCA_SWEEP_READ_SHARE).
    reads: int = 0
    peak_reads: int = 0
    read_cap: int = 0
    read_window: float = 10.5

    def to_dict(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned, "managed": self.managed, "signed": self.signed,
            "renewed": self.renewed, "skipped": self.skipped, "failed": self.failed,
            "failures": [{"name": n, "reason": r} for n, r in self.failures],
            "dry_run": self.dry_run, "seconds": round(self.seconds, 3),
            # Each certificate's outcome, by name: with dry_run, which would be signed or renewed.
            "outcomes": [o.to_dict() for o in self.outcomes],
            "ca_warnings": [w.to_dict() for w in self.ca_warnings],
            "devices_due": [d.to_dict() for d in self.devices_due[:MAX_DEVICES_LISTED]],
            "devices_due_count": len(self.devices_due),
            "left": self.left, "unchecked": self.unchecked,
            "next_run": self.next_run.isoformat() if self.next_run else None,
            "budget_seconds": self.budget_seconds,
            "reads": {"count": self.reads, "peak": self.peak_reads, "cap": self.read_cap,
                      "window_seconds": self.read_window},
        }


@dataclass(frozen=True)
class CertificateInfo:
    """One managed certificate, for the inventory."""

    name: str
    subject: str
    sans: tuple[str, ...]
    ca: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    days_left: int | None
    state: str  # lifecycle.STATES: valid | due | expired | pending | disabled | revoked
    version: str | None = None
    serial: str | None = None
    location: str = VAULT  # VAULT: a Key Vault certificate; EXTERNAL: a device's, from the ledger
    # Every name the access rules check (access.scope_names): what decides whether a caller sees it.
    scope: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        del body["scope"]
        body["sans"] = list(self.sans)
        for key in ("not_before", "not_after"):
            body[key] = body[key].isoformat() if body[key] else None
        return body


@dataclass(frozen=True)
class InventoryReport:
    """The inventory and the CA warnings, from one listing of the vault (JSON: `inventory`)."""

    OBJECT = "inventory"

    certificates: tuple[CertificateInfo, ...]
    ca_warnings: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"certificates": [i.to_dict() for i in self.certificates],
                "ca_warnings": [w.to_dict() for w in self.ca_warnings]}


@dataclass(frozen=True)
class Description:
    """One certificate in detail (`kvca show`; JSON: `certificate`)."""

    OBJECT = "certificate"

    info: CertificateInfo
    managed: bool
    why_not_managed: str
    issuer: str
    sha256: str | None
    tags: Mapping[str, str]
    chain: tuple[str, ...]  # subjects, leaf first, as the secret holds them
    pending: str | None  # status of a pending request, if any
    renew_at: dt.datetime | None  # when the sweep renews it; None: never (lifecycle.Verdict.at)
    policy: CertificatePolicy | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info.to_dict(), "managed": self.managed, "why_not_managed": self.why_not_managed,
            "issuer": self.issuer, "sha256": self.sha256, "tags": dict(self.tags), "chain": list(self.chain),
            "pending": self.pending, "renew_at": self.renew_at.isoformat() if self.renew_at else None,
        }
