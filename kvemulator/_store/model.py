"""What the emulated vault holds: certificates (with their versions, keys and pending
operation) and plain secrets, the service's fixed figures, and the request-body checks
every object kind shares."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from typing import Any, Callable

from cryptography import x509

from kvemulator._errors import bad_parameter

NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
PKCS12 = "application/x-pkcs12"
PEM = "application/x-pem-file"
RECOVERABLE_DAYS = 7
RECOVERY_LEVEL = "CustomizedRecoverable+Purgeable"
MAX_PAGE = 25
MAX_SECRET_CHARS = 25 * 1024
NEAR_EXPIRY = dt.timedelta(days=30)

PENDING_CONFLICT = ("A new key vault certificate can not be created or imported while a "
                    "pending key vault certificate's status is inProgress.")
# azure-sdk-for-js#35011, #36328: two changes to one pending certificate at once.
CONCURRENT_CONFLICT = "There was a conflict while updating/deleting pending certificate {name}."
# A pending version's nbf is its creation time less 10 minutes (.NET recording
# VerifyCertificateGetWithPolicyInProgress).
PENDING_BACKDATE = 600

# (event type suffix, certificate name, version, nbf, exp)
Emit = Callable[[str, str, str, int | None, int | None], None]


def epoch(when: dt.datetime) -> int:
    return int(when.timestamp())


def new_version() -> str:
    return uuid.uuid4().hex


@dataclasses.dataclass
class CertVersion:
    version: str
    key: Any  # private key object; shared with the version it was reused from
    exportable: bool
    hsm: bool
    content_type: str
    created: int
    updated: int
    enabled: bool = True
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    cert: x509.Certificate | None = None  # None while pending
    chain: list[x509.Certificate] = dataclasses.field(default_factory=list)  # above the leaf
    fired: set[str] = dataclasses.field(default_factory=set)
    # A version that never completed (pending, or left behind by DELETE .../pending) shows
    # dates the service computes from the policy at creation: created - 600 s, + validity.
    planned_nbf: int | None = None
    planned_exp: int | None = None
    merged: bool = False  # completed by a merge (issuer Unknown): events per the fidelity switch

    @property
    def pending(self) -> bool:
        """Never completed: no certificate merged (still pending, or abandoned)."""
        return self.cert is None

    @property
    def nbf(self) -> int | None:
        return epoch(self.cert.not_valid_before_utc) if self.cert else self.planned_nbf

    @property
    def exp(self) -> int | None:
        return epoch(self.cert.not_valid_after_utc) if self.cert else self.planned_exp


@dataclasses.dataclass
class Certificate:
    name: str
    policy: dict[str, Any]
    policy_created: int
    policy_updated: int
    versions: dict[str, CertVersion] = dataclasses.field(default_factory=dict)
    op: dict[str, Any] | None = None  # request_id, version, csr, status, ...
    deleted: int | None = None
    purge_at: int | None = None
    deleted_at: float | None = None  # when the DELETE came (fractional): the settle starts here

    def current(self) -> CertVersion | None:
        """The newest completed version."""
        # Insertion order, not `created` (seconds): two versions can share a second. Only
        # one version is ever pending, so completed versions sit in completion order.
        done = [v for v in self.versions.values() if not v.pending]
        return done[-1] if done else None

    def latest_any(self) -> CertVersion | None:
        return list(self.versions.values())[-1] if self.versions else None


@dataclasses.dataclass
class SecretVersion:
    version: str
    value: str
    content_type: str | None
    created: int
    updated: int
    enabled: bool = True
    nbf: int | None = None
    exp: int | None = None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Secret:
    name: str
    versions: dict[str, SecretVersion] = dataclasses.field(default_factory=dict)
    deleted: int | None = None
    purge_at: int | None = None

    def current(self) -> SecretVersion | None:
        return list(self.versions.values())[-1] if self.versions else None


def cert_attrs(ver: CertVersion) -> dict[str, Any]:
    """A certificate version's `attributes` (its secret's too): a never-completed version
    reads disabled."""
    attrs: dict[str, Any] = {"enabled": ver.enabled and not ver.pending}
    if ver.nbf is not None:
        attrs["nbf"] = ver.nbf
    if ver.exp is not None:
        attrs["exp"] = ver.exp
    attrs.update(created=ver.created, updated=ver.updated, recoveryLevel=RECOVERY_LEVEL,
                 recoverableDays=RECOVERABLE_DAYS)
    return attrs


# ---------------------------------------------------------------- request-body checks

def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise bad_parameter(f"The request URI contains an invalid name: {name}")
    return name


def body_of(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_parameter("The request body must be a JSON object.")
    return body


def obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_parameter(f"Property {what} must be an object.")
    return value


def str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_parameter(f"Property {what} must be an array of strings.")
    return list(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def drop_none(value: Any) -> Any:
    """JSON nulls mean "not given" (the service treats an explicit null like an absent field)."""
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


def attrs_in(body: dict[str, Any], field: str = "attributes") -> dict[str, Any]:
    attrs = obj(body.get(field), field)
    if "enabled" in attrs and attrs["enabled"] is not None and not isinstance(attrs["enabled"], bool):
        raise bad_parameter(f"Property {field}.enabled must be a boolean.")
    for name in ("nbf", "exp"):
        value = attrs.get(name)
        if value is not None and (not is_int(value) or not 0 <= value < 2**40):
            raise bad_parameter(f"Property {field}.{name} must be a time in epoch seconds.")
    return attrs


def tags_in(body: dict[str, Any]) -> dict[str, str] | None:
    tags = body.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, dict) or len(tags) > 15 or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 512 and len(v) <= 512
            for k, v in tags.items()):
        raise bad_parameter("Property tags must be an object of at most 15 string values "
                            "(512 characters each).")
    return dict(tags)
