"""`rotate_ca`: a new intermediate version under the same root, with a new key made in the vault.

A CA made by `kvca ca create` is `NAME-root` (the root) and `NAME` (the intermediate, ca.py).
Rotating it makes a new version of `NAME`:

1. a new version with issuer Unknown and `reuse_key: false`, so Key Vault generates a new key
   and answers its CSR; the version carries the tag kvca-creating=rotation while it is pending;
2. the new intermediate certificate, with the current one's subject and name constraints,
   signed by the root's key through the keys API (the root key never leaves the vault);
3. the merge of that certificate and the root, with every tag of the current version passed
   on (kvca-role, kvca-policy, a user's own) and ROTATED_TAG saying when.

Until the merge the old version stays current and goes on signing: a pending version never
replaces the current one (docs/keyvault-behaviour.md, "Pending versions"), and the authority
(authority.py) reloads a CA whenever its current version changes, so the next signing after
the merge uses the new key. Leaves of the old version move in the sweep, spread over
KVCA_ROTATION_WINDOW_HOURS (operations.moved_state).

Safe to run again and twice at once: a pending rotation is resumed from its CSR (a pending
request kvca did not make is refused), a create that raced another rotation's merge is
withdrawn, and a merge that lost to another run answers that run's result. A CA whose root key
is not in this vault (an imported CA) is refused: nothing here could sign its intermediate.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kvca_core import clock
from kvca_core.ca.common import (
    ca_policy,
    ca_where,
    cert_of,
    check_years,
    csr_public_key,
    current_or_none,
    describe_key,
    key_matches_spec,
    name_constraints,
    remote_signer,
)
from kvca_core.ca.inspect import CAInfo, show_ca
from kvca_core.errors import Busy, Conflict, InvalidRequest, NotFound, NotManaged
from kvca_core.model import CertificateVersion, PendingRequest
from kvca_core.vocabulary import CREATING_TAG, INTERMEDIATE, REVOCATION_TAGS, ROLE_TAG, ROOT, ROTATED_TAG, check_name, root_name
from kvca_core.lifecycle import FRESH, rotation_of
from kvca_core.signing import IssuingCA, create_intermediate
from kvca_core.signing.certs import is_ca_certificate, is_self_signed, issued_by, same_public_key
from kvca_core.signing.issue import MAX_CA_YEARS, add_months

log = logging.getLogger(__name__)

ROTATING = "rotation"  # the value of CREATING_TAG on the pending version a rotation makes
# Tags that describe one version only and are never passed to the next.
_TRANSIENT_TAGS = (CREATING_TAG, ROTATED_TAG, *REVOCATION_TAGS)
# What consumers of the CA must do (docs/cli.md, "kvca ca rotate"; docs/keyvault-behaviour.md,
# "What consumers need").
CONSUMER_NOTES = (
    "an Event Grid namespace (MQTT) holds the immediate issuer: upload the new intermediate "
    "(`kvca export-chain NAME --which intermediate`) as a CA certificate now, next to the old one, "
    "before the sweep moves the devices' certificates",
    "trust stores that hold only the root need nothing; a store that pins the intermediate "
    "(Application Gateway's trusted client CAs, API Management's CA certificates) needs the new one added",
)


@dataclass(frozen=True)
class RotationResult:
    """What `kvca ca rotate` prints: the CA as it is now and the version it replaced (JSON:
    `ca_rotation`). No previous version: a rotation completed moments ago was answered instead
    of making another (a retry)."""

    OBJECT = "ca_rotation"

    ca: CAInfo
    previous_version: str
    previous_serial: str
    rotated_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"action": "rotated" if self.previous_version else "already-rotated", "ca": self.ca.to_dict(),
                "previous_version": self.previous_version or None, "previous_serial": self.previous_serial or None,
                "rotated_at": self.rotated_at.isoformat()}


def _carried_tags(tags) -> dict[str, str]:
    return {k: v for k, v in (tags or {}).items() if k not in _TRANSIENT_TAGS}


async def _pending_version_tags(vault, name: str) -> dict[str, str]:
    """The tags of the version a pending request will complete: the newest version without a
    certificate (a withdrawn request's leftover is older; tags given at create read back on the
    pending version, docs/keyvault-behaviour.md, "Pending versions")."""
    floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    newest: CertificateVersion | None = None
    async for version in vault.list_versions(name):
        if not version.completed and (newest is None or (version.created_on or floor) > (newest.created_on or floor)):
            newest = version
    return dict(newest.tags) if newest is not None else {}


async def _ca_parts(vault, name: str):
    """(current version, its certificate, root version, root certificate), or the refusal."""
    current = await current_or_none(vault, name)
    if current is None or not current.cer:
        raise NotFound("no CA of this name in the vault", subject=ca_where(name), hint="`kvca ca list` shows the CAs")
    tags = current.tags or {}
    if tags.get(CREATING_TAG) or tags.get(ROLE_TAG) != INTERMEDIATE:
        raise NotManaged(f"is not a finished kvca CA (its current version has no tag {ROLE_TAG}=intermediate)",
                         subject=ca_where(name), hint="`kvca ca list` shows the CAs; finish one with `kvca ca create`")
    cert = cert_of(current)
    root_object = root_name(name)
    root_version = await current_or_none(vault, root_object)
    root = cert_of(root_version) if root_version is not None and \
        (root_version.tags or {}).get(ROLE_TAG) == ROOT else None
    if root is None or not is_self_signed(root) or not is_ca_certificate(root) or not issued_by(cert, root) \
            or not root_version.key_id:
        raise NotManaged(f"its root's key is not in this vault (no certificate '{root_object}' tagged "
                         f"{ROLE_TAG}=root that issued it): the CA was imported, and kvca can sign a new "
                         "intermediate only with a root key the vault holds", subject=ca_where(name),
                         hint="make the new intermediate where the root's key lives and import it under a new "
                              "CA name (`kvca ca import`)")
    return current, cert, root_version, root


def _lifetime(name: str, cert: x509.Certificate, root: x509.Certificate, years: int | None,
              policy_months: int | None, now: dt.datetime) -> tuple[int, list[str]]:
    """The new intermediate's years: as asked, or the current one's; within the root's lifetime."""
    notes: list[str] = []
    if root.not_valid_after_utc <= now + dt.timedelta(days=30):
        raise InvalidRequest(f"its root '{root_name(name)}' expires on {root.not_valid_after_utc:%Y-%m-%d}, too "
                             "soon to sign a new intermediate under it", subject=ca_where(name),
                             hint="create a new CA (`kvca ca create`) and move the certificates to it")
    if years is not None:
        years = check_years(years, "intermediate")
        if add_months(now, 12 * years) > root.not_valid_after_utc:
            left = (root.not_valid_after_utc - now).days // 366
            raise InvalidRequest(f"a {years}-year intermediate would outlive its root, which expires on "
                                 f"{root.not_valid_after_utc:%Y-%m-%d}", subject=ca_where(name),
                                 hint=(f"give --years {left} or less, or leave --years out to end with the root"
                                       if left >= 1 else "leave --years out to end with the root"))
        return years, notes
    # The lifetime `kvca ca create --years` gave it, kept in its policy's validity_months.
    years = policy_months // 12 if policy_months else \
        round((cert.not_valid_after_utc - cert.not_valid_before_utc).days / 365.25)
    years = min(max(1, years), MAX_CA_YEARS)
    if add_months(now, 12 * years) > root.not_valid_after_utc:
        notes.append(f"the new intermediate ends with its root on {root.not_valid_after_utc:%Y-%m-%d} "
                     f"(not {years} years from now)")
    return years, notes


