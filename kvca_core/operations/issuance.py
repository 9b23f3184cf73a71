"""issue and issue_many: create managed certificates (issuer Unknown, key made in the vault) and
sign them, or leave them pending and announce them with Kvca.CertificatePendingRequest.

Every request is checked in full before the first is created (`check_requests`): what
kvca_core/request.py checks without the vault, then the CA (it exists and may sign) and every rule
the signer will apply to the CSR, with the CA's stored policy. So a batch or a fleet file never
half-runs on a request the CA would refuse, and a refusal never leaves a pending certificate behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from cryptography import x509

from kvca_core import clock
from kvca_core.authority import LoadedCA
from kvca_core.errors import Conflict, KvcaError, NotFound, Throttled, about
from kvca_core.events import pending_request_event
from kvca_core.model import CertificatePolicy, KeySpec, PendingRequest
from kvca_core.operations.common import (
    EXPORTABLE_BY_DEFAULT,
    ROOT_IN_CHAIN_BY_DEFAULT,
    CACache,
    current,
    logged,
    request_tags,
    where,
)
from kvca_core.operations.coordination import budget_for
from kvca_core.operations.ratelimit import CREATE_WINDOW
from kvca_core.operations.results import ALREADY_ISSUED, FAILED, ISSUED, REQUESTED, SKIPPED, Outcome
from kvca_core.operations.signing import sign
from kvca_core.request import IssueRequest, parse_requests
from kvca_core.signing import InsecureRequest, Profile, names_subject, parse_subject, precheck
from kvca_core.vocabulary import CA_TAG, UNKNOWN_ISSUER, check_free, check_name, tagged_names

logger = logging.getLogger("kvca_core.operations")

# A batch is bounded: at 20 creates per 10 s, 100 certificates take about 50 s, well inside the 230 s
# an HTTP call to a Function may last (Azure's load balancer idle timeout).
MAX_BATCH = 100
THROTTLE_RETRIES = 3
# How long an issue waits for a slot of the shared create budget before it answers Throttled (HTTP
# 503 with Retry-After; issue_many retries it): an HTTP caller is not held for minutes.
CREATE_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Prepared:
    """A request checked against its CA: what will be created, and by whom it will be signed."""

    request: IssueRequest
    loaded: LoadedCA
    policy: CertificatePolicy  # the Key Vault policy the certificate is created with
    asked: InsecureRequest  # what it asks for, in the form the signer checks a CSR in
    tags: Mapping[str, str]


def _key_usage_for(key: KeySpec) -> tuple[str, ...]:
    # The leaf's keyUsage by key type (RFC 5280 4.2.1.3; RSA key transport needs keyEncipherment).
    return ("digitalSignature", "keyEncipherment") if key.kty == "RSA" else ("digitalSignature",)


def _policy_key_type(key: KeySpec) -> str:
    return "rsa" if key.kty == "RSA" else {"P-256": "ec-p256", "P-384": "ec-p384", "P-521": "ec-p521"}[key.curve]


async def _prepare(ctx, request: IssueRequest, cas: CACache) -> Prepared:
    check_free(request.name)
    ca_name = check_name(request.ca, "CA")
    profile = Profile.parse(request.profile)
    exportable = EXPORTABLE_BY_DEFAULT[profile] if request.exportable is None else request.exportable
    include_root = ROOT_IN_CHAIN_BY_DEFAULT[profile] if request.include_root is None else request.include_root
    key = KeySpec.parse(request.key, exportable=exportable)
    subject = request.subject or (f"CN={request.dns_names[0]}" if request.dns_names else "")
    asked = InsecureRequest(subject=parse_subject(subject) if subject else x509.Name([]),
                            dns_names=request.dns_names, emails=request.emails, uris=request.uris,
                            ip_addresses=tuple(ipaddress.ip_address(a) for a in request.ip_addresses),
                            ekus=tuple(oid.dotted_string for oid in profile.ekus))
    loaded = await cas.load(ctx, ca_name)  # an unknown CA is refused before anything is created
    # Every rule the signer applies to the CSR, applied now to the request: a refusal at signing
    # would leave the pending certificate behind.
    precheck(asked, ca_certificates=loaded.issuing.certificates, policy=await ctx.authority.policy(loaded),
             profile=profile, validity_months=request.validity_months, now=clock.now(),
             key_kind=_policy_key_type(key), rsa_bits=key.size)
    policy = CertificatePolicy(
        issuer_name=UNKNOWN_ISSUER, subject=subject, dns_names=request.dns_names, emails=request.emails,
        ekus=asked.ekus, key_usage=_key_usage_for(key), validity_months=request.validity_months, key=key,
        content_type=request.content_type)
    return Prepared(request, loaded, policy, asked,
                    request_tags(ca_name, request.uris, request.ip_addresses, include_root))


async def check_requests(ctx, requests: Sequence[IssueRequest], labels: Sequence[str] | None = None,
                         cas: CACache | None = None) -> list[Prepared]:
    """Every request checked against its CA and the CA's policy, in order, before anything is
    created; the first refusal is raised, naming the request (`labels`: where each came from, e.g.
    "devices.csv line 4"). Each CA is loaded once."""
    cas = cas or CACache()
    # Read again by the one request reader, whoever built them: a request made in code gets every
    # check a request body gets (names, the subject-or-SAN rule, tag sizes).
    requests = parse_requests((labels[i] if labels else "request", r.to_mapping()) for i, r in enumerate(requests))
    prepared = []
    for index, request in enumerate(requests):
        label = labels[index] if labels else None
        subject = where(request.name) if label is None else f"{label} (certificate '{request.name}')"
        with about(subject):
            prepared.append(await _prepare(ctx, request, cas))
    return prepared


def _policy_differences(found: CertificatePolicy, found_tags: Mapping[str, str], wanted: Prepared) -> list[str]:
    """How a pending request found in the vault differs from the one asked for: names, key (type,
    size or curve, exportable), EKUs and secret format. Completing a request that asked for an
    RSA-2048 exportable key for a caller who asked for EC P-256 would hand them a key they did not
    choose."""
    asked, policy = wanted.asked, wanted.policy
    differences = []
    same_subject = names_subject(found.subject, asked.subject) if found.subject else len(asked.subject) == 0
    if not same_subject:
        differences.append(f"subject {found.subject!r}")
    uris, ips = tagged_names(found_tags)
    for label, have, want in (("DNS names", found.dns_names, asked.dns_names), ("emails", found.emails, asked.emails),
                              ("URIs", uris, asked.uris), ("IP addresses", ips, wanted.request.ip_addresses),
                              ("EKUs", found.ekus, policy.ekus)):
        if sorted(v.lower() for v in have) != sorted(v.lower() for v in want):
            differences.append(f"{label} {', '.join(have) or 'none'}")
    have_key, want_key = found.key, policy.key
    if have_key.kty.upper() != want_key.kty or (want_key.kty == "RSA" and have_key.size != want_key.size) \
            or (want_key.kty == "EC" and (have_key.curve or "").upper() != want_key.curve):
        differences.append(f"key {have_key.kty} {have_key.size or have_key.curve or ''}".rstrip())
    if have_key.exportable != want_key.exportable:
        differences.append("an exportable key" if have_key.exportable else "a non-exportable key")
    if found.content_type != policy.content_type:
        differences.append(f"content type {found.content_type}")
    return differences


async def _create_or_resume(ctx, prepared: Prepared,
                            existing_ok: bool) -> tuple[PendingRequest, CertificatePolicy] | Outcome:
    """The pending request for a prepared request and the policy it was made with: created now, or
    the one a retried call or a crashed issue left (if it is ours and asks for the same), or the
    Outcome of what an earlier run issued."""
    name, ca_name = prepared.request.name, prepared.request.ca
    try:
        existing = await ctx.vault.get_certificate(name)
    except NotFound:
        existing = None
    if existing is not None and existing.cer is not None:
        if existing_ok and existing.tags.get(CA_TAG) == ca_name:
            # issue_many run again after a failure: what the first run issued for the same request is
            # done; a different certificate under that name is not this request's.
            differences = _policy_differences(await ctx.vault.get_policy(name), existing.tags, prepared)
            if not differences:
                return Outcome(name, SKIPPED, version=existing.version, reason=ALREADY_ISSUED)
            raise Conflict(f"already exists in the vault with a different request ({'; '.join(differences)})",
                           subject=where(name), hint="choose another name, or renew it")
        raise Conflict("already exists in the vault", subject=where(name), hint="renew it instead, or choose another name")
    policy = prepared.policy
    # A create spends one of the vault's creates (two for an HSM key), counted by every instance.
    await budget_for(ctx).acquire(cost=2 if policy.key.hsm else 1, deadline=time.time() + CREATE_WAIT_SECONDS,
                                  purpose=where(name))
    try:
        pending = await ctx.vault.create_certificate(name, policy, tags=prepared.tags)
    except Conflict:
        # A request for this name is already pending (a retried HTTP call, a crashed issue): finish it
        # rather than refuse, if it is ours and asks for the same names, key and EKUs.
        pending = await ctx.vault.get_pending(name)
        if pending is None or not pending.in_progress:
            raise
        found_version = await current(ctx, name)
        if found_version.tags.get(CA_TAG) != ca_name:
            raise
        policy = await ctx.vault.get_policy(name)
        differences = _policy_differences(policy, found_version.tags, prepared)
        if differences:
            raise Conflict(f"a different request for this name is already pending ({'; '.join(differences)})",
                           subject=where(name), hint=f"cancel it first (kvca cancel {name}), or ask for what it asks for")
    if not isinstance(pending, PendingRequest):
        raise Conflict("the vault completed the certificate without a pending request", subject=where(name))
    return pending, policy


async def issue_prepared(ctx, prepared: Prepared, *, sign_now: bool, existing_ok: bool = False) -> Outcome:
    name = prepared.request.name
    created = await _create_or_resume(ctx, prepared, existing_ok)
    if isinstance(created, Outcome):
        return created
    pending, policy = created
    if not sign_now:
        if ctx.publisher is not None:
            await ctx.publisher.publish(pending_request_event(
                vault_name=ctx.vault.vault_name, vault_url=ctx.vault.vault_url, name=name))
            return Outcome(name, REQUESTED, reason="pending; published Kvca.CertificatePendingRequest")
        return Outcome(name, REQUESTED, reason="pending; the next sweep signs it")
    return await sign(ctx, name, pending, prepared.tags, policy, prepared.request.ca, ISSUED, prepared.loaded)


async def issue(ctx, request: IssueRequest, *, sign: bool = True) -> Outcome:
    """Create a managed certificate (issuer Unknown, key made inside the vault) and sign it, or
    (`sign=False`) leave it pending and announce it with Kvca.CertificatePendingRequest."""
    async def run() -> Outcome:
        (prepared,) = await check_requests(ctx, [request])
        return await issue_prepared(ctx, prepared, sign_now=sign)

    return await logged("issue", request.name, run())


async def issue_many(ctx, requests: Sequence[IssueRequest], *, sign: bool = True, labels: Sequence[str] | None = None,
                     progress: Callable[[Outcome], None] | None = None) -> tuple[Outcome, ...]:
    """`issue` for each request, concurrently but never faster than Key Vault's create limit allows
    (each create waits for a slot of the budget every instance shares, coordination.py), one Outcome
    per request in the order given.

    Every request is checked first (`check_requests`): one the CA would refuse refuses the whole
    batch before anything is created, naming it. After that a failure (the vault's, one name
    already taken) is that request's `failed` outcome and never stops the others. Run again after
    a failure, it resumes: a certificate the earlier run issued is `skipped` ("already issued"), a
    request it left pending is finished. Used by `kvca request --from` and `POST
    /api/certificates/batch`."""
    requests = list(requests)
    prepared = await check_requests(ctx, requests, labels)
    outcomes: list[Outcome | None] = [None] * len(requests)
    queue: asyncio.Queue = asyncio.Queue()
    for index in range(len(requests)):
        queue.put_nowait(index)

    async def one(item: Prepared) -> Outcome:
        name = item.request.name
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                return await logged("issue", name, issue_prepared(ctx, item, sign_now=sign, existing_ok=True))
            except Throttled as exc:
                if attempt == THROTTLE_RETRIES:
                    return Outcome(name, FAILED, reason=str(exc))
                await asyncio.sleep(exc.retry_after if exc.retry_after and exc.retry_after > 0 else CREATE_WINDOW)
            except KvcaError as exc:
                return Outcome(name, FAILED, reason=str(exc))
            except Exception as exc:  # one broken request never stops the batch
                logger.exception("kvca op=issue_many certificate=%s outcome=error kind=%s", name, type(exc).__name__)
                return Outcome(name, FAILED, reason=f"unexpected error ({type(exc).__name__})")
        raise AssertionError("unreachable")

    async def worker() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            outcome = await one(prepared[index])
            outcomes[index] = outcome
            if progress is not None:
                try:
                    progress(outcome)
                except Exception:  # a progress bar must not break the batch
                    logger.debug("issue_many progress callback failed", exc_info=True)

    workers = max(1, min(ctx.settings.concurrency, ctx.settings.create_limit, len(requests)))
    await asyncio.gather(*(worker() for _ in range(workers)))
    return tuple(o for o in outcomes if o is not None)


def batch_done(outcomes: Sequence[Outcome]) -> bool:
    """Whether every item of a batch is issued, requested or issued by an earlier run."""
    return all(o.action in (ISSUED, REQUESTED) or (o.action == SKIPPED and o.reason == ALREADY_ISSUED)
               for o in outcomes)


__all__ = ["MAX_BATCH", "Prepared", "batch_done", "check_requests", "issue", "issue_many", "issue_prepared"]
