"""sign_pending and cancel: the pending request of a managed certificate, signed and merged, or
withdrawn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from kvca_core import clock, lifecycle
from kvca_core.authority import LoadedCA
from kvca_core.errors import Busy, Conflict, InvalidRequest, NotFound, PolicyViolation, about
from kvca_core.model import CertificatePolicy, PendingRequest
from kvca_core.operations.common import (
    CACache,
    current,
    load_ca,
    logged,
    merged_tags,
    pending_status,
    policy_of,
    root_in_chain,
    serial_hex,
    told_if_failed,
    where,
)
from kvca_core.ledger import VAULT
from kvca_core.operations.recording import record_issued
from kvca_core.operations.results import CANCELLED, SIGNED, SKIPPED, Outcome
from kvca_core.signing import IssuanceUrls, issue_leaf
from kvca_core.signing.certs import same_public_key
from kvca_core.vocabulary import check_name, tagged_names


def issuance_urls(settings, ca_name: str, ca_version: str | None) -> IssuanceUrls:
    """The CDP, AIA and OCSP URLs written into a leaf that CA `ca_name`'s key `ca_version` signs.
    KVCA_CRL_URL and KVCA_AIA_URL may name `{ca}` and `{version}`: after a rotation every key
    version keeps a CRL of its own (revocation/crls.py), and each leaf names its issuer's."""
    def filled(template: str) -> str | None:
        if not template:
            return None
        return template.replace("{ca}", ca_name).replace("{version}", ca_version or "")
    return IssuanceUrls(crl=filled(settings.crl_url), aia=filled(settings.aia_url),
                        ocsp=f"{settings.ocsp_url}/{ca_name}" if settings.ocsp_url else None)


@dataclass(frozen=True)
class Replacing:
    """What a renewal replaces: the serial of the version it judged, whether a person asked for the new
    version (a replacement of a revoked certificate is asked for; an automatic renewal is not), and
    the public key a key compromise retired, which the new certificate must not carry."""

    serial: int
    asked: bool
    retired_key: object | None = None


async def _revoked_meanwhile(ctx, ca_name: str, replacing: Replacing | None):
    """The ledger's revocation of what an automatic renewal replaces, recorded while it ran."""
    if replacing is None or replacing.asked:
        return None
    return await ctx.ledger.revocation(ca_name, replacing.serial)


async def _withdrawn_renewal(ctx, name: str, pending: PendingRequest, leaf, ca_name: str,
                             replacing: Replacing) -> Outcome | None:
    """A renewal that must not be merged, withdrawn: its CSR is over the key revoked for
    keyCompromise (refused), or the version it replaces was revoked meanwhile (skipped)."""
    if replacing.retired_key is not None and same_public_key(leaf.public_key(), replacing.retired_key):
        await _withdraw(ctx, name, pending)
        raise PolicyViolation("the new version's key is the one revoked for keyCompromise; the request was "
                              "withdrawn", subject=where(name), hint="renew again: the next version gets a new key")
    if await _revoked_meanwhile(ctx, ca_name, replacing) is not None:
        await _withdraw(ctx, name, pending)
        return Outcome(name, SKIPPED, reason="the version being renewed was revoked meanwhile; the renewal was "
                                             "withdrawn (renew it by hand to replace it)")
    return None


async def sign(ctx, name: str, pending: PendingRequest, tags: Mapping[str, str], policy: CertificatePolicy,
               ca_name: str, action: str, loaded: LoadedCA | None = None, replacing: Replacing | None = None) -> Outcome:
    """CSR -> policy-checked leaf -> merge. Losing a merge race to another trigger is a no-op.
    `loaded`: the CA, when the caller has just loaded it (saves a vault round trip).

    `replacing`: a renewal. A revocation that lands while an automatic renewal runs never ends as a
    valid current certificate: checked before the merge (the request is withdrawn unmerged) and after
    it (the new version is revoked for the same reason). A key compromise's key is never certified
    again: a CSR over it is refused and withdrawn."""
    if pending.csr is None:
        raise InvalidRequest("the pending request carries no CSR", subject=where(name))
    if loaded is None:
        loaded = await ctx.authority.load(ca_name)
    uris, ips = tagged_names(tags)
    ipolicy = await ctx.authority.policy(loaded)  # the CA's stored policy, else the setting's default
    with about(where(name)):
        issued = await issue_leaf(
            pending.csr, ca=loaded.issuing, policy=ipolicy,
            requested_ekus=policy.ekus, validity_months=policy.validity_months, now=clock.now(),
            urls=issuance_urls(ctx.settings, ca_name, loaded.version), uris=uris, ips=ips)
    if replacing is not None:
        withdrawn = await _withdrawn_renewal(ctx, name, pending, issued.leaf, ca_name, replacing)
        if withdrawn is not None:
            return withdrawn
    # In the ledger before the vault holds it: a certificate kvca did not record is never released.
    record = await record_issued(ctx, issued.leaf, ca=ca_name, ca_version=loaded.version,
                                 profile=issued.profile.value, location=VAULT, name=name)
    try:
        merged = await ctx.vault.merge(name, issued.chain_der(include_root=root_in_chain(tags, issued.profile)),
                                       tags=merged_tags(tags, loaded))
    except Busy as exc:
        # Someone else is changing this request right now (most likely merging it): not a failure.
        # Whatever they do, the request ends merged or withdrawn, or a later pass (the sweep, a
        # redelivered event) signs it.
        return Outcome(name, SKIPPED, reason=f"not merged now: {exc.message}")
    except (Conflict, NotFound, InvalidRequest):
        after = await ctx.vault.get_pending(name)
        if after is None or after.status.lower() == "completed":
            # Another trigger merged this request while we signed: one version, theirs.
            return Outcome(name, SKIPPED, reason="signed concurrently by another trigger")
        if not after.in_progress or after.request_id != pending.request_id:
            return Outcome(name, SKIPPED, reason=f"not merged: meanwhile {pending_status(after)}")
        raise
    leaf = issued.leaf
    late = await _revoked_meanwhile(ctx, ca_name, replacing)
    if late is not None:
        # The revocation landed between the check above and the merge: the new version follows it.
        from kvca_core.revocation import revoke  # revocation builds on the operations

        await revoke(ctx, name, reason=late.reason, version=merged.version)
        return Outcome(name, SKIPPED, version=merged.version, serial=record.serial,
                       reason=f"the version being renewed was revoked meanwhile ({late.reason}); the new version "
                              f"was revoked with it")
    return Outcome(name, action, version=merged.version, serial=serial_hex(leaf),
                   reason=f"signed by CA '{ca_name}'", not_after=leaf.not_valid_after_utc,
                   warnings=tuple(issued.warnings))