async def rotate_ca(ctx, name: str, *, years: int | None = None) -> RotationResult:
    """A new version of intermediate `name` with a new key made in the vault, signed by its root.

    `years`: the new intermediate's lifetime (default: the current one's, capped at the root's
    notAfter); refused when it would outlive the root. Run again after a failure, it resumes
    the pending rotation; within FRESH of a completed rotation it answers that rotation instead
    of making another (a retry, a second run racing the first)."""
    check_name(name, "CA")
    vault = ctx.vault
    current, cert, root_version, root = await _ca_parts(vault, name)
    permitted, excluded = name_constraints(cert)
    if excluded:
        raise NotManaged("its name constraints exclude names, which `kvca ca create` never writes",
                         subject=ca_where(name), hint="rotate it where it was made")
    now = clock.now()
    policy = await vault.get_policy(name)
    done = rotation_of(name, current)
    pending = await vault.get_pending(name)
    in_progress = pending is not None and pending.in_progress
    if done is not None and not in_progress and now - done.rotated_at < FRESH:
        log.info("rotate_ca recent name=%s version=%s", name, current.version)
        return await _result(ctx, name, previous=None, rotated_at=done.rotated_at,
                             notes=[f"rotated {int((now - done.rotated_at).total_seconds())} s ago (version "
                                    f"{current.version}); not rotating again"])
    years, notes = _lifetime(name, cert, root, years, policy.validity_months, now)
    spec = replace(policy.key, reuse_key=False)
    if in_progress:
        tags = await _pending_version_tags(vault, name)
        if tags.get(CREATING_TAG) != ROTATING:
            raise Conflict("the CA has a pending request that `kvca ca rotate` did not start", subject=ca_where(name),
                           hint=f"delete it (az keyvault certificate pending delete --name {name}) and rotate again")
        notes.append("resumed an unfinished `kvca ca rotate`")
        log.info("rotate_ca resume name=%s", name)
    else:
        log.info("rotate_ca step=request name=%s current=%s", name, current.version)
        try:
            pending = await vault.create_certificate(name, ca_policy(cert.subject, spec, "Unknown", years),
                                                     tags={CREATING_TAG: ROTATING})
        except Conflict:
            # A request is pending (409): another run's rotation, created a moment ago, is
            # finished with it; anyone else's is refused.
            pending = await vault.get_pending(name)
            if pending is None or not pending.in_progress:
                return await _concurrent(ctx, name, current)
            if (await _pending_version_tags(vault, name)).get(CREATING_TAG) != ROTATING:
                raise Conflict("the CA has a pending request that `kvca ca rotate` did not start",
                               subject=ca_where(name), hint=f"delete it (az keyvault certificate pending delete "
                                                       f"--name {name}) and rotate again") from None
        else:
            if not isinstance(pending, PendingRequest):
                raise Conflict("the new intermediate's request with issuer Unknown did not stay pending",
                               subject=ca_where(name))
            latest = await current_or_none(vault, name)
            if latest is not None and latest.version != current.version:
                # Another rotation merged between our read and our create: ours is a duplicate.
                try:
                    await vault.delete_pending(name)
                except (Busy, NotFound):
                    pass
                return await _concurrent(ctx, name, current)
    return await _sign_and_merge(ctx, name, current, cert, root_version, root, pending, spec, years,
                                 permitted, notes)


