"""renew: a new signed version, now (a person) or when the lifecycle says it is due (events, sweep).

Key Vault has no conditional create, so "one renewal makes one version" rests on three facts of
the service (docs/keyvault-behaviour.md): a create while a request is pending is a 409, a merge
completes the pending request exactly once, and every version records when it completed. See
`renew_now` for how they combine.
"""

from __future__ import annotations

import datetime as dt

from kvca_core import clock, lifecycle
from kvca_core.errors import Busy, Conflict, InvalidRequest, KvcaError, NotFound
from kvca_core.model import CertificateVersion
from kvca_core.operations.common import (
    CACache,
    current,
    load_ca,
    next_version_tags,
    policy_of,
    told_if_failed,
    where,
)
from kvca_core.operations.coordination import before_create
from kvca_core.operations.results import RENEWED, SIGNED, SKIPPED, Outcome
from kvca_core.authority import read_certificate
from kvca_core.operations.signing import Replacing, just_completed, sign, sign_pending_now
from kvca_core.vocabulary import check_name

FORCE_HINT = 'renew with force to make another version anyway (kvca renew --force; over HTTP {"force": true})'


async def _only_version(ctx, version: CertificateVersion) -> bool:
    """Whether `version` is the certificate's only completed version: its first issuance."""
    completed = 0
    async for item in ctx.vault.list_versions(version.name):
        completed += item.completed
        if completed > 1:
            return False
    return True


async def _refuse_fresh(ctx, version: CertificateVersion, now: dt.datetime) -> None:
    """An explicit renewal of a version a renewal completed moments ago (lifecycle.FRESH) repeats it:
    a double click, an HTTP retry, a person racing an event. Refused, saying so. Right after the
    first issuance there is no renewal to repeat, so renewing then is what the person asked for."""
    age = lifecycle.fresh_age(version, now)
    if age is None or await _only_version(ctx, version):
        return
    raise Conflict(f"version {version.version} was renewed {age} s ago; not renewing it again so soon",
                   subject=where(version.name), hint=FORCE_HINT)


def _min_age_refusal(version: CertificateVersion, now: dt.datetime, min_age: dt.timedelta) -> Conflict | None:
    """The rate limit of renewals on demand: `created` of a completed version is when it completed
    (docs/keyvault-behaviour.md), so this counts from the last renewal's merge."""
    if version.created_on is not None and now - version.created_on >= min_age:
        return None
    since = f"{int((now - version.created_on).total_seconds() // 60)} minutes ago" \
        if version.created_on is not None else "at an unknown time"
    return Conflict(f"a renewal on demand needs the current version to be at least "
                    f"{int(min_age.total_seconds() // 60)} minutes old; version {version.version} was completed "
                    f"{since}", subject=where(version.name), hint="KVCA_FORCE_RENEW_MIN_AGE_MINUTES sets the limit")


async def rotation_for(ctx, ca_name: str, rotations=None) -> lifecycle.Rotation | None:
    """The rotation of `ca_name`'s current version, from the sweep's per-CA cache when given,
    else one read of the CA. The CA's own trouble is said when one of its leaves is signed."""
    if rotations is not None:
        return await rotations.of(ctx, ca_name)
    try:
        return lifecycle.rotation_of(ca_name, await ctx.vault.get_certificate(ca_name))
    except KvcaError:  # a CA that cannot be read is refused at signing, with its reason
        return None


async def renew_now(ctx, name: str, *, force: bool, version: str | None, asked: bool = False,
                    min_age: dt.timedelta | None = None, cas: CACache | None = None, rotations=None) -> Outcome:
    """Key Vault has no conditional create, so "one renewal, one version" is kept by checking, after
    the create, that the version we judged is still the current one:

    - a create that meets a pending request (409) helps sign that request, if the version it
      judged is still current (the request is the same renewal);
    - a create that succeeds re-reads the current version: if another trigger completed a renewal
      in between, our request is a duplicate and is withdrawn unsigned (its never-completed version
      stays behind, disabled, and is passed over as "current": `Vault.get_certificate`);
    - a request found pending on a version completed moments ago is left alone (`just_completed`),
      since it may be such a duplicate about to be withdrawn.

    `asked`: a person asked for a new version now; otherwise the lifecycle's verdict decides
    (with the CA's rotation: `rotations` is the sweep's per-CA cache).

    Calls: the current version with its policy, the create (its answer carries the CSR), the
    re-read, the merge; and the CA's version check, once per sweep.
    """
    judged = await current(ctx, name)
    if not judged.completed:
        # Only a pending version exists (created in the portal, or a crashed issue): sign it.
        return await sign_pending_now(ctx, name, action=SIGNED, cas=cas)
    if version and version != judged.version:
        reason = f"version {version} is no longer current (current: {judged.version})"
        if asked:
            raise Conflict(reason, subject=where(name))
        return Outcome(name, SKIPPED, version=judged.version, reason=reason)
    policy = await policy_of(ctx, judged)
    ca_name = lifecycle.managed_ca(judged, policy)
    now = clock.now()
    judged_cert = read_certificate(judged.cer, where(name))
    revoked = await ctx.ledger.revocation(ca_name, judged_cert.serial_number)  # the record, not the mirror
    compromised = revoked is not None and revoked.reason == "keyCompromise"
    replacing = Replacing(judged_cert.serial_number, asked, judged_cert.public_key() if compromised else None)
    if asked:
        await _may_renew_on_demand(ctx, judged, now, force=force, min_age=min_age)
    else:
        not_now = await _not_due(ctx, judged, policy, ca_name, now, revoked=revoked is not None, rotations=rotations)
        if not_now:
            return await _sign_pending_anyway(ctx, name, judged, policy, ca_name, now, replacing, not_now)
    # The CA must be usable before anything changes in the vault.
    loaded = await load_ca(ctx, ca_name, cas)
    # This version's renewal claim (one trigger creates; a forced renewal asks for another version
    # anyway) and a slot of the vault's create budget shared by every instance: coordination.py.
    held = await before_create(ctx, name, judged, policy, claim=not force)
    if held:
        if asked:
            raise Conflict(held, subject=where(name), hint=FORCE_HINT)
        return Outcome(name, SKIPPED, version=judged.version, reason=held)
    return await _create_and_sign(ctx, name, judged, policy, ca_name, loaded, replacing, force=force)


