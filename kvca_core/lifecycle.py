"""The lifecycle centre: what a certificate version's tags and dates mean, and what the sweep would
do with it. Pure: no I/O, no clock of its own (the caller passes `now`).

    verdict(version, now=..., rules=..., rotation=...)   -> Verdict(state, action, reason, at, ...)

The sweep, the inventory (`kvca list`, `GET /api/certificates`), `kvca show`, the Event Grid
handler and revocation all take their answer from `verdict`, so they cannot disagree about
whether a certificate is kvca's, due, or waiting to move onto a rotated CA.

The states (`Verdict.state`), in the order they are decided:

    pending     no version holds a certificate yet (only a request)
    revoked     the version is revoked (the ledger, or the vault's mirror tags)
    disabled    the version is disabled in the vault
    expired     notAfter has passed
    due         kvca's sweep renews it now: the due rule, or its CA was rotated and its point of
                the move window has come
    valid       anything else

A certificate kvca does not manage (no kvca-ca tag, a CA certificate, another issuer) is never
`due`: its state is about the certificate alone and its action is NONE, with the reason.

The actions (`Verdict.action`): SIGN (a request is pending), RENEW, or NONE. `at` is when the
sweep renews it (the due time, or the move time after a rotation, whichever comes first), and
None when the sweep never renews it (not managed, pending, disabled, revoked).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from kvca_core.errors import NotManaged
from kvca_core.model import CertificatePolicy, CertificateVersion
from kvca_core.vocabulary import (
    CA_TAG,
    CA_VERSION_TAG,
    NAME_RE,
    REVOKED_SERIAL_TAG,
    ROLE_TAG,
    ROTATED_TAG,
    UNKNOWN_ISSUER,
    role_of,
    same_name,
)

PENDING, REVOKED, DISABLED, EXPIRED, DUE, VALID = "pending", "revoked", "disabled", "expired", "due", "valid"
STATES = (VALID, DUE, EXPIRED, PENDING, DISABLED, REVOKED)
NONE, SIGN, RENEW = "none", "sign", "renew"

# An explicit renew of a version younger than this is taken as a duplicate of the renewal that
# just made it (an HTTP retry, a second click racing an event).
FRESH = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Rules:
    """The settings the lifecycle depends on (KVCA_RENEW_BEFORE_DAYS, KVCA_ROTATION_WINDOW_HOURS)."""

    renew_before_days: int
    rotation_window: dt.timedelta

    @classmethod
    def of(cls, settings) -> "Rules":
        return cls(settings.renew_before_days, dt.timedelta(hours=settings.rotation_window_hours))


# --- the due rule --------------------------------------------------------------------------------
def renewal_time(not_before: dt.datetime | None, expires_on: dt.datetime | None,
                 renew_before_days: int) -> dt.datetime | None:
    """When a version becomes due: `renew_before_days` before it expires, but never before two
    thirds of its lifetime have passed.

    The second half matters for short lifetimes: a 20-day certificate with a 30-day window would be
    due the moment it is issued, and renewal would loop (Key Vault raises CertificateNearExpiry for
    every version entering its last 30 days). Two thirds is the point ACME clients such as certbot
    renew at; for the usual 1-year certificate the window decides.
    """
    if expires_on is None:
        return None
    window = expires_on - dt.timedelta(days=renew_before_days)
    if not_before is None or not_before >= expires_on:
        return window
    return max(window, not_before + (expires_on - not_before) * 2 / 3)


def due_state(version: CertificateVersion, now: dt.datetime, renew_before_days: int) -> tuple[bool, str]:
    """(due by the due rule alone?, why)."""
    at = renewal_time(version.not_before, version.expires_on, renew_before_days)
    if at is None:
        return False, "the current version has no expiry date"
    if now >= at:
        return True, f"due since {at:%Y-%m-%d %H:%M} (expires {version.expires_on:%Y-%m-%d %H:%M})"
    return False, f"not due: renews from {at:%Y-%m-%d %H:%M} (expires {version.expires_on:%Y-%m-%d %H:%M})"


def external_state(not_before: dt.datetime, not_after: dt.datetime, *, revoked: bool, now: dt.datetime,
                   renew_before_days: int) -> str:
    """The state of a device's newest certificate (one kvca signed for a key outside the vault): the
    device re-enrolls itself, so "due" means it should have by now, by the same due rule as a
    vault certificate's renewal (renewal_time)."""
    if revoked:
        return REVOKED
    if now >= not_after:
        return EXPIRED
    at = renewal_time(not_before, not_after, renew_before_days)
    return DUE if at is not None and now >= at else VALID


