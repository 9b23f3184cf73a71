"""kvca's operations: one function each, the same for the Functions app, the CLI and the demo.

    sign_pending(ctx, name)     sign the pending request of a managed certificate
    renew(ctx, name)            a new signed version: now (people), or when due (events, sweep)
    sweep(ctx)                  walk the vault: sign what is pending, renew what is due
    issue(ctx, request)         create a managed certificate (key made in the vault) and sign it
    issue_many(ctx, requests)   `issue` for a fleet, within Key Vault's create limit, one outcome each
    cancel(ctx, name)           withdraw (delete) a managed certificate's pending request
    inventory(ctx)              the managed certificates, for `GET /api/certificates` and `kvca list`
    inventory_report(ctx)       the same, with the warnings of CAs nearing expiry (kvca_core/cawatch.py)
    describe(ctx, name)         one certificate in detail, for `kvca show`

Every operation is idempotent and safe when triggers overlap (Event Grid
delivers at least once, the sweep runs beside the events, a person may click
"renew" at the same time). Key Vault has no conditional create, so the
guarantee "one renewal makes one version" rests on three facts of the service
(keyvault-facts.md): a create while a request is pending is a 409, a merge
completes the pending request exactly once, and every version records who is
current. See `_renew` for how they combine.

A certificate is kvca's when its policy issuer is "Unknown" and it carries the
tag `kvca-ca` naming its CA's certificate in the same vault. CA certificates
(tag `kvca-role`) are never renewed here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Mapping

from cryptography import x509

from kvca_core import capolicy, cawatch, clock, notify
from kvca_core.errors import (
    Busy,
    Conflict,
    InvalidRequest,
    KvcaError,
    NotFound,
    NotManaged,
    Throttled,
    UpstreamError,
)
from kvca_core.authority import LoadedCA, parse_secret, read_certificate
from kvca_core.events import NAME_RE, pending_request_event
from urllib.parse import urlparse

from kvca_core.model import (
    CA_ROLE_TAG,
    CA_TAG,
    CA_VERSION_TAG,
    CHAIN_TAG,
    CHAIN_WITH_ROOT,
    CHAIN_WITHOUT_ROOT,
    RESPONDER_TAG,
    REVOCATION_TAGS,
    REVOKED_SERIAL_TAG,
    ROTATED_TAG,
    URIS_TAG,
    URIS_TAG_MAX,
    CertificatePolicy,
    CertificateVersion,
    KeySpec,
    PendingRequest,
)
from kvca_core.signing import InsecureRequest, IssuanceUrls, Profile, issue_leaf, names_subject, parse_subject, precheck
from kvca_core.signing.names import normalize_dns_name, normalize_email, normalize_uri
from kvca_core.signing.policy import responder_policy

logger = logging.getLogger(__name__)

UNKNOWN_ISSUER = "Unknown"
# An explicit renew of a version younger than this is taken as a duplicate of the
# renewal that just made it (an HTTP retry, a second click racing an event).
FRESH = dt.timedelta(minutes=5)

# Exportable keys by default, for every profile: Application Gateway, API Management, App Service
# and Container Apps read the certificate's secret and need the private key in the PFX, and an MQTT
# device or mTLS client needs its own key (keyvault-facts.md "What the consumers of kvca's
# certificates need"). `exportable: false` asks for a key that never leaves the vault.
# The OCSP responder's key never leaves the vault (revocation.py): it answers for the CA.
EXPORTABLE_BY_DEFAULT = {Profile.SERVER: True, Profile.CLIENT: True, Profile.SERVER_CLIENT: True, Profile.OCSP: False}
# The root in the merged chain (leaf, intermediates, root): API Management and App Service require
# the full chain including the root in the PFX (keyvault-facts.md), so certificates that serve TLS
# carry it. A client presents its chain to a server that holds the trust anchor already (Event
# Grid's MQTT broker is given the immediate issuer; RFC 8446 4.4.2 lets the root be left out), so
# device certificates stay without it. `include_root` chooses per request; CHAIN_TAG keeps it.
# The OCSP responder's certificate travels in its answers (RFC 6960 4.2.2.2), never as a chain.
ROOT_IN_CHAIN_BY_DEFAULT = {Profile.SERVER: True, Profile.CLIENT: False, Profile.SERVER_CLIENT: True,
                            Profile.OCSP: False}
# Key Vault's create limit: 20 software-key creates per vault per 10 s (keyvault-facts.md
# "Throttling"; a certificate create makes a key). issue_many keeps below it.
CREATE_LIMIT, CREATE_WINDOW = 20, 10.0

SIGNED, RENEWED, ISSUED, REQUESTED, SKIPPED, FAILED = "signed", "renewed", "issued", "requested", "skipped", "failed"
CANCELLED = "cancelled"
ALREADY_ISSUED = "already issued"  # the reason issue_many gives a certificate an earlier run issued
WOULD_SIGN, WOULD_RENEW = "would-sign", "would-renew"


# --- results -------------------------------------------------------------------------------------
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
    """What a sweep did (JSON: `sweep`): counts, and every managed certificate's outcome."""

    OBJECT = "sweep"

    scanned: int = 0  # every certificate listed
    managed: int = 0  # those carrying the kvca-ca tag
    signed: int = 0
    renewed: int = 0
    skipped: int = 0
    failed: int = 0
    failures: tuple[tuple[str, str], ...] = ()  # (certificate, reason)
    outcomes: tuple[Outcome, ...] = ()
    dry_run: bool = False
    seconds: float = 0.0
    # The vault's CAs within KVCA_CA_RENEW_BEFORE_DAYS of their notAfter, or past it (cawatch.py).
    ca_warnings: tuple[cawatch.CAWarning, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned, "managed": self.managed, "signed": self.signed,
            "renewed": self.renewed, "skipped": self.skipped, "failed": self.failed,
            "failures": [{"name": n, "reason": r} for n, r in self.failures],
            "dry_run": self.dry_run, "seconds": round(self.seconds, 3),
            # Each certificate's outcome, by name: with dry_run, which would be signed or renewed.
            "outcomes": [o.to_dict() for o in self.outcomes],
            "ca_warnings": [w.to_dict() for w in self.ca_warnings],
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
    state: str  # valid | due | expired | pending | disabled | revoked
    version: str | None = None
    serial: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["sans"] = list(self.sans)
        for key in ("not_before", "not_after"):
            body[key] = body[key].isoformat() if body[key] else None
        return body


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
    renew_at: dt.datetime | None
    policy: CertificatePolicy | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info.to_dict(), "managed": self.managed, "why_not_managed": self.why_not_managed,
            "issuer": self.issuer, "sha256": self.sha256, "tags": dict(self.tags), "chain": list(self.chain),
            "pending": self.pending, "renew_at": self.renew_at.isoformat() if self.renew_at else None,
        }