async def _may_renew_on_demand(ctx, judged, now: dt.datetime, *, force: bool, min_age: dt.timedelta | None) -> None:
    """A person asked for a new version now: one a renewal completed moments ago is said, not
    silently repeated (unless force), and an HTTP caller is rate-limited (min_age)."""
    if not force:
        await _refuse_fresh(ctx, judged, now)
    refusal = _min_age_refusal(judged, now, min_age) if min_age is not None else None
    if refusal is not None:
        raise refusal


async def _not_due(ctx, judged, policy, ca_name: str, now: dt.datetime, *, revoked: bool, rotations) -> str:
    """Why the lifecycle does not renew the judged version now ("" when it does)."""
    rules = lifecycle.Rules.of(ctx.settings)
    verdict = lifecycle.verdict(judged, now=now, rules=rules, policy=policy, revoked=revoked)
    if verdict.action != lifecycle.RENEW and verdict.state in (lifecycle.VALID, lifecycle.DUE):
        # Not due by its dates: due all the same if its CA was rotated and its move time came
        # (one read of the CA, cached per sweep; a due certificate costs none).
        verdict = lifecycle.verdict(judged, now=now, rules=rules, policy=policy, revoked=revoked,
                                    rotation=await rotation_for(ctx, ca_name, rotations))
    return "" if verdict.action == lifecycle.RENEW else verdict.reason


async def _sign_pending_anyway(ctx, name: str, judged, policy, ca_name: str, now: dt.datetime,
                               replacing: Replacing, not_now: str) -> Outcome:
    """Nothing to renew; a request pending all the same (a "New Version" made by hand, a renewal in
    flight) is signed, unless its version has only just completed. A revocation withdraws the
    request pending at that moment (revocation/revoke.py), so one pending on a revoked version was
    asked for after it: a replacement, signed as asked (with a new key after a key compromise)."""
    pending = await ctx.vault.get_pending(name)
    if pending is None or not pending.in_progress:
        return Outcome(name, SKIPPED, version=judged.version, reason=not_now)
    by_hand = Replacing(replacing.serial, True, replacing.retired_key)
    return just_completed(judged, now) or await sign(ctx, name, pending, judged.tags, policy, ca_name, RENEWED,
                                                     replacing=by_hand)


async def _create_and_sign(ctx, name: str, judged, policy, ca_name: str, loaded, replacing: Replacing, *,
                           force: bool) -> Outcome:
    """The new version's request, then its signing, unless another trigger's renewal got there first
    (renew_now's docstring)."""
    vault = ctx.vault
    concurrent = Outcome(name, SKIPPED, reason="renewed concurrently by another trigger")
    try:
        # After a key compromise the next version gets a new key, whatever the policy's reuse_key says.
        pending = await vault.create_new_version(name, tags=next_version_tags(judged.tags), policy=policy,
                                                 fresh_key=replacing.retired_key is not None)
    except Conflict:
        # A request is pending: another trigger's renewal, or a "New Version" made by hand. Finish it
        # rather than start a second, as long as it renews the version we judged.
        pending = await vault.get_pending(name)
        if pending is None or not pending.in_progress or (await current(ctx, name)).version != judged.version:
            return concurrent
        wait = None if force else just_completed(judged, clock.now())
        return wait or await sign(ctx, name, pending, judged.tags, policy, ca_name, RENEWED, loaded, replacing)
    latest = await current(ctx, name)
    if latest.version != judged.version:
        again = await vault.get_pending(name)
        if again is not None and again.in_progress and again.request_id == pending.request_id:
            try:
                await vault.delete_pending(name)
            except (Busy, NotFound):
                pass  # someone else is already merging or withdrawing it
        return Outcome(name, SKIPPED, version=latest.version, reason=concurrent.reason)
    return await sign(ctx, name, pending, judged.tags, policy, ca_name, RENEWED, loaded, replacing)


def check_renew_options(*, if_due: bool, force: bool) -> None:
    """A renewal either asks the sweep's question (if due) or renews now, even moments after a renewal
    (force): never both. The CLI's --if-due/--force and the HTTP body's if_due/force are checked here."""
    if if_due and force:
        raise InvalidRequest("if-due and force contradict each other: force renews now, whether due or not",
                             subject="request")


async def renew(ctx, name: str, *, now: bool = False, force: bool = False, version: str | None = None,
                min_age: dt.timedelta | None = None) -> Outcome:
    """Renew the certificate.

    now=False (events, the sweep): only when the lifecycle says the current version is due;
    otherwise `skipped`, saying why. now=True (a person: `kvca renew`, `POST .../renew`): a new
    signed version now; if a renewal completed moments ago (lifecycle.FRESH) it is a Conflict
    saying so, never a quiet skip, unless `force` (which implies now). `version`: act only while it
    is current (an event naming an older version is a no-op). `min_age`: a renewal on demand is
    refused (Conflict) while the current version is younger (the HTTP API's rate limit; force does
    not lift it)."""
    check_name(name)
    return await told_if_failed(ctx, "renew", name, renew_now(ctx, name, force=force, version=version,
                                                           asked=now or force, min_age=min_age))
