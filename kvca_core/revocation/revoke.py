"""revoke: a revocation is a row inserted into the CA's ledger, never an update. The vault keeps a
mirror (three tags and a disabled version) for the portal and for consumers of the versionless
secret, but nothing reads the mirror back: deleting, purging, re-tagging or re-enabling the
certificate changes neither the CRL nor OCSP, which answer from the ledger.

    revoke(ctx, name, reason=...)                 the current version of a vault certificate
    revoke(ctx, name, reason=..., version=V)      one version (or serial=S) of it
    revoke(ctx, reason=..., ca=CA, serial=S)      any certificate the CA signed, in the vault or not
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from cryptography import x509

from kvca_core import clock, lifecycle, notify, telemetry
from kvca_core.authority import read_certificate
from kvca_core.errors import Busy, InvalidRequest, KvcaError, NotFound, NotManaged
from kvca_core.ledger import VAULT, CertificateRecord, RevocationRecord, serial_text
from kvca_core.ledger.records import UNKNOWN_VERSION
from kvca_core.model import CertificateVersion
from kvca_core.operations.recording import record_issued
from kvca_core.signing.crl import parse_reason
from kvca_core.vocabulary import (
    CA_VERSION_TAG,
    REVOKED_AT_TAG,
    REVOKED_SERIAL_TAG,
    REVOKED_TAG,
    ROLE_TAG,
    check_name,
    role_of,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Revocation:
    """What `revoke` did (JSON: `revocation`)."""

    OBJECT = "revocation"

    name: str
    version: str | None
    serial: str  # hex
    reason: str
    revoked_at: dt.datetime
    ca: str
    action: str  # "revoked" | "already-revoked"
    # The CRL blob's URL once a CRL listing the revocation is published there; "" when not (no
    # container configured).
    published: str = ""
    # Why re-signing or publishing failed: the revocation stands regardless, and the next timer run
    # (or the CRL route, which signs on demand) catches up.
    publish_error: str = ""
    # The number of the CRL signed for this revocation, which lists it; every higher number does too.
    crl_number: int | None = None

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["revoked_at"] = self.revoked_at.isoformat()
        return body


def parse_serial(serial: str, name: str) -> int:
    """A serial as people write it (hex, with or without colons), or InvalidRequest."""
    try:
        return int(serial_text(serial), 16)
    except InvalidRequest:
        raise InvalidRequest(f"serial {str(serial)[:80]!r} is not hexadecimal (at most 40 digits)",
                             subject=f"certificate '{name}'") from None


async def _vault_target(ctx, name: str, version: str | None, serial: str | None) -> CertificateVersion:
    if version and serial:
        raise InvalidRequest("give a version or a serial, not both", subject=f"certificate '{name}'")
    if version:
        return await ctx.vault.get_certificate(name, version)
    if not serial:
        return await ctx.vault.get_certificate(name)
    wanted = parse_serial(serial, name)
    async for listed in ctx.vault.list_versions(name):
        full = await ctx.vault.get_certificate(name, listed.version)
        if full.cer is not None and read_certificate(full.cer, f"certificate '{name}'").serial_number == wanted:
            return full
    raise NotFound(f"no version has serial {serial}", subject=f"certificate '{name}'")


async def ledger_record_of(ctx, target: CertificateVersion, ca: str) -> CertificateRecord:
    """The ledger's record of a vault version: the one recorded when kvca signed it, or (a certificate
    signed before kvca kept a ledger) recorded now from the vault's copy, so that it can be revoked."""
    where = f"certificate '{target.name}'"
    cert = read_certificate(target.cer, where)
    record = await ctx.ledger.certificate(ca, cert.serial_number)
    if record is not None:
        if record.sha256 != hashlib.sha256(target.cer).hexdigest():
            raise NotManaged(f"the ledger holds another certificate under serial {record.serial} of CA '{ca}'",
                             subject=where, hint="revoke it by serial: kvca revoke --ca CA --serial S")
        return record
    from kvca_core.signing import profile_from_ekus

    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        profile = profile_from_ekus(list(ekus)).value
    except (x509.ExtensionNotFound, KvcaError):
        profile = "unknown"
    return await record_issued(ctx, cert, ca=ca, ca_version=target.tags.get(CA_VERSION_TAG) or UNKNOWN_VERSION,
                               profile=profile, location=VAULT, name=target.name)


async def _vault_version_of(ctx, record: CertificateRecord) -> CertificateVersion | None:
    """The vault version holding a ledger record's certificate, if the vault still has it: its SHA-1
    thumbprint (what Key Vault reports as x5t) is the record's certificate's."""
    if record.location != VAULT:
        return None
    thumbprint = hashlib.sha1(record.der).digest()  # noqa: S324 - Key Vault's x5t is a SHA-1 thumbprint
    try:
        async for listed in ctx.vault.list_versions(record.name):
            if listed.x5t == thumbprint:
                return listed
    except NotFound:
        return None
    return None