async def _withdraw(ctx, name: str, pending: PendingRequest) -> None:
    """Delete the request kvca was about to merge, if it is still that one."""
    try:
        again = await ctx.vault.get_pending(name)
        if again is not None and again.in_progress and again.request_id == pending.request_id:
            await ctx.vault.delete_pending(name)
    except (Busy, NotFound):
        pass  # someone else is already merging or withdrawing it


def just_completed(version, now) -> Outcome | None:
    """A request pending on a version completed moments ago is left for a later pass.

    It is most likely a duplicate: a trigger that decided "due" just before another trigger
    finished the renewal creates a second request, notices the new version and withdraws its
    request (renewal.py). Signing it in the meantime would make a second version. A request that is
    still there after lifecycle.FRESH is real (a "New Version" made by hand) and the next sweep
    signs it."""
    age = lifecycle.fresh_age(version, now)
    if age is None:
        return None
    return Outcome(version.name, SKIPPED, version=version.version,
                   reason=f"version {version.version} was completed {age} s ago; the pending request "
                          f"is left for a later pass")


async def sign_pending_now(ctx, name: str, *, action: str = SIGNED, pending: PendingRequest | None = None,
                           cas: CACache | None = None) -> Outcome:
    """`pending`: the request, when the caller has just read it."""
    if pending is None:
        pending = await ctx.vault.get_pending(name)
    if pending is None or not pending.in_progress:
        try:
            await ctx.vault.get_certificate(name)
        except NotFound:
            if pending is None:
                raise NotFound("no such certificate in the vault", subject=where(name)) from None
        return Outcome(name, SKIPPED, reason=f"nothing to sign: {pending_status(pending)}")
    version = await current(ctx, name)
    policy = await policy_of(ctx, version)
    ca_name = lifecycle.managed_ca(version, policy)
    wait = just_completed(version, clock.now())
    if wait is not None:
        return wait
    loaded = await load_ca(ctx, ca_name, cas)
    return await sign(ctx, name, pending, version.tags, policy, ca_name, action, loaded)


async def sign_pending(ctx, name: str) -> Outcome:
    """Sign the certificate's pending request, if there is one in progress; otherwise a no-op that says so."""
    check_name(name)
    return await told_if_failed(ctx, "sign_pending", name, sign_pending_now(ctx, name))


async def _cancel(ctx, name: str) -> Outcome:
    try:
        version = await current(ctx, name)
    except NotFound:
        # A request that was the certificate's only version leaves nothing Key Vault reads back once
        # it is deleted, so a second cancel of it (a retry) cannot be told from a name the vault never
        # knew: both are NotFound, saying that nothing is pending.
        if await ctx.vault.get_pending(name) is None:
            raise NotFound("no such certificate in the vault; nothing is pending for it",
                           subject=where(name)) from None
        raise
    lifecycle.managed_ca(version, await ctx.vault.get_policy(name))  # refuses what kvca does not manage
    pending = await ctx.vault.get_pending(name)
    if pending is None or pending.status.lower() == "completed":
        return Outcome(name, SKIPPED, version=version.version if version.cer else None,
                       reason=f"nothing to cancel: {pending_status(pending)}")
    try:
        # Delete rather than PATCH cancellation_requested: a cancelled operation still blocks a new
        # create until it is deleted (docs/keyvault-behaviour.md, "Pending versions").
        await ctx.vault.delete_pending(name)
    except NotFound:
        return Outcome(name, SKIPPED, reason="nothing to cancel: the request was completed or withdrawn meanwhile")
    return Outcome(name, CANCELLED, reason="the pending request was deleted unsigned")


async def cancel(ctx, name: str) -> Outcome:
    """Withdraw the pending request of a certificate kvca manages. Idempotent: with nothing pending
    the outcome is `skipped`, saying so."""
    check_name(name)
    return await logged("cancel", name, _cancel(ctx, name))