async def _sign_and_merge(ctx, name: str, current: CertificateVersion, cert: x509.Certificate,
                          root_version: CertificateVersion, root: x509.Certificate, pending: PendingRequest,
                          spec, years: int, permitted, notes: list[str]) -> RotationResult:
    vault = ctx.vault
    public_key = csr_public_key(pending, name)
    if not key_matches_spec(public_key, spec):
        raise Conflict(f"the pending rotation request has a {describe_key(public_key)} key, not the CA's "
                       f"{describe_key(cert.public_key())}", subject=ca_where(name),
                       hint=f"delete it (az keyvault certificate pending delete --name {name}) and rotate again")
    if same_public_key(public_key, cert.public_key()):
        raise Conflict("the pending rotation request reuses the current key (reuse_key)", subject=ca_where(name),
                       hint=f"delete it (az keyvault certificate pending delete --name {name}) and rotate again")
    moment = clock.now()
    issuer = IssuingCA(root, [], remote_signer(vault, root_version.key_id, root.public_key()))
    log.info("rotate_ca step=sign name=%s root=%s", name, root_version.version)
    new = await create_intermediate(cert.subject, public_key, issuer, years=years, permitted_dns=permitted,
                                    now=moment)
    rotated_at = moment.replace(microsecond=0)
    tags = {**_carried_tags(current.tags), ROTATED_TAG: rotated_at.isoformat()}
    try:
        merged = await vault.merge(name, [new.public_bytes(Encoding.DER), root.public_bytes(Encoding.DER)],
                                   tags=tags)
    except (Busy, Conflict, NotFound, InvalidRequest):
        # Another run resumed the same request and merged first: its version is the rotation.
        return await _concurrent(ctx, name, current)
    log.info("rotate_ca complete name=%s version=%s serial=%x previous=%s", name, merged.version,
             new.serial_number, current.version)
    return await _result(ctx, name, previous=(current, cert), rotated_at=rotated_at, notes=notes)


async def _concurrent(ctx, name: str, judged: CertificateVersion) -> RotationResult:
    """Another run rotated the CA while this one worked: its result, or a Conflict saying what is there."""
    latest = await current_or_none(ctx.vault, name)
    done = rotation_of(name, latest) if latest is not None else None
    if latest is None or latest.version == judged.version or done is None:
        raise Conflict("another change to the CA is in progress (a concurrent `kvca ca rotate`?)",
                       subject=ca_where(name), hint="run `kvca ca rotate` again in a minute")
    return await _result(ctx, name, previous=(judged, cert_of(judged)), rotated_at=done.rotated_at,
                         notes=["rotated concurrently by another run; one new version"])


async def _result(ctx, name: str, *, previous, rotated_at: dt.datetime, notes: list[str]) -> RotationResult:
    info = await show_ca(ctx, name)
    if previous is None:  # the rotation was an earlier run's: the version before it is not at hand
        previous_version, previous_serial = "", ""
    else:
        previous_version, previous_serial = previous[0].version or "", f"{previous[1].serial_number:x}"
    window = ctx.settings.rotation_window_hours
    notes = [*notes, f"the sweep moves the certificates it issued onto the new key within {window} hours "
                     "(KVCA_ROTATION_WINDOW_HOURS); until then both versions' certificates verify",
             *(n.replace("NAME", name) for n in CONSUMER_NOTES)]
    return RotationResult(replace(info, notes=tuple(notes)), previous_version, previous_serial, rotated_at)


__all__ = ["CONSUMER_NOTES", "ROTATING", "RotationResult", "rotate_ca"]