# --- leaves of a rotated CA ----------------------------------------------------------------------
@dataclass(frozen=True)
class Rotation:
    """A CA whose current version `kvca ca rotate` made: that version, and when it was rotated."""

    ca: str
    version: str
    rotated_at: dt.datetime


def rotation_of(ca: str, version: CertificateVersion) -> Rotation | None:
    """The rotation the CA's current version records (ROTATED_TAG), or None. Vault data: a value
    that is not an ISO 8601 time counts as absent."""
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
    """When a leaf of the older CA version becomes due: its own point of the window, from a hash of
    its name. Deterministic (every instance and every sweep agrees; nothing is stored) and even
    across a fleet, so thousands of leaves do not all ask Key Vault for a new key in the same sweep:
    the vault creates at most 20 keys per 10 s (docs/keyvault-behaviour.md, "Throttling")."""
    seconds = max(1, int(window.total_seconds()))
    offset = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % seconds
    return rotation.rotated_at + dt.timedelta(seconds=offset)


def signed_by_older(version: CertificateVersion, rotation: Rotation) -> bool:
    """Whether an older version of the rotated CA signed this leaf version.

    Which CA version: the tag CA_VERSION_TAG, written at every merge. A leaf without it (signed
    before kvca wrote the tag, or holding Key Vault's 15 tags already) is judged by its notBefore:
    one from before the rotation came from the older version. The signer backdates notBefore by 5
    minutes (signing/issue.py BACKDATE), so a leaf the new version signed within 5 minutes of the
    rotation is also taken for an old one and renewed once more; a leaf the old version signed is
    never missed, even one signed while the new version was being merged."""
    tagged = (version.tags or {}).get(CA_VERSION_TAG)
    if tagged:
        return tagged != rotation.version
    return version.not_before is None or version.not_before < rotation.rotated_at


def moved(version: CertificateVersion, rotation: Rotation | None, now: dt.datetime,
          window: dt.timedelta) -> tuple[bool, str, dt.datetime] | None:
    """None when no rotation concerns the leaf version; otherwise (due now?, why, move time)."""
    if rotation is None or not signed_by_older(version, rotation):
        return None
    at = move_time(version.name, rotation, window)
    what = (f"issued by an earlier version of CA '{rotation.ca}' (rotated "
            f"{rotation.rotated_at:%Y-%m-%d %H:%M} UTC)")
    if now >= at:
        return True, what, at
    return False, f"not due: {what}; moves onto the new version from {at:%Y-%m-%d %H:%M}", at


# --- whose is it ---------------------------------------------------------------------------------
def managed_ca(version: CertificateVersion, policy: CertificatePolicy | None = None) -> str:
    """The CA that manages this certificate, or NotManaged saying why not. `policy`: the
    certificate's Key Vault policy when at hand (a list item has none): its issuer must be Unknown."""
    subject = f"certificate '{version.name}'"
    role = role_of(version.tags)
    if role:
        raise NotManaged(f"is a CA certificate ({ROLE_TAG}={role}); kvca never renews CA certificates "
                         f"automatically", subject=subject)
    ca = version.tags.get(CA_TAG)
    if not ca:
        raise NotManaged(f"has no {CA_TAG} tag, so kvca does not manage it", subject=subject,
                         hint=f"tag it {CA_TAG}=<CA name> and use issuer Unknown to hand it to kvca")
    if not NAME_RE.match(ca) or same_name(ca, version.name):
        raise NotManaged(f"its {CA_TAG} tag {ca[:130]!r} does not name another certificate of the vault",
                         subject=subject)
    if policy is not None and policy.issuer_name.lower() != UNKNOWN_ISSUER.lower():
        raise NotManaged(f"its policy issuer is {policy.issuer_name!r}; kvca signs only issuer 'Unknown' "
                         f"(a non-integrated CA)", subject=subject)
    return ca