async def _mirror(ctx, record: CertificateRecord, revocation: RevocationRecord,
                  target: CertificateVersion | None) -> None:
    """The vault's mirror of the revocation: the version disabled and tagged, and any request pending
    on the certificate withdrawn (a renewal racing the revocation must not end as a valid version).
    Best effort: the ledger is the record, and a mirror that fails is a log line."""
    target = target or await _vault_version_of(ctx, record)
    if target is None:
        return
    try:
        full = await ctx.vault.get_certificate(target.name, target.version)
        tags = {**full.tags, REVOKED_TAG: revocation.reason, REVOKED_AT_TAG: revocation.revoked_at.isoformat(),
                REVOKED_SERIAL_TAG: revocation.serial}
        await ctx.vault.update_properties(target.name, target.version, enabled=False, tags=tags)
        pending = await ctx.vault.get_pending(target.name)
        if pending is not None and pending.in_progress:
            await ctx.vault.delete_pending(target.name)
    except (Busy, NotFound):
        pass  # merged or withdrawn meanwhile: the renewal's own check of the ledger catches a merge
    except KvcaError as exc:
        logger.warning("kvca op=revoke certificate=%s serial=%s outcome=mirror-failed reason=%s",
                       record.name, record.serial, exc)


async def _find(ctx, name: str | None, version: str | None, serial: str | None, ca: str | None):
    """(the ledger's record, the vault version when the revocation names one)."""
    if name is not None:
        target = await _vault_target(ctx, name, version, serial)
        where = f"certificate '{name}'"
        if target.cer is None:
            raise NotFound("the version is still pending: there is nothing to revoke", subject=where)
        if role_of(target.tags):
            raise NotManaged(f"is a CA certificate ({ROLE_TAG}={role_of(target.tags)}); a CA is revoked "
                             f"on its root's CRL", subject=where, hint="see `kvca crl CA --root`")
        managed = lifecycle.managed_ca(target, await ctx.vault.get_policy(name))
        return await ledger_record_of(ctx, target, managed), target
    if not ca or not serial:
        raise InvalidRequest("name a certificate, or a CA and a serial", subject="revocation")
    check_name(ca, "CA")
    record = await ctx.ledger.certificate(ca, serial_text(serial))
    if record is None:
        raise NotFound(f"CA '{ca}' has no certificate of serial {serial_text(serial)} in its ledger",
                       subject=f"CA '{ca}'")
    return record, None


async def _revoke(ctx, name, reason, version, serial, ca) -> Revocation:
    record, target = await _find(ctx, name, version, serial, ca)
    # RFC 5280 5.1.2.6: the revocation date is when it took effect; seconds are what GeneralizedTime holds.
    now = clock.now()
    wanted = RevocationRecord.of(record, reason=reason, revoked_at=now.replace(microsecond=0),
                                 revoked_by=telemetry.actor(), recorded_at=now)
    stored, new = await ctx.ledger.record_revocation(wanted)
    action = "revoked" if new else "already-revoked"  # idempotent: the first record stands
    if new or (target is not None and (target.enabled or target.tags.get(REVOKED_SERIAL_TAG) != stored.serial)):
        await _mirror(ctx, record, stored, target)  # a mirror someone stripped or re-enabled is written again
    return Revocation(record.name, target.version if target is not None else record.version, stored.serial,
                      stored.reason, stored.revoked_at, record.ca, action)


async def revoke(ctx, name: str | None = None, *, reason: str, version: str | None = None,
                 serial: str | None = None, ca: str | None = None) -> Revocation:
    """Revoke one certificate kvca signed: a vault certificate's current version (or `version`, or the
    version with `serial`), or (`ca` and `serial`) any certificate in the CA's ledger, a device's
    included. Recorded in the ledger, mirrored in the vault, then the CA key's CRL is signed anew and
    published; `published` is set only when a CRL listing it was uploaded."""
    from kvca_core.revocation.crls import publish_after_revocation  # the CRL module imports this one

    if name is not None:
        check_name(name)
    reason = parse_reason(reason)
    try:
        result = await _revoke(ctx, name, reason, version, serial, ca)
    except KvcaError as exc:
        telemetry.refusal("revoke", name or f"{ca}:{serial}", exc)
        raise
    telemetry.record("revoke", result.action, certificate=result.name, ca=result.ca, version=result.version,
                     serial=result.serial, reason=result.reason)
    if result.action == "revoked":
        # The record is written: a CRL that fails here is reported, never raised, so that the caller
        # does not retry a revocation that happened.
        url, error, number = await publish_after_revocation(ctx, result.ca, result.serial)
        result = replace(result, published=url, publish_error=error, crl_number=number)
        await notify.revoked(ctx, result)  # told once, when it took effect; never raises
    if name is not None and version is None and serial is None:
        await _follow_current(ctx, name, result)
    return result


async def _follow_current(ctx, name: str, result: Revocation) -> None:
    """Revoking a certificate by its name revokes its current version, and a version that became
    current while the revocation was recorded (a renewal merged between our read and our write) is
    revoked with it, for the same reason. A renewal merged after the write sees the revocation in the
    ledger and revokes its own version (operations/signing.py): between the two, no renewal racing a
    revocation ends as a valid current version."""
    try:
        now_current = await ctx.vault.get_certificate(name)
    except KvcaError:
        return  # deleted meanwhile, or unreachable: there is no newer version to follow
    if now_current.cer is None or now_current.version == result.version or not now_current.enabled:
        return
    logger.warning("kvca op=revoke certificate=%s version=%s outcome=following reason=became current while "
                   "version %s was revoked", name, now_current.version, result.version)
    await revoke(ctx, name, reason=result.reason, version=now_current.version)


async def revoked_serial(ctx, ca: str, serial: int | str) -> RevocationRecord | None:
    """The ledger's revocation of `serial` of CA `ca`, or None (what renewals and OCSP ask)."""
    return await ctx.ledger.revocation(ca, serial)
