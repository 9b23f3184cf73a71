"""`import_vault_records`: what the vault remembers from before the ledger, recorded in it once.

Before the ledger, a CA remembered what it signed only as the vault's certificate versions, and a
revocation only as three tags on a version. This reads every managed certificate's versions and
records each certificate, and each revocation whose tags name its serial, into the ledger. Safe to
run again and from two places at once: the ledger keeps the first record of each, and the result
counts what was new and what was there already.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from kvca_core import clock, lifecycle, telemetry
from kvca_core.authority import read_certificate
from kvca_core.errors import InvalidRequest, KvcaError, NotFound, NotManaged
from kvca_core.ledger import RevocationRecord
from kvca_core.model import CertificateVersion
from kvca_core.revocation.revoke import ledger_record_of
from kvca_core.signing.crl import parse_reason
from kvca_core.vocabulary import REVOKED_AT_TAG, REVOKED_SERIAL_TAG, REVOKED_TAG

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LedgerImport:
    """What `kvca ledger import` did (JSON: `ledger_import`)."""

    OBJECT = "ledger_import"

    certificates_seen: int = 0  # completed versions of managed certificates in the vault
    certificates_recorded: int = 0  # of them, new in the ledger (the rest were there already)
    revocations_seen: int = 0
    revocations_recorded: int = 0
    problems: tuple[str, ...] = ()  # versions left out, and why

    def to_dict(self) -> dict[str, Any]:
        return {"certificates_seen": self.certificates_seen, "certificates_recorded": self.certificates_recorded,
                "revocations_seen": self.revocations_seen, "revocations_recorded": self.revocations_recorded,
                "problems": list(self.problems)}


def _tagged_revocation(version: CertificateVersion, serial: int) -> tuple[str, dt.datetime] | None:
    """(reason, when) from a version's revocation tags that name this serial; vault data, so a tag
    that does not read is taken as `unspecified` at the version's creation rather than dropped."""
    raw = version.tags.get(REVOKED_SERIAL_TAG, "")
    if not raw or raw.lower().lstrip("0") != format(serial, "x"):
        return None
    try:
        reason = parse_reason(version.tags.get(REVOKED_TAG, "unspecified"))
    except InvalidRequest:
        reason = "unspecified"
    try:
        at = dt.datetime.fromisoformat(version.tags.get(REVOKED_AT_TAG, ""))
        at = at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        at = version.created_on or clock.now()
    return reason, at.replace(microsecond=0)


async def _one(ctx, name: str, counts: dict[str, int], problems: list[str]) -> None:
    async for listed in ctx.vault.list_versions(name):
        if not listed.completed:
            continue
        try:
            version = await ctx.vault.get_certificate(name, listed.version)
            ca = lifecycle.managed_ca(version)
            before = await ctx.ledger.certificate(ca, read_certificate(version.cer, name).serial_number)
            record = await ledger_record_of(ctx, version, ca)
        except (NotManaged, NotFound, InvalidRequest) as exc:
            problems.append(f"certificate '{name}' version {listed.version}: {exc.message}")
            continue
        counts["certificates_seen"] += 1
        counts["certificates_recorded"] += before is None
        tagged = _tagged_revocation(version, int(record.serial, 16))
        if tagged is None:
            continue
        counts["revocations_seen"] += 1
        _, new = await ctx.ledger.record_revocation(RevocationRecord.of(
            record, reason=tagged[0], revoked_at=tagged[1], revoked_by="import", recorded_at=clock.now()))
        counts["revocations_recorded"] += new


async def import_vault_records(ctx) -> LedgerImport:
    """Record every managed certificate version the vault holds, and every revocation its tags record."""
    counts = dict.fromkeys(("certificates_seen", "certificates_recorded", "revocations_seen",
                            "revocations_recorded"), 0)
    problems: list[str] = []
    names = [v.name async for v in ctx.vault.list_certificates(include_pending=True) if lifecycle.is_managed_leaf(v)]
    for name in names:
        try:
            await _one(ctx, name, counts, problems)
        except KvcaError as exc:
            problems.append(f"certificate '{name}': {exc}")
    result = LedgerImport(**counts, problems=tuple(problems))
    telemetry.record("ledger_import", "done", **{k: v for k, v in counts.items()}, problems=len(problems))
    return result