def is_managed_leaf(version: CertificateVersion) -> bool:
    """What a listing keeps for the sweep and the inventory: a kvca-ca tag and no role tag (the
    rest of `managed_ca` is decided per certificate, with a reason)."""
    return CA_TAG in version.tags and role_of(version.tags) is None


# --- the verdict ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    name: str
    state: str  # one of STATES
    action: str  # NONE | SIGN | RENEW: what the sweep does with it
    reason: str
    at: dt.datetime | None  # when the sweep renews it; None: never (as things stand)
    ca: str | None  # the managing CA, None when not managed
    why_not_managed: str = ""
    moving: bool = False  # due (or to be due) because its CA was rotated

    @property
    def managed(self) -> bool:
        return self.ca is not None


def verdict(version: CertificateVersion, *, now: dt.datetime, rules: Rules, rotation: Rotation | None = None,
            policy: CertificatePolicy | None = None, revoked: bool | None = None) -> Verdict:
    """The one answer to "what state is this version in, and what would the sweep do with it".

    `version`: a list item or a full read; `rotation`: its CA's rotation (`rotation_of` on the CA's
    current version) or None; `policy`: the certificate's Key Vault policy when read; `revoked`:
    the ledger's answer when the caller asked it, else the vault's mirror tag decides."""
    name = version.name
    try:
        ca = managed_ca(version, policy)
        why_not = ""
    except NotManaged as exc:
        ca, why_not = None, exc.message
    is_revoked = revoked if revoked is not None else REVOKED_SERIAL_TAG in version.tags

    def say(state: str, action: str, reason: str, at: dt.datetime | None = None, moving: bool = False) -> Verdict:
        return Verdict(name, state, action, reason, at, ca, why_not, moving)

    if not version.completed:
        # Pending shows as the missing certificate (x5t/cer), never as missing dates: Key Vault
        # gives a pending version nbf/exp computed from the policy (docs/keyvault-behaviour.md).
        return say(PENDING, SIGN if ca else NONE, "a request is pending" if ca else why_not)
    if is_revoked:
        return say(REVOKED, NONE, "the current version is revoked; it is replaced on purpose, never renewed")
    if not version.enabled:
        return say(DISABLED, NONE, "the current version is disabled")
    expired = version.expires_on is not None and version.expires_on <= now
    if ca is None:
        return say(EXPIRED if expired else VALID, NONE, why_not)
    due, why = due_state(version, now, rules.renew_before_days)
    at = renewal_time(version.not_before, version.expires_on, rules.renew_before_days)
    move = moved(version, rotation, now, rules.rotation_window)
    if move is not None:
        move_due, move_why, move_at = move
        at = move_at if at is None else min(at, move_at)
        if not due:
            due, why = move_due, move_why
        # Queued to move: `due` in the inventory from the rotation on, renewed at its point of the window.
        state = EXPIRED if expired else DUE
        return say(state, RENEW if due else NONE, why, at, moving=True)
    if due:
        return say(EXPIRED if expired else DUE, RENEW, why, at)
    return say(VALID, NONE, why, at)


def fresh_age(current: CertificateVersion, now: dt.datetime) -> int | None:
    """Whole seconds since a completed version completed, when that was less than FRESH ago (a
    request pending on it may be a racing duplicate; an explicit renew of it repeats a renewal);
    else None. `created` of a completed version is when it completed (docs/keyvault-behaviour.md)."""
    if not current.completed or current.created_on is None:
        return None
    if now - current.created_on >= FRESH:
        return None
    # max: kvca's clock may lag the vault's by a second (clock.py), never a negative age.
    return max(0, int((now - current.created_on).total_seconds()))