@dataclass(frozen=True)
class IssueRequest:
    """A new certificate: what `POST /api/certificates` and `kvca request` take."""

    name: str
    ca: str
    dns_names: tuple[str, ...] = ()
    subject: str | None = None
    profile: str = "server"
    key: str = "ec-p256"
    validity_months: int = 12
    content_type: str = "application/x-pkcs12"
    emails: tuple[str, ...] = ()  # email SANs (Key Vault's x509_props.sans.emails)
    uris: tuple[str, ...] = ()  # URI SANs: kept in the URIS_TAG tag, see model.py
    exportable: bool | None = None  # None: the profile's default (EXPORTABLE_BY_DEFAULT)
    include_root: bool | None = None  # None: the profile's default (ROOT_IN_CHAIN_BY_DEFAULT)

    FIELDS = ("name", "ca", "dns_names", "subject", "profile", "key", "validity_months", "content_type",
              "emails", "uris", "exportable", "include_root", "sign")

    @classmethod
    def from_mapping(cls, data: Any) -> "IssueRequest":
        """Strict: unknown fields and wrong types are refused, naming the field."""
        if not isinstance(data, Mapping):
            raise InvalidRequest("the request body must be a JSON object", subject="request")
        unknown = sorted(set(data) - set(cls.FIELDS))
        if unknown:
            raise InvalidRequest(f"unknown field(s) {', '.join(map(repr, unknown))}", subject="request",
                                 hint=f"known fields: {', '.join(cls.FIELDS)}")

        def text(key: str, required: bool = False) -> str | None:
            value = data.get(key)
            if value is None:
                if required:
                    raise InvalidRequest(f"field {key!r} is required", subject="request")
                return None
            if not isinstance(value, str) or not value.strip() or len(value) > 1024:
                raise InvalidRequest(f"field {key!r} must be a non-empty string", subject="request")
            return value.strip()

        def strings(key: str) -> tuple[str, ...]:
            values = data.get(key, [])
            if values is None:
                return ()
            if isinstance(values, str) or not isinstance(values, (list, tuple)) \
                    or not all(isinstance(v, str) for v in values) or len(values) > 1000:
                raise InvalidRequest(f"field {key!r} must be a list of strings", subject="request")
            return tuple(v.strip() for v in values)

        def flag(key: str) -> bool | None:
            value = data.get(key)
            if value is not None and not isinstance(value, bool):
                raise InvalidRequest(f"field {key!r} must be true or false, got {str(value)[:40]!r}",
                                     subject="request")
            return value

        dns = strings("dns_names")
        months = data.get("validity_months", 12)
        if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
            raise InvalidRequest(f"field 'validity_months' must be a whole number from 1 to 120, got {months!r}",
                                 subject="request")
        content = text("content_type") or "application/x-pkcs12"
        if content not in ("application/x-pkcs12", "application/x-pem-file"):
            raise InvalidRequest(f"field 'content_type' must be application/x-pkcs12 or application/x-pem-file, "
                                 f"got {content!r}", subject="request")
        emails, uris = strings("emails"), strings("uris")
        # The names' syntax needs no policy, so it is checked here, where every caller (one request,
        # an HTTP batch, a fleet file) refuses a malformed item before anything is created; whether
        # the CA's policy allows the names is `precheck`'s, with the policy.
        for field, values, check in (("dns_names", dns, normalize_dns_name), ("emails", emails, normalize_email),
                                     ("uris", uris, normalize_uri)):
            for value in values:
                try:
                    check(value)
                except InvalidRequest as exc:
                    raise InvalidRequest(f"field {field!r}: {exc.message}", subject="request", step=exc.step,
                                         hint=exc.hint) from None
        return cls(name=text("name", True), ca=text("ca", True), dns_names=dns,
                   subject=text("subject"), profile=text("profile") or "server", key=text("key") or "ec-p256",
                   validity_months=months, content_type=content, emails=emails, uris=uris,
                   exportable=flag("exportable"), include_root=flag("include_root"))


# --- the due rule --------------------------------------------------------------------------------
def renewal_time(not_before: dt.datetime | None, expires_on: dt.datetime | None,
                 renew_before_days: int) -> dt.datetime | None:
    """When a version becomes due: `renew_before_days` before it expires, but never
    before two thirds of its lifetime have passed.

    The second half matters for short lifetimes: a 20-day certificate with a
    30-day window would be due the moment it is issued, and renewal would loop
    (Key Vault raises CertificateNearExpiry for every version entering its
    last 30 days). Two thirds is the point ACME clients such as certbot renew
    at; for the usual 1-year certificate the window decides.
    """
    if expires_on is None:
        return None
    window = expires_on - dt.timedelta(days=renew_before_days)
    if not_before is None or not_before >= expires_on:
        return window
    return max(window, not_before + (expires_on - not_before) * 2 / 3)


def due_state(version: CertificateVersion, now: dt.datetime, renew_before_days: int) -> tuple[bool, str]:
    at = renewal_time(version.not_before, version.expires_on, renew_before_days)
    if at is None:
        return False, "the current version has no expiry date"
    if now >= at:
        return True, f"due since {at:%Y-%m-%d %H:%M} (expires {version.expires_on:%Y-%m-%d %H:%M})"
    return False, f"not due: renews from {at:%Y-%m-%d %H:%M} (expires {version.expires_on:%Y-%m-%d %H:%M})"


# --- leaves of a rotated CA ----------------------------------------------------------------------
@dataclass(frozen=True)
class Rotation:
    """A CA whose current version `kvca ca rotate` made: that version, and when it was rotated."""

    ca: str
    version: str
    rotated_at: dt.datetime


def rotation_of(ca: str, version: CertificateVersion) -> Rotation | None:
    """The rotation the CA's current version records (tag ROTATED_TAG), or None. Vault data: a
    value that is not an ISO 8601 time counts as absent."""
    raw = (version.tags or {}).get(ROTATED_TAG)
    if not raw or not version.version:
        return None
    try:
        at = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return Rotation(ca, version.version, at)


def move_time(name: str, rotation: Rotation, window: dt.timedelta) -> dt.datetime:
    """When a leaf of the older CA version becomes due: its own point of the window, from a hash
    of its name. Deterministic (every instance and every sweep agrees; nothing is stored) and
    even across a fleet, so thousands of leaves do not all ask Key Vault for a new key in the
    same sweep: the vault creates at most 20 keys per 10 s (keyvault-facts.md "Throttling")."""
    seconds = max(1, int(window.total_seconds()))
    offset = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % seconds
    return rotation.rotated_at + dt.timedelta(seconds=offset)


def moved_state(version: CertificateVersion, rotation: Rotation, now: dt.datetime,
                window: dt.timedelta) -> tuple[bool, str] | None:
    """None when the leaf version was issued by the CA's current version; otherwise (due now?,
    why). Decided from what a list item holds (tags, nbf), so a sweep that moves nothing costs
    no call per leaf.

    Issued by which CA version: the tag CA_VERSION_TAG, which kvca writes at every merge. A
    leaf without it (signed before kvca wrote the tag, or holding Key Vault's 15 tags already)
    is judged by its notBefore: one from before the rotation came from the older version. The
    signer backdates notBefore by 5 minutes (issue.BACKDATE), so a leaf the new version signed
    within 5 minutes of the rotation is also taken for an old one and renewed once more; a
    leaf the old version signed is never missed, even one signed while the new version was
    being merged."""
    tagged = (version.tags or {}).get(CA_VERSION_TAG)
    if tagged:
        if tagged == rotation.version:
            return None
    elif version.not_before is not None and version.not_before >= rotation.rotated_at:
        return None
    at = move_time(version.name, rotation, window)
    what = (f"issued by an earlier version of CA '{rotation.ca}' (rotated "
            f"{rotation.rotated_at:%Y-%m-%d %H:%M} UTC)")
    if now >= at:
        return True, what
    return False, f"not due: {what}; moves onto the new version from {at:%Y-%m-%d %H:%M}"


# --- helpers -------------------------------------------------------------------------------------
def _check_name(name: Any, what: str = "certificate") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest(f"{str(name)[:130]!r} is not a Key Vault certificate name "
                             f"(1-127 letters, digits and '-')", subject=what)
    return name


def managed_ca(name: str, version: CertificateVersion, policy: CertificatePolicy | None) -> str:
    """The CA that manages this certificate, or NotManaged saying why not."""
    subject = f"certificate '{name}'"
    role = version.tags.get(CA_ROLE_TAG)
    if role:
        raise NotManaged(f"is a CA certificate ({CA_ROLE_TAG}={role}); kvca never renews CA certificates "
                         f"automatically", subject=subject)
    ca = version.tags.get(CA_TAG)
    if not ca:
        raise NotManaged(f"has no {CA_TAG} tag, so kvca does not manage it", subject=subject,
                         hint=f"tag it {CA_TAG}=<CA name> and use issuer Unknown to hand it to kvca")
    if not NAME_RE.match(ca) or ca == name:
        raise NotManaged(f"its {CA_TAG} tag {ca[:130]!r} does not name another certificate of the vault",
                         subject=subject)
    if policy is not None and policy.issuer_name.lower() != UNKNOWN_ISSUER.lower():
        raise NotManaged(f"its policy issuer is {policy.issuer_name!r}; kvca signs only issuer 'Unknown' "
                         f"(a non-integrated CA)", subject=subject)
    return ca


def _serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _log(op: str, outcome: Outcome) -> Outcome:
    logger.info("kvca op=%s certificate=%s version=%s serial=%s outcome=%s reason=%s",
                op, outcome.name, outcome.version, outcome.serial, outcome.action, outcome.reason)
    for warning in outcome.warnings:
        logger.warning("kvca op=%s certificate=%s warning=%s", op, outcome.name, warning)
    return outcome


async def _logged(op: str, name: Any, coro) -> Outcome:
    try:
        return _log(op, await coro)
    except KvcaError as exc:
        # Not managed is an everyday answer (Key Vault sends events for every certificate), not a problem.
        log = logger.info if isinstance(exc, NotManaged) else logger.warning
        log("kvca op=%s certificate=%s outcome=%s kind=%s reason=%s", op, name,
            "refused" if exc.http_status < 500 else "error", exc.kind, exc)
        raise


async def _current(ctx, name: str) -> CertificateVersion:
    """The current version (the newest completed one: `Vault.get_certificate`), with
    its policy; for a certificate whose only version is pending, that version (cer None).
    Key Vault answers GET for it (keyvault-facts.md, second round); a 404 all the same falls
    back to the versions listing."""
    try:
        return await ctx.vault.get_certificate(name)
    except NotFound:
        newest = None
        try:
            async for version in ctx.vault.list_versions(name):
                if newest is None or (version.created_on or dt.datetime.min.replace(tzinfo=dt.timezone.utc)) > \
                        (newest.created_on or dt.datetime.min.replace(tzinfo=dt.timezone.utc)):
                    newest = version
        except NotFound:
            pass
        if newest is None:
            raise NotFound("no such certificate in the vault", subject=f"certificate '{name}'") from None
        return newest


async def _policy_of(ctx, current: CertificateVersion) -> CertificatePolicy:
    """The policy a versionless GET returned with the version, or (a listing, a fallback) read."""
    return current.policy if current.policy is not None else await ctx.vault.get_policy(current.name)


async def _load_ca(ctx, ca_name: str, cas: dict[str, asyncio.Future] | None) -> LoadedCA:
    """The CA, checked against the vault once per sweep (`cas`: one shared load per CA, which
    the sweep's workers await together) rather than once per certificate."""
    if cas is None:
        return await ctx.authority.load(ca_name)
    if ca_name not in cas:
        cas[ca_name] = asyncio.ensure_future(ctx.authority.load(ca_name))
    return await asyncio.shield(cas[ca_name])


def _pending_status(pending: PendingRequest | None) -> str:
    if pending is None:
        return "no pending request"
    if pending.cancellation_requested or pending.status.lower() == "cancelled":
        return "the pending request was cancelled"
    return f"the pending request is {pending.status}"


def root_in_chain(tags: Mapping[str, str], profile: Profile) -> bool:
    """Whether the merged chain ends with the root: the certificate's CHAIN_TAG, else the
    profile's default. Tags are vault data: a value kvca did not write counts as absent."""
    value = tags.get(CHAIN_TAG)
    if value == CHAIN_WITH_ROOT:
        return True
    if value == CHAIN_WITHOUT_ROOT:
        return False
    return ROOT_IN_CHAIN_BY_DEFAULT[profile]


def tagged_uris(tags: Mapping[str, str]) -> tuple[str, ...]:
    """The URI SANs a certificate asks for through URIS_TAG (model.py says why a tag). Untrusted:
    the signer checks each like a name from the CSR."""
    return tuple((tags.get(URIS_TAG) or "").split())


def _request_tags(ca_name: str, uris: tuple[str, ...], include_root: bool) -> dict[str, str]:
    tags = {CA_TAG: ca_name, CHAIN_TAG: CHAIN_WITH_ROOT if include_root else CHAIN_WITHOUT_ROOT}
    if uris:
        value = " ".join(uris)
        if len(value) > URIS_TAG_MAX:
            raise InvalidRequest(f"the URI SANs take {len(value)} characters; Key Vault keeps them in the "
                                 f"{URIS_TAG} tag, which holds at most {URIS_TAG_MAX}", subject="request")
        tags[URIS_TAG] = value
    return tags


def _next_version_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags a new version takes over from the current one (kvca-ca, kvca-chain, kvca-uris,
    a user's own): all but a revocation record, which stays on the revoked version, so that
    replacing a revoked certificate gives a valid one and the CRL keeps the old serial once;
    and the CA version that signed the old one (CA_VERSION_TAG), which the merge writes anew."""
    return {k: v for k, v in tags.items() if k not in REVOCATION_TAGS and k != CA_VERSION_TAG}


# Key Vault keeps at most 15 tags per object (keyvault-facts.md; the merge of a 16th is a 400).
MAX_TAGS = 15


def _merged_tags(tags: Mapping[str, str], loaded: LoadedCA) -> dict[str, str]:
    """The tags of a version kvca merges: the ones passed on, and the CA version that signed it
    (what the sweep moves leaves by after a rotation), when there is room for one more tag; a
    leaf without it is judged by its notBefore (moved_state)."""
    merged = _next_version_tags(tags)
    if loaded.version and len(merged) < MAX_TAGS:
        merged[CA_VERSION_TAG] = loaded.version
    return merged


# --- signing -------------------------------------------------------------------------------------
async def _sign(ctx, name: str, pending: PendingRequest, tags: Mapping[str, str],
                policy: CertificatePolicy, ca_name: str, action: str, loaded: LoadedCA | None = None) -> Outcome:
    """CSR -> policy-checked leaf -> merge. Losing a merge race to another trigger is a no-op.
    `loaded`: the CA, when the caller has just loaded it (saves a vault round trip)."""
    if pending.csr is None:
        raise InvalidRequest("the pending request carries no CSR", subject=f"certificate '{name}'")
    if loaded is None:
        loaded = await ctx.authority.load(ca_name)
    settings = ctx.settings
    ipolicy = await ctx.authority.policy(loaded)  # the CA's stored policy, else the setting's default
    if tags.get(RESPONDER_TAG) == ca_name and name == f"{ca_name}-ocsp" and settings.ocsp_url:
        ipolicy = responder_policy(ipolicy, urlparse(settings.ocsp_url).hostname or "")  # revocation.py
    issued = await issue_leaf(
        pending.csr, ca=loaded.issuing, policy=ipolicy,
        requested_ekus=policy.ekus, validity_months=policy.validity_months, now=clock.now(),
        urls=IssuanceUrls(crl=settings.crl_url or None, aia=settings.aia_url or None,
                          ocsp=f"{settings.ocsp_url}/{ca_name}" if settings.ocsp_url else None),
        uris=tagged_uris(tags))
    try:
        merged = await ctx.vault.merge(name, issued.chain_der(include_root=root_in_chain(tags, issued.profile)),
                                       tags=_merged_tags(tags, loaded))
    except Busy as exc:
        # Someone else is changing this request right now (most likely merging it): not a
        # failure. Whatever they do, the request ends merged or withdrawn, or a later pass
        # (the sweep, a redelivered event) signs it.
        return Outcome(name, SKIPPED, reason=f"not merged now: {exc.message}")
    except (Conflict, NotFound, InvalidRequest):
        after = await ctx.vault.get_pending(name)
        if after is None or after.status.lower() == "completed":
            # Another trigger merged this request while we signed: one version, theirs.
            return Outcome(name, SKIPPED, reason="signed concurrently by another trigger")
        if not after.in_progress or after.request_id != pending.request_id:
            return Outcome(name, SKIPPED, reason=f"not merged: meanwhile {_pending_status(after)}")
        raise
    leaf = issued.leaf
    return Outcome(name, action, version=merged.version, serial=_serial(leaf),
                   reason=f"signed by CA '{ca_name}'", not_after=leaf.not_valid_after_utc,
                   warnings=tuple(issued.warnings))


def _just_completed(current: CertificateVersion, now: dt.datetime) -> Outcome | None:
    """A request pending on a version completed moments ago is left for a later pass.

    It is most likely a duplicate: a trigger that decided "due" just before another
    trigger finished the renewal creates a second request, notices the new version
    and withdraws its request (`_renew`). Signing it in the meantime would make a
    second version. A request that is still there after FRESH is real (a "New
    Version" made by hand) and the next sweep signs it.
    """
    if current.cer is not None and current.created_on is not None and now - current.created_on < FRESH:
        # max: kvca's clock may lag the vault's by a second (clock.py), never a negative age.
        age = max(0, int((now - current.created_on).total_seconds()))
        return Outcome(current.name, SKIPPED, version=current.version,
                       reason=f"version {current.version} was completed {age} s ago; the pending request "
                              f"is left for a later pass")
    return None


async def _sign_pending(ctx, name: str, *, action: str = SIGNED, pending: PendingRequest | None = None,
                        cas: dict[str, asyncio.Future] | None = None) -> Outcome:
    """`pending`: the request, when the caller has just read it."""
    if pending is None:
        pending = await ctx.vault.get_pending(name)
    if pending is None or not pending.in_progress:
        try:
            await ctx.vault.get_certificate(name)
        except NotFound:
            if pending is None:
                raise NotFound("no such certificate in the vault", subject=f"certificate '{name}'") from None
        return Outcome(name, SKIPPED, reason=f"nothing to sign: {_pending_status(pending)}")
    current = await _current(ctx, name)
    policy = await _policy_of(ctx, current)
    ca_name = managed_ca(name, current, policy)
    wait = _just_completed(current, clock.now())
    if wait is not None:
        return wait
    loaded = await _load_ca(ctx, ca_name, cas)
    return await _sign(ctx, name, pending, current.tags, policy, ca_name, action, loaded)


async def sign_pending(ctx, name: str) -> Outcome:
    """Sign the certificate's pending request, if there is one in progress; otherwise a no-op that says so."""
    _check_name(name)
    return await _told_if_failed(ctx, "sign_pending", name, _sign_pending(ctx, name))


def _is_renewal_failure(exc: KvcaError, name: str) -> bool:
    """Whether a refusal of renew/sign_pending is a renewal that failed, worth a webhook notice.
    Not: a certificate kvca does not manage (Key Vault sends events for all), a malformed or
    conflicting request (the caller is told in the answer), the certificate itself gone, and an
    upstream failure (Event Grid redelivers it for up to 24 h: a notice per attempt would flood;
    the sweep tells a failure that lasts)."""
    if isinstance(exc, (NotManaged, InvalidRequest, Conflict, UpstreamError)):
        return False
    if isinstance(exc, NotFound) and exc.subject == f"certificate '{name}'":
        return False
    return True


async def _told_if_failed(ctx, op: str, name: str, coro) -> Outcome:
    """`_logged`, and a webhook notice (notify.py) when the renewal or signing failed, posted in
    the background: the caller (an HTTP client, Event Grid) gets its answer without waiting for
    the webhook, which may take three attempts of 10 s."""
    try:
        return await _logged(op, name, coro)
    except KvcaError as exc:
        if _is_renewal_failure(exc, name):
            await notify.renewals_failed(ctx, [(name, str(exc))], source=op, background=True)
        raise


# --- renewal -------------------------------------------------------------------------------------
def _fresh(current: CertificateVersion, now: dt.datetime) -> Conflict | None:
    """The refusal of an explicit renewal that would repeat one completed moments ago (FRESH)."""
    if current.created_on is None or now - current.created_on >= FRESH:
        return None
    age = int((now - current.created_on).total_seconds())
    return Conflict(f"version {current.version} was completed {age} s ago, so a renewal just happened; "
                    f"not renewing it again", subject=f"certificate '{current.name}'",
                    hint="renew with force to make another version anyway")


async def _renew(ctx, name: str, *, force: bool, version: str | None, now_asked: bool = False,
                 min_age: dt.timedelta | None = None,
                 cas: dict[str, asyncio.Future] | None = None,
                 also_due: Callable[[CertificateVersion, dt.datetime], tuple[bool, str] | None] | None = None,
                 ) -> Outcome:
    """Key Vault has no conditional create, so "one renewal, one version" is kept by
    checking, after the create, that the version we judged is still the current one:

    - a create that meets a pending request (409) helps sign that request, if the
      version it judged is still current (the request is the same renewal);
    - a create that succeeds re-reads the current version: if another trigger
      completed a renewal in between, our request is a duplicate and is withdrawn
      unsigned (its never-completed version stays behind, disabled, and is passed
      over as "current": `Vault.get_certificate`);
    - a request found pending on a version completed moments ago is left alone
      (`_just_completed`), since it may be such a duplicate about to be withdrawn.

    `also_due`: a second due rule the sweep adds (moved_state: a leaf of a rotated CA's older
    version), judged again on the version read here.

    Calls: the current version with its policy, the create (its answer carries the
    CSR), the re-read, the merge; and the CA's version check, once per sweep.
    """
    vault = ctx.vault
    current = await _current(ctx, name)
    if not current.completed:
        # Only a pending version exists (created in the portal, or a crashed issue): sign it.
        return await _sign_pending(ctx, name, action=SIGNED, cas=cas)
    if version and version != current.version:
        if now_asked:
            raise Conflict(f"version {version} is no longer current (current: {current.version})",
                           subject=f"certificate '{name}'")
        return Outcome(name, SKIPPED, version=current.version,
                       reason=f"version {version} is no longer current (current: {current.version})")
    policy = await _policy_of(ctx, current)
    ca_name = managed_ca(name, current, policy)
    now = clock.now()
    if now_asked:
        # A person asked for a new version now: one completed moments ago is said, not
        # silently repeated (unless force), and an HTTP caller is rate-limited (min_age).
        refusal = None if force else _fresh(current, now)
        if refusal is not None:
            raise refusal
        if min_age is not None and (current.created_on is None or now - current.created_on < min_age):
            # The rate limit of renewals on demand: `created` of a completed version is when it
            # completed (keyvault-facts.md), so this counts from the last renewal's merge.
            since = f"{int((now - current.created_on).total_seconds() // 60)} minutes ago" \
                if current.created_on is not None else "at an unknown time"
            raise Conflict(f"a renewal on demand needs the current version to be at least "
                           f"{int(min_age.total_seconds() // 60)} minutes old; version {current.version} "
                           f"was completed {since}", subject=f"certificate '{name}'",
                           hint="KVCA_FORCE_RENEW_MIN_AGE_MINUTES sets the limit")
        not_now = ""
    else:
        due, why = due_state(current, now, ctx.settings.renew_before_days)
        if not due and also_due is not None:
            due, why = also_due(current, now) or (due, why)
        not_now = why if not due else "" if current.enabled else "the current version is disabled"
    if not_now:
        # Nothing to renew; a request pending all the same (a "New Version" made by hand,
        # a renewal in flight) is signed, unless its version has only just completed.
        pending = await vault.get_pending(name)
        if pending is not None and pending.in_progress:
            return _just_completed(current, now) or \
                await _sign(ctx, name, pending, current.tags, policy, ca_name, RENEWED)
        return Outcome(name, SKIPPED, version=current.version, reason=not_now)
    # The CA must be usable before anything changes in the vault.
    loaded = await _load_ca(ctx, ca_name, cas)
    concurrent = Outcome(name, SKIPPED, reason="renewed concurrently by another trigger")
    try:
        pending = await vault.create_new_version(name, tags=_next_version_tags(current.tags), policy=policy)
    except Conflict:
        # A request is pending: another trigger's renewal, or a "New Version" made by hand.
        # Finish it rather than start a second, as long as it renews the version we judged.
        pending = await vault.get_pending(name)
        if pending is None or not pending.in_progress or (await _current(ctx, name)).version != current.version:
            return concurrent
        wait = None if force else _just_completed(current, clock.now())
        return wait or await _sign(ctx, name, pending, current.tags, policy, ca_name, RENEWED, loaded)
    latest = await _current(ctx, name)
    if latest.version != current.version:
        again = await vault.get_pending(name)
        if again is not None and again.in_progress and again.request_id == pending.request_id:
            try:
                await vault.delete_pending(name)
            except (Busy, NotFound):
                pass  # someone else is already merging or withdrawing it
        return Outcome(name, SKIPPED, version=latest.version, reason=concurrent.reason)
    return await _sign(ctx, name, pending, current.tags, policy, ca_name, RENEWED, loaded)


async def renew(ctx, name: str, *, now: bool = False, force: bool = False, version: str | None = None,
                min_age: dt.timedelta | None = None) -> Outcome:
    """Renew the certificate.

    now=False (events, the sweep): only when the current version is due; otherwise `skipped`,
    saying why. now=True (a person: `kvca renew`, `POST .../renew`): a new signed version now;
    if a renewal completed moments ago (FRESH) it is a Conflict saying so, never a quiet skip,
    unless `force` (which implies now). `version`: act only while it is current (an event
    naming an older version is a no-op). `min_age`: a renewal on demand is refused (Conflict)
    while the current version is younger (the HTTP API's rate limit; force does not lift it)."""
    _check_name(name)
    return await _told_if_failed(ctx, "renew", name, _renew(ctx, name, force=force, version=version,
                                                           now_asked=now or force, min_age=min_age))


async def certificate_scope(ctx, name: str) -> tuple[str, CertificatePolicy]:
    """(the CA its kvca-ca tag names, its policy): what the certificate's next version would be
    signed by and name. The HTTP API's access rules decide sign, renew and cancel from it."""
    _check_name(name)
    current = await _current(ctx, name)
    return current.tags.get(CA_TAG, ""), await ctx.vault.get_policy(name)


# --- sweep ---------------------------------------------------------------------------------------
def _pending_only(version: CertificateVersion) -> bool:
    # Pending shows as the missing certificate (x5t/cer), never as missing dates: Key Vault
    # gives a pending version nbf/exp computed from the policy (keyvault-facts.md, second round).
    return not version.completed


class _SweepRotations:
    """Per sweep: each CA's current version read once (was it made by `kvca ca rotate`?), and
    the pace of the renewals a rotation causes: at most Key Vault's create limit, however many
    leaves the window makes due in one sweep."""

    def __init__(self) -> None:
        self.reads: dict[str, asyncio.Future] = {}
        self.rate = _CreateRate(CREATE_LIMIT, CREATE_WINDOW)

    async def of(self, ctx, ca_name: str) -> Rotation | None:
        if ca_name not in self.reads:
            self.reads[ca_name] = asyncio.ensure_future(self._read(ctx, ca_name))
        return await asyncio.shield(self.reads[ca_name])

    @staticmethod
    async def _read(ctx, ca_name: str) -> Rotation | None:
        try:
            return rotation_of(ca_name, await ctx.vault.get_certificate(ca_name))
        except KvcaError:
            return None  # the CA's own trouble is said when one of its leaves is signed


async def _sweep_one(ctx, listed: CertificateVersion, dry_run: bool,
                     cas: dict[str, asyncio.Future] | None = None,
                     rotations: _SweepRotations | None = None) -> Outcome:
    """One listed certificate. What the list item holds (tags, nbf/exp, x5t) decides most
    of it; a certificate that is not due costs one call, the pending check: the list item
    shows the current version only, so a "New Version" made by hand on a certificate whose
    current version is completed is visible nowhere else. Whether a leaf is one of a rotated
    CA's older version costs one read per CA per sweep (`rotations`), none per leaf."""
    name = listed.name
    try:
        ca_name = managed_ca(name, listed, None)  # the tag; the policy issuer is checked before signing
        if REVOKED_SERIAL_TAG in listed.tags:  # a revoked certificate is replaced on purpose, never renewed
            return Outcome(name, SKIPPED, version=listed.version, reason="the current version is revoked")
        if _pending_only(listed):
            pending = await ctx.vault.get_pending(name)
            if pending is not None and pending.in_progress:
                if dry_run:
                    return Outcome(name, WOULD_SIGN, reason=_pending_status(pending))
                return await _sign_pending(ctx, name, pending=pending, cas=cas)
            # Nothing in progress: the item shows a withdrawn request's leftover version, or a
            # newer version answered as current while an older one is completed. The current
            # version (the newest completed one) decides from here.
            current = await _current(ctx, name)
            if _pending_only(current):
                return Outcome(name, SKIPPED, reason=f"nothing to sign: {_pending_status(pending)}")
            managed_ca(name, current, current.policy)
            listed = current
        now = clock.now()
        due, why = due_state(listed, now, ctx.settings.renew_before_days)
        rotation, window = None, dt.timedelta(hours=ctx.settings.rotation_window_hours)
        if not due and listed.enabled and rotations is not None:
            rotation = await rotations.of(ctx, ca_name)
            moved = moved_state(listed, rotation, now, window) if rotation is not None else None
            if moved is None:
                rotation = None
            else:
                due, why = moved
        if due and listed.enabled:
            if dry_run:
                return Outcome(name, WOULD_RENEW, reason=why)
            if rotation is None:
                return await _renew(ctx, name, force=False, version=None, cas=cas)
            await rotations.rate.wait()
            outcome = await _renew(ctx, name, force=False, version=None, cas=cas,
                                   also_due=lambda version, at: moved_state(version, rotation, at, window))
            return replace(outcome, reason=f"{why}; {outcome.reason}") if outcome.action == RENEWED else outcome
        pending = await ctx.vault.get_pending(name)
        if pending is not None and pending.in_progress:
            # A "New Version" made by hand (the portal) on a certificate that is not due.
            if dry_run:
                return Outcome(name, WOULD_SIGN, reason="a new version is pending")
            return await _sign_pending(ctx, name, pending=pending, cas=cas)
        return Outcome(name, SKIPPED, reason=why if listed.enabled else "the current version is disabled")
    except NotManaged as exc:
        return Outcome(name, SKIPPED, reason=str(exc))
    except KvcaError as exc:
        return Outcome(name, FAILED, reason=str(exc))
    except Exception as exc:  # one broken certificate never stops the sweep
        logger.exception("kvca op=sweep certificate=%s outcome=error kind=%s", name, type(exc).__name__)
        return Outcome(name, FAILED, reason=f"unexpected error ({type(exc).__name__})")


async def sweep(ctx, *, dry_run: bool = False,
                progress: Callable[[Outcome], None] | None = None) -> SweepSummary:
    """Walk the vault page by page with `KVCA_CONCURRENCY` workers; sign what is pending and renew
    what is due. One failure never stops the others; the summary counts everything."""
    started = time.monotonic()
    queue: asyncio.Queue = asyncio.Queue(maxsize=ctx.settings.concurrency * 2)
    outcomes: list[Outcome] = []
    scanned = 0
    managed = 0
    listing_error: str | None = None
    cas: dict[str, asyncio.Future] = {}  # each CA checked against the vault once per sweep
    watch = cawatch.CAWatch(ctx.settings.ca_renew_before_days)  # the CAs of the same listing
    rotations = _SweepRotations()  # and whether it was rotated, once per sweep

    async def worker() -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            outcome = await _sweep_one(ctx, item, dry_run, cas, rotations)
            if not dry_run and outcome.action != SKIPPED:
                _log("sweep", outcome)
            outcomes.append(outcome)
            if progress is not None:
                try:
                    progress(outcome)
                except Exception:  # a progress bar must not break the sweep
                    logger.debug("sweep progress callback failed", exc_info=True)

    workers = [asyncio.create_task(worker()) for _ in range(ctx.settings.concurrency)]
    try:
        async for listed in ctx.vault.list_certificates(include_pending=True):
            scanned += 1
            watch.observe(listed)
            if CA_TAG not in listed.tags or CA_ROLE_TAG in listed.tags:
                continue
            managed += 1
            await queue.put(listed)
    except KvcaError as exc:
        listing_error = f"listing the vault stopped after {scanned} certificates: {exc}"
        logger.warning("kvca op=sweep outcome=error reason=%s", listing_error)
    finally:
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)

    count = lambda *actions: sum(1 for o in outcomes if o.action in actions)  # noqa: E731
    failures = [(o.name, o.reason) for o in outcomes if o.action == FAILED]
    if listing_error:
        failures.append(("(vault listing)", listing_error))
    warnings = await watch.warnings(ctx)
    summary = SweepSummary(
        scanned=scanned, managed=managed, signed=count(SIGNED, WOULD_SIGN), renewed=count(RENEWED, WOULD_RENEW),
        skipped=count(SKIPPED), failed=len(failures), failures=tuple(failures),
        outcomes=tuple(sorted(outcomes, key=lambda o: o.name)), dry_run=dry_run,
        seconds=time.monotonic() - started, ca_warnings=warnings)
    logger.info("kvca op=sweep scanned=%s managed=%s signed=%s renewed=%s skipped=%s failed=%s dry_run=%s "
                "seconds=%.1f", summary.scanned, summary.managed, summary.signed, summary.renewed,
                summary.skipped, summary.failed, dry_run, summary.seconds)
    for failed_name, reason in summary.failures:
        logger.warning("kvca op=sweep certificate=%s outcome=failed reason=%s", failed_name, reason)
    for warning in warnings:
        logger.warning("kvca op=sweep ca=%s role=%s version=%s outcome=ca-%s days_left=%s", warning.ca,
                       warning.role, warning.version, warning.state, warning.days_left)
    if not dry_run:
        # One notice for all of this sweep's failures, then one per CA warning (once a day).
        # notify.py never raises: the summary stands whatever the webhook answers.
        await notify.renewals_failed(ctx, summary.failures, source="sweep")
        await notify.ca_warnings(ctx, warnings)
    return summary


# --- issue ---------------------------------------------------------------------------------------
def _key_usage_for(key: KeySpec) -> tuple[str, ...]:
    # The leaf's keyUsage by key type (RFC 5280 4.2.1.3; RSA key transport needs keyEncipherment).
    return ("digitalSignature", "keyEncipherment") if key.kty == "RSA" else ("digitalSignature",)


def _policy_key_type(key: KeySpec) -> str:
    return "rsa" if key.kty == "RSA" else {"P-256": "ec-p256", "P-384": "ec-p384", "P-521": "ec-p521"}[key.curve]


def _about(exc: KvcaError, where: str) -> KvcaError:
    """The error, labelled with the certificate it is about (when it names nothing yet)."""
    if exc.subject is None or exc.subject in ("subject", "request"):
        exc.subject = where
        exc.args = (str(exc),)
    return exc


def _asked_for(request: IssueRequest, profile: Profile) -> tuple[str | None, InsecureRequest]:
    """The Key Vault subject and what the request asks for, in the form the signer checks a CSR in."""
    dns_names = tuple(normalize_dns_name(d) for d in request.dns_names)
    emails = tuple(normalize_email(e) for e in request.emails)
    uris = tuple(normalize_uri(u) for u in request.uris)
    subject = request.subject or (f"CN={dns_names[0]}" if dns_names else None)
    if subject is None and not emails:
        # Key Vault's policy needs a subject or a SAN it can hold (DNS names, emails; not URIs).
        raise InvalidRequest("give a subject, or at least one DNS name or email", subject="request")
    x509_subject = parse_subject(subject) if subject else x509.Name([])
    return subject, InsecureRequest(subject=x509_subject, dns_names=dns_names, emails=emails, uris=uris,
                                    ekus=tuple(oid.dotted_string for oid in profile.ekus))


def _policy_differences(found: CertificatePolicy, found_tags: Mapping[str, str], wanted: CertificatePolicy,
                        asked: InsecureRequest) -> list[str]:
    """How a pending request found in the vault differs from the one asked for: names, key
    (type, size or curve, exportable), EKUs and secret format. Completing a request that asked
    for an RSA-2048 exportable key for a caller who asked for EC P-256 would hand them a key
    they did not choose (issue 13)."""
    differences = []
    same_subject = names_subject(found.subject, asked.subject) if found.subject else len(asked.subject) == 0
    if not same_subject:
        differences.append(f"subject {found.subject!r}")
    for label, have, want in (("DNS names", found.dns_names, asked.dns_names),
                              ("emails", found.emails, asked.emails),
                              ("URIs", tagged_uris(found_tags), asked.uris),
                              ("EKUs", found.ekus, wanted.ekus)):
        if sorted(v.lower() for v in have) != sorted(v.lower() for v in want):
            differences.append(f"{label} {', '.join(have) or 'none'}")
    have_key, want_key = found.key, wanted.key
    if have_key.kty.upper() != want_key.kty or (want_key.kty == "RSA" and have_key.size != want_key.size) \
            or (want_key.kty == "EC" and (have_key.curve or "").upper() != want_key.curve):
        differences.append(f"key {have_key.kty} {have_key.size or have_key.curve or ''}".rstrip())
    if have_key.exportable != want_key.exportable:
        differences.append("an exportable key" if have_key.exportable else "a non-exportable key")
    if found.content_type != wanted.content_type:
        differences.append(f"content type {found.content_type}")
    return differences


async def _issue(ctx, request: IssueRequest, sign: bool, existing_ok: bool = False) -> Outcome:
    name = _check_name(request.name)
    capolicy.check_free(name)  # `<CA>-policy` is a CA's policy secret (capolicy.py)
    ca_name = _check_name(request.ca, "CA")
    where = f"certificate '{name}'"
    try:
        profile = Profile.parse(request.profile)
        exportable = EXPORTABLE_BY_DEFAULT[profile] if request.exportable is None else request.exportable
        include_root = ROOT_IN_CHAIN_BY_DEFAULT[profile] if request.include_root is None else request.include_root
        key = KeySpec.parse(request.key, exportable=exportable)
        subject, asked = _asked_for(request, profile)
        loaded = await ctx.authority.load(ca_name)  # an unknown CA is refused before anything is created
        # Every rule the signer applies to the CSR, applied now to the request, before anything is
        # created in the vault: a refusal at signing would leave the pending certificate behind.
        precheck(asked, ca_certificates=loaded.issuing.certificates,
                 policy=await ctx.authority.policy(loaded), profile=profile,
                 validity_months=request.validity_months, now=clock.now(),
                 key_kind=_policy_key_type(key), rsa_bits=key.size)
        tags = _request_tags(ca_name, asked.uris, include_root)
    except KvcaError as exc:
        raise _about(exc, where) from None
    dns_names = asked.dns_names
    policy = CertificatePolicy(
        issuer_name=UNKNOWN_ISSUER, subject=subject or "", dns_names=dns_names, emails=asked.emails,
        ekus=asked.ekus, key_usage=_key_usage_for(key),
        validity_months=request.validity_months, key=key, content_type=request.content_type)
    try:
        existing = await ctx.vault.get_certificate(name)
    except NotFound:
        existing = None
    if existing is not None and existing.cer is not None:
        if existing_ok and existing.tags.get(CA_TAG) == ca_name:
            # issue_many run again after a failure: what the first run issued for the same
            # request is done; a different certificate under that name is not this request's.
            differences = _policy_differences(await ctx.vault.get_policy(name), existing.tags, policy, asked)
            if not differences:
                return Outcome(name, SKIPPED, version=existing.version, reason=ALREADY_ISSUED)
            raise Conflict(f"already exists in the vault with a different request ({'; '.join(differences)})",
                           subject=where, hint="choose another name, or renew it")
        raise Conflict("already exists in the vault", subject=f"certificate '{name}'",
                       hint="renew it instead, or choose another name")
    try:
        pending = await ctx.vault.create_certificate(name, policy, tags=tags)
    except Conflict:
        # A request for this name is already pending (a retried HTTP call, a crashed issue):
        # finish it rather than refuse, if it is ours and asks for the same names, key and EKUs.
        pending = await ctx.vault.get_pending(name)
        if pending is None or not pending.in_progress:
            raise
        current = await _current(ctx, name)
        if current.tags.get(CA_TAG) != ca_name:
            raise
        found = await ctx.vault.get_policy(name)
        differences = _policy_differences(found, current.tags, policy, asked)
        if differences:
            raise Conflict(f"a different request for this name is already pending ({'; '.join(differences)})",
                           subject=where, hint=f"cancel it first (kvca cancel {name}), or ask for what it asks for")
        policy = found
    if not isinstance(pending, PendingRequest):
        raise Conflict("the vault completed the certificate without a pending request",
                       subject=f"certificate '{name}'")
    if not sign:
        if ctx.publisher is not None:
            await ctx.publisher.publish(pending_request_event(
                vault_name=ctx.vault.vault_name, vault_url=ctx.vault.vault_url, name=name))
            return Outcome(name, REQUESTED, reason="pending; published Kvca.CertificatePendingRequest")
        return Outcome(name, REQUESTED, reason="pending; the next sweep signs it")
    return await _sign(ctx, name, pending, tags, policy, ca_name, ISSUED, loaded)


async def issue(ctx, request: IssueRequest, *, sign: bool = True) -> Outcome:
    """Create a managed certificate (issuer Unknown, key made inside the vault) and sign it,
    or (`sign=False`) leave it pending and announce it with Kvca.CertificatePendingRequest."""
    return await _logged("issue", getattr(request, "name", None), _issue(ctx, request, sign))


class _CreateRate:
    """At most `limit` certificate creates start in any `window` seconds (a sliding window)."""

    def __init__(self, limit: int, window: float, *, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.limit, self.window = limit, window
        self.monotonic, self.sleep = monotonic, sleep
        self.starts: list[float] = []
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:  # one waiter at a time keeps the order fair
            while True:
                now = self.monotonic()
                self.starts = [t for t in self.starts if now - t < self.window]
                if len(self.starts) < self.limit:
                    self.starts.append(now)
                    return
                await self.sleep(self.window - (now - self.starts[0]))


# A batch is bounded: at 20 creates per 10 s, 100 certificates take about 50 s, well inside the
# 230 s an HTTP call to a Function may last (Azure's load balancer idle timeout).
MAX_BATCH = 100
THROTTLE_RETRIES = 3


async def issue_many(ctx, requests, *, sign: bool = True, limit: int = CREATE_LIMIT,
                     window: float = CREATE_WINDOW,
                     progress: Callable[[Outcome], None] | None = None) -> tuple[Outcome, ...]:
    """`issue` for each request, concurrently but never faster than `limit` creates per `window`
    seconds (Key Vault's create limit), one Outcome per request in the order given. A refusal or
    failure is that request's `failed` outcome and never stops the others. Run again after a
    failure, it resumes: a certificate the earlier run issued is `skipped` ("already issued"), a
    request it left pending is finished. Used by `kvca request --from` and `POST /api/certificates/batch`."""
    requests = list(requests)
    rate = _CreateRate(limit, window)
    outcomes: list[Outcome | None] = [None] * len(requests)
    queue: asyncio.Queue = asyncio.Queue()
    for index, request in enumerate(requests):
        queue.put_nowait(index)

    async def one(request: IssueRequest) -> Outcome:
        name = getattr(request, "name", None) or "(unnamed)"
        for attempt in range(THROTTLE_RETRIES + 1):
            await rate.wait()
            try:
                return await _logged("issue", name, _issue(ctx, request, sign, existing_ok=True))
            except Throttled as exc:
                if attempt == THROTTLE_RETRIES:
                    return Outcome(name, FAILED, reason=str(exc))
                await asyncio.sleep(exc.retry_after if exc.retry_after and exc.retry_after > 0 else window)
            except KvcaError as exc:
                return Outcome(name, FAILED, reason=str(exc))
            except Exception as exc:  # one broken request never stops the batch
                logger.exception("kvca op=issue_many certificate=%s outcome=error kind=%s", name,
                                 type(exc).__name__)
                return Outcome(name, FAILED, reason=f"unexpected error ({type(exc).__name__})")
        raise AssertionError("unreachable")

    async def worker() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            outcome = await one(requests[index])
            outcomes[index] = outcome
            if progress is not None:
                try:
                    progress(outcome)
                except Exception:  # a progress bar must not break the batch
                    logger.debug("issue_many progress callback failed", exc_info=True)

    workers = max(1, min(ctx.settings.concurrency, limit, len(requests)))
    await asyncio.gather(*(worker() for _ in range(workers)))
    return tuple(o for o in outcomes if o is not None)


# --- cancel --------------------------------------------------------------------------------------
async def _cancel(ctx, name: str) -> Outcome:
    try:
        current = await _current(ctx, name)
    except NotFound:
        # A request that was the certificate's only version leaves nothing Key Vault reads back
        # once it is deleted, so a second cancel of it (a retry) cannot be told from a name the
        # vault never knew: both are NotFound, saying that nothing is pending.
        if await ctx.vault.get_pending(name) is None:
            raise NotFound("no such certificate in the vault; nothing is pending for it",
                           subject=f"certificate '{name}'") from None
        raise
    managed_ca(name, current, await ctx.vault.get_policy(name))  # refuses what kvca does not manage
    pending = await ctx.vault.get_pending(name)
    if pending is None or pending.status.lower() == "completed":
        return Outcome(name, SKIPPED, version=current.version if current.cer else None,
                       reason=f"nothing to cancel: {_pending_status(pending)}")
    try:
        # Delete rather than PATCH cancellation_requested: a cancelled operation still blocks a
        # new create until it is deleted (keyvault-facts.md "Cancel" and "DELETE .../pending").
        await ctx.vault.delete_pending(name)
    except NotFound:
        return Outcome(name, SKIPPED, reason="nothing to cancel: the request was completed or withdrawn meanwhile")
    return Outcome(name, CANCELLED, reason="the pending request was deleted unsigned")


async def cancel(ctx, name: str) -> Outcome:
    """Withdraw the pending request of a certificate kvca manages. Idempotent: with nothing
    pending the outcome is `skipped`, saying so."""
    _check_name(name)
    return await _logged("cancel", name, _cancel(ctx, name))


# --- inventory and describe ----------------------------------------------------------------------
def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(v) for v in ext.get_values_for_type(x509.DNSName)) + \
        tuple(str(v) for v in ext.get_values_for_type(x509.IPAddress)) + \
        tuple(str(v) for v in ext.get_values_for_type(x509.RFC822Name))


def _state(version: CertificateVersion, now: dt.datetime, renew_before_days: int, moving: bool = False) -> str:
    """`moving`: an older version of its rotated CA signed it (`_moves_at`). Such a leaf is `due`
    from the rotation on, as the sweep has it queued: it renews it at its point of the window
    (`describe`'s renew_at), or sooner if the due rule says so."""
    if _pending_only(version):
        return "pending"
    if REVOKED_SERIAL_TAG in version.tags:
        return "revoked"
    if not version.enabled:
        return "disabled"
    if version.expires_on is not None and version.expires_on <= now:
        return "expired"
    return "due" if moving or due_state(version, now, renew_before_days)[0] else "valid"


async def _moves_at(ctx, version: CertificateVersion, now: dt.datetime,
                    rotations: _SweepRotations) -> dt.datetime | None:
    """When the sweep moves this leaf onto its CA's current version, or None: the sweep's own rule
    (moved_state: an older version of a rotated CA signed it) and its point of the window
    (move_time). None too for what the sweep does not renew (a CA, a certificate kvca does not
    manage, pending, disabled or revoked). Costs the CA's read once per `rotations` (the sweep's
    per-CA cache, one per inventory or describe call), no call per leaf."""
    try:
        ca_name = managed_ca(version.name, version, None)  # the tags, as the sweep judges a list item
    except NotManaged:
        return None
    if _pending_only(version) or not version.enabled or REVOKED_SERIAL_TAG in version.tags:
        return None
    rotation = await rotations.of(ctx, ca_name)
    if rotation is None:
        return None
    window = dt.timedelta(hours=ctx.settings.rotation_window_hours)
    if moved_state(version, rotation, now, window) is None:
        return None
    return move_time(version.name, rotation, window)


def _info(version: CertificateVersion, now: dt.datetime, renew_before_days: int,
          moves_at: dt.datetime | None = None) -> CertificateInfo:
    cert = read_certificate(version.cer, f"certificate '{version.name}'") if version.cer else None
    subject = cert.subject.rfc4514_string() if cert is not None else ""
    # A pending version's nbf/exp are Key Vault's guesses from the policy, not a certificate's.
    completed = not _pending_only(version)
    not_after = (version.expires_on or (cert.not_valid_after_utc if cert else None)) if completed else None
    return CertificateInfo(
        name=version.name, subject=subject, sans=_sans(cert) if cert is not None else (),
        ca=version.tags.get(CA_TAG, ""), not_before=version.not_before if completed else None,
        not_after=not_after,
        days_left=(not_after - now).days if not_after else None,
        state=_state(version, now, renew_before_days, moving=moves_at is not None), version=version.version,
        serial=_serial(cert) if cert is not None else None)


@dataclass(frozen=True)
class InventoryReport:
    """The inventory and the CA warnings, from one listing of the vault (JSON: `inventory`)."""

    OBJECT = "inventory"

    certificates: tuple[CertificateInfo, ...]
    ca_warnings: tuple[cawatch.CAWarning, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"certificates": [i.to_dict() for i in self.certificates],
                "ca_warnings": [w.to_dict() for w in self.ca_warnings]}


async def inventory(ctx, *, expiring_within_days: int | None = None) -> tuple[CertificateInfo, ...]:
    """The managed certificates (tag kvca-ca), soonest expiry first."""
    return (await inventory_report(ctx, expiring_within_days=expiring_within_days)).certificates


async def inventory_report(ctx, *, expiring_within_days: int | None = None) -> InventoryReport:
    """`inventory`, with the warnings of the vault's CAs nearing expiry (cawatch.py), which the
    same listing shows: `kvca list` prints them, `GET /api/certificates` returns them."""
    if expiring_within_days is not None and (isinstance(expiring_within_days, bool)
                                             or not isinstance(expiring_within_days, int)
                                             or expiring_within_days < 0):
        raise InvalidRequest(f"expiring_within_days must be a whole number >= 0, got {expiring_within_days!r}",
                             subject="inventory")
    watch = cawatch.CAWatch(ctx.settings.ca_renew_before_days)
    listed = [v async for v in ctx.vault.list_certificates(include_pending=True)
              if not watch.observe(v) and CA_TAG in v.tags and CA_ROLE_TAG not in v.tags]
    now = clock.now()
    limit = asyncio.Semaphore(ctx.settings.concurrency)
    rotations = _SweepRotations()  # which CAs were rotated: one read per CA, as in the sweep

    async def one(v: CertificateVersion) -> CertificateInfo:
        # Every item is read in full, pending-looking ones too: an item without a certificate may
        # stand for a newer pending or abandoned version over a completed one (Vault.get_certificate).
        async with limit:
            try:
                full = await ctx.vault.get_certificate(v.name)
            except NotFound:  # deleted while we listed
                full = v
            moves_at = await _moves_at(ctx, full, now, rotations)
        return _info(full, now, ctx.settings.renew_before_days, moves_at)

    infos = await asyncio.gather(*(one(v) for v in listed))
    if expiring_within_days is not None:
        horizon = now + dt.timedelta(days=expiring_within_days)
        infos = [i for i in infos if i.not_after is not None and i.not_after <= horizon]
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return InventoryReport(tuple(sorted(infos, key=lambda i: (i.not_after or far, i.name))),
                           await watch.warnings(ctx, now))


async def describe(ctx, name: str) -> Description:
    _check_name(name)
    current = await _current(ctx, name)
    policy = await _policy_of(ctx, current)
    try:
        managed_ca(name, current, policy)
        managed, why = True, ""
    except NotManaged as exc:
        managed, why = False, exc.message
    pending = await ctx.vault.get_pending(name)
    now = clock.now()
    moves_at = await _moves_at(ctx, current, now, _SweepRotations()) if managed else None
    info = _info(current, now, ctx.settings.renew_before_days, moves_at)
    cert = read_certificate(current.cer, f"certificate '{name}'") if current.cer else None
    chain: tuple[str, ...] = (cert.subject.rfc4514_string(),) if cert is not None else ()
    if cert is not None:
        try:
            content_type, value = await ctx.vault.get_secret_value(name, current.version)
            _key, certs = parse_secret(f"certificate '{name}'", content_type, value)
            del _key, value  # certificates only; any key is dropped at once
            if certs:
                chain = tuple(c.subject.rfc4514_string() for c in certs)
        except KvcaError:
            pass  # no secret access: show the leaf alone
    renew_at = None if _pending_only(current) else \
        renewal_time(current.not_before, current.expires_on, ctx.settings.renew_before_days)
    if moves_at is not None:  # the sweep renews it at whichever comes first
        renew_at = moves_at if renew_at is None else min(renew_at, moves_at)
    return Description(
        info=info, managed=managed, why_not_managed=why,
        issuer=cert.issuer.rfc4514_string() if cert is not None else "",
        sha256=hashlib.sha256(current.cer).hexdigest() if current.cer else None,
        tags=dict(current.tags), chain=chain,
        pending=pending.status if pending is not None else None,
        renew_at=renew_at, policy=policy)
