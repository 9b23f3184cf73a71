"""The emulated vault's state and every operation on it.

All state sits behind one re-entrant lock; every public method takes it for
its whole read-modify-write, so concurrent requests (the server's loop, the
Python API's thread) never lose an update. Methods are synchronous and quick;
the one slow step (RSA key generation) happens between `prepare_create` and
`commit_create`, outside the lock, and `commit_create` re-checks the conflicts.

Methods answer plain JSON-ready dicts shaped like Key Vault's REST bodies and
raise `KvError` with the service's status, code and message.
"""

from __future__ import annotations

import base64
import bisect
import copy
import dataclasses
import datetime as dt
import re
import threading
import uuid
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ObjectIdentifier

from kvemulator import _crypto as kc
from kvemulator._errors import KvError, bad_parameter, not_found
from kvemulator._faults import KeySpec
from kvemulator._fidelity import Fidelity

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
# VerifyCertificateGetWithPolicyInProgress, keyvault-facts.md second round).
PENDING_BACKDATE = 600

# (event type suffix, certificate name, version, nbf, exp)
Emit = Callable[[str, str, str, int | None, int | None], None]


def _epoch(when: dt.datetime) -> int:
    return int(when.timestamp())


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise bad_parameter(f"The request URI contains an invalid name: {name}")
    return name


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
        return _epoch(self.cert.not_valid_before_utc) if self.cert else self.planned_nbf

    @property
    def exp(self) -> int | None:
        return _epoch(self.cert.not_valid_after_utc) if self.cert else self.planned_exp


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


@dataclasses.dataclass
class CreatePlan:
    name: str
    policy: dict[str, Any]
    attributes: dict[str, Any]
    tags: dict[str, str]
    key: Any | None  # reused key, or None: generate one


# ---------------------------------------------------------------- policy normalization

_CONTENT_TYPES = (PKCS12, PEM)
_ACTIONS = ("EmailContacts", "AutoRenew")


def _obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_parameter(f"Property {what} must be an object.")
    return value


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_parameter(f"Property {what} must be an array of strings.")
    return list(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _drop_none(value: Any) -> Any:
    """JSON nulls mean "not given" (the service treats an explicit null like an absent field)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def normalize_policy(raw: Any, *, default_issuer: str | None = None,
                     default_content_type: str = PKCS12) -> dict[str, Any]:
    """Validate a policy body and fill in the service's defaults (no id/attributes)."""
    policy = _drop_none(_obj(raw, "policy"))
    kp = _obj(policy.get("key_props"), "policy.key_props")
    kty = kp.get("kty") or "RSA"
    if kty not in ("RSA", "RSA-HSM", "EC", "EC-HSM"):
        raise bad_parameter(f"Invalid key type '{kty}' in policy.key_props.kty "
                            "(RSA, RSA-HSM, EC or EC-HSM).")
    hsm = kty.endswith("-HSM")
    key_props: dict[str, Any] = {"kty": kty}
    exportable = kp.get("exportable")
    if exportable is None:
        exportable = not hsm
    if not isinstance(exportable, bool):
        raise bad_parameter("Property policy.key_props.exportable must be a boolean.")
    if hsm and exportable:
        raise bad_parameter("Exportable keys are not supported for HSM key types.")
    key_props["exportable"] = exportable
    size = kp.get("key_size")
    if size is not None and not _is_int(size):  # 2048.0 would pass `in RSA_SIZES` and break keygen
        raise bad_parameter(f"Property policy.key_props.key_size must be an integer, not {size!r}.")
    if kty.startswith("RSA"):
        size = size or 2048
        if size not in kc.RSA_SIZES:
            raise bad_parameter(f"Invalid key size {size!r} for RSA keys (2048, 3072 or 4096).")
        key_props["key_size"] = size
    else:
        crv = kp.get("crv")
        if crv is None and size is not None:
            crv = kc.CURVE_BY_SIZE.get(size)
            if crv is None:
                raise bad_parameter(f"Invalid key size {size!r} for EC keys.")
        crv = crv or "P-256"
        if not isinstance(crv, str) or crv not in kc.CURVES:
            raise bad_parameter(f"Invalid curve name '{crv}' (P-256, P-384, P-521 or P-256K).")
        key_props["crv"] = crv
    reuse = kp.get("reuse_key", False)
    if not isinstance(reuse, bool):
        raise bad_parameter("Property policy.key_props.reuse_key must be a boolean.")
    key_props["reuse_key"] = reuse

    sp = _obj(policy.get("secret_props"), "policy.secret_props")
    content_type = sp.get("contentType") or default_content_type
    if content_type not in _CONTENT_TYPES:
        raise bad_parameter(f"Invalid content type '{content_type}' in policy.secret_props "
                            f"({PKCS12} or {PEM}).")

    xp = _obj(policy.get("x509_props"), "policy.x509_props")
    x509_props: dict[str, Any] = {}
    subject = xp.get("subject")
    sans_in = _obj(xp.get("sans"), "policy.x509_props.sans")
    sans: dict[str, list[str]] = {}
    for field in ("dns_names", "emails", "upns", "uris", "ipAddresses"):
        values = _str_list(sans_in.get(field), f"policy.x509_props.sans.{field}")
        if values:
            sans[field] = values
    if subject is not None and not isinstance(subject, str):
        raise bad_parameter("Property policy.x509_props.subject must be a string.")
    if not subject and not sans:
        raise bad_parameter("Property policy.x509_props must have a subject or subject "
                            "alternative names.")
    if subject:
        kc.parse_subject(subject)
    x509_props["subject"] = subject or ""
    if sans:
        x509_props["sans"] = sans
    ekus = _str_list(xp.get("ekus"), "policy.x509_props.ekus")
    for oid in ekus:
        try:
            ObjectIdentifier(oid)
        except ValueError as exc:
            raise bad_parameter(f"Invalid EKU '{oid}' in policy.x509_props.ekus.") from exc
    if ekus:
        x509_props["ekus"] = ekus
    usages = _str_list(xp.get("key_usage"), "policy.x509_props.key_usage")
    for usage in usages:
        if usage not in kc.KEY_USAGES:
            raise bad_parameter(f"Invalid key usage '{usage}' in policy.x509_props.key_usage.")
    if usages:
        x509_props["key_usage"] = usages
    try:  # DNS names, URIs and the like that X.509 cannot carry: refuse now, not at signing
        kc.build_extensions(x509_props, None)
    except ValueError as exc:
        raise bad_parameter(f"Invalid subject alternative name in policy.x509_props.sans: {exc}") from None
    months = xp.get("validity_months", 12)
    if not _is_int(months) or not 1 <= months <= 1200:
        raise bad_parameter(f"Invalid validity_months {months!r} (1 to 1200).")
    x509_props["validity_months"] = months

    issuer_in = _obj(policy.get("issuer"), "policy.issuer")
    issuer_name = issuer_in.get("name") or default_issuer
    if not issuer_name or not isinstance(issuer_name, str):
        raise bad_parameter("Property policy.issuer.name is required and must be a string.")
    if issuer_name.lower() not in ("self", "unknown"):
        raise bad_parameter(f"Issuer '{issuer_name}' is not supported by this emulator "
                            "(only Self and Unknown).")
    issuer: dict[str, Any] = {"name": "Self" if issuer_name.lower() == "self" else "Unknown",
                              "cert_transparency": bool(issuer_in.get("cert_transparency", False))}
    if issuer_in.get("cty"):
        issuer["cty"] = str(issuer_in["cty"])

    actions_in = policy.get("lifetime_actions")
    if actions_in is None:
        # The service's defaults: AutoRenew at 80 % for Self, EmailContacts at 80 % otherwise.
        default = "AutoRenew" if issuer["name"] == "Self" else "EmailContacts"
        actions = [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": default}}]
    else:
        if not isinstance(actions_in, list):
            raise bad_parameter("Property policy.lifetime_actions must be an array.")
        actions = []
        for item in actions_in:
            item = _obj(item, "policy.lifetime_actions[]")
            trigger = _obj(item.get("trigger"), "policy.lifetime_actions[].trigger")
            action = _obj(item.get("action"), "policy.lifetime_actions[].action")
            if action.get("action_type") not in _ACTIONS:
                raise bad_parameter(f"Invalid lifetime action '{action.get('action_type')}' "
                                    "(EmailContacts or AutoRenew).")
            clean_trigger = {k: trigger[k] for k in ("lifetime_percentage", "days_before_expiry")
                             if trigger.get(k) is not None}
            if len(clean_trigger) != 1 or not all(_is_int(v) and v > 0 for v in clean_trigger.values()):
                raise bad_parameter("Each lifetime action needs exactly one positive trigger: "
                                    "lifetime_percentage or days_before_expiry.")
            actions.append({"trigger": clean_trigger,
                            "action": {"action_type": action["action_type"]}})
    return {"key_props": key_props, "secret_props": {"contentType": content_type},
            "x509_props": x509_props, "lifetime_actions": actions, "issuer": issuer}


def _merge_policy(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(old)
    patch = _drop_none(patch)
    for section in ("key_props", "secret_props", "x509_props", "issuer"):
        if section in patch and patch[section] is not None:
            merged[section] = {**merged.get(section, {}), **_obj(patch[section], f"policy.{section}")}
    if patch.get("lifetime_actions") is not None:
        merged["lifetime_actions"] = patch["lifetime_actions"]
    return merged


def _attrs_in(body: dict[str, Any], field: str = "attributes") -> dict[str, Any]:
    attrs = _obj(body.get(field), field)
    if "enabled" in attrs and attrs["enabled"] is not None and not isinstance(attrs["enabled"], bool):
        raise bad_parameter(f"Property {field}.enabled must be a boolean.")
    for name in ("nbf", "exp"):
        value = attrs.get(name)
        if value is not None and (not _is_int(value) or not 0 <= value < 2**40):
            raise bad_parameter(f"Property {field}.{name} must be a time in epoch seconds.")
    return attrs


def _tags_in(body: dict[str, Any]) -> dict[str, str] | None:
    tags = body.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, dict) or len(tags) > 15 or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 512 and len(v) <= 512
            for k, v in tags.items()):
        raise bad_parameter("Property tags must be an object of at most 15 string values "
                            "(512 characters each).")
    return dict(tags)


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_parameter("The request body must be a JSON object.")
    return body


def _page(items: list[Any], maxresults: int | None, skip: str,
          next_url: Callable[[str], str], keys: list[str] | None = None,
          build: Callable[[Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """One page after the position `skip` (a $skiptoken this function made, or "").

    The token names the last item's key (the object's name, or the index for version
    lists), not an offset: the real service's links drop includePending and maxresults
    (keyvault-facts.md, second round), so the next page may be cut from a different list,
    and it must still start after what the last page held, as the service's does.
    """
    size = MAX_PAGE if maxresults is None else maxresults
    keys = keys if keys is not None else [f"{i:09d}" for i in range(len(items))]
    after = _skip_key(skip)
    start = 0
    if after is not None:
        start = bisect.bisect_right(keys, after)  # keys are sorted
    chunk = items[start:start + size]
    # Only this page's items are rendered (`build`): a sweep over a large vault reads every
    # page, and rendering the whole list per page would be quadratic.
    out: dict[str, Any] = {"value": [build(i) for i in chunk] if build else chunk, "nextLink": None}
    if start + size < len(items):
        out["nextLink"] = next_url(kc.b64url(keys[start + size - 1].encode()))
    return out


def _skip_key(token: str) -> str | None:
    if not token:
        return None
    try:
        return kc.b64url_decode(token).decode()
    except (ValueError, UnicodeDecodeError):
        raise bad_parameter(f"Invalid $skiptoken '{token[:64]}'.") from None


# ---------------------------------------------------------------- the vault

class Vault:
    def __init__(self, *, vault_name: str, now: Callable[[], dt.datetime], emit: Emit) -> None:
        self.lock = threading.RLock()
        self.vault_name = vault_name
        self.base_url = "https://127.0.0.1"
        self._now = now
        self._emit = emit
        self.certs: dict[str, Certificate] = {}
        self.deleted_certs: dict[str, Certificate] = {}
        self.secrets: dict[str, Secret] = {}
        self.deleted_secrets: dict[str, Secret] = {}
        self.generation = 0  # bumped on every change (persistence watches it)
        self.fidelity = Fidelity()

    # ------------------------------------------------------------ helpers

    def now(self) -> int:
        return _epoch(self._now())

    def _seconds(self) -> float:
        """The emulator clock in fractional seconds (the settle delays are shorter than 1 s)."""
        return self._now().timestamp()

    def _touch(self) -> None:
        self.generation += 1

    def reset(self) -> None:
        with self.lock:
            self.certs.clear()
            self.deleted_certs.clear()
            self.secrets.clear()
            self.deleted_secrets.clear()
            self._touch()

    def _cert(self, name: str) -> Certificate:
        check_name(name)
        cert = self.certs.get(name.lower())
        if cert is None:
            raise not_found("Certificate", name)
        return cert

    def _version(self, cert: Certificate, version: str, *, allow_pending: bool = True) -> CertVersion:
        if version:
            ver = cert.versions.get(version.lower())
            if ver is None:
                raise not_found("Certificate", cert.name, version)
            return ver
        ver = self._current_view(cert) if allow_pending else cert.current()
        if ver is None:
            raise not_found("Certificate", cert.name)
        return ver

    def _current_view(self, cert: Certificate) -> CertVersion | None:
        """The version a versionless GET (and the list, and DELETE) answers.

        Whether the real service answers a newer pending or abandoned version over an
        older completed one is unconfirmed (keyvault-facts.md second round, azure-cli#26044),
        hence the switch; a certificate with no completed version answers its newest one
        either way (.NET recording VerifyCertificateGetWithPolicyInProgress).
        """
        if self.fidelity.current_includes_pending:
            return cert.latest_any()
        return cert.current() or cert.latest_any()

    def _cert_attrs(self, ver: CertVersion) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": ver.enabled and not ver.pending}
        if ver.nbf is not None:
            attrs["nbf"] = ver.nbf
        if ver.exp is not None:
            attrs["exp"] = ver.exp
        attrs.update(created=ver.created, updated=ver.updated, recoveryLevel=RECOVERY_LEVEL,
                     recoverableDays=RECOVERABLE_DAYS)
        return attrs

    def _policy_json(self, cert: Certificate) -> dict[str, Any]:
        body = copy.deepcopy(cert.policy)
        body["id"] = f"{self.base_url}/certificates/{cert.name}/policy"
        body["attributes"] = {"enabled": True, "created": cert.policy_created,
                              "updated": cert.policy_updated}
        return body

    def _bundle(self, cert: Certificate, ver: CertVersion, *, with_policy: bool) -> dict[str, Any]:
        base = self.base_url
        body: dict[str, Any] = {
            "id": f"{base}/certificates/{cert.name}/{ver.version}",
            "attributes": self._cert_attrs(ver),
            "tags": dict(ver.tags),
        }
        if ver.cert is not None:
            # A never-completed version has no kid, sid, x5t or cer (.NET and Java
            # recordings): "pending" shows as their absence, not as missing dates.
            body["kid"] = f"{base}/keys/{cert.name}/{ver.version}"
            body["sid"] = f"{base}/secrets/{cert.name}/{ver.version}"
            body["x5t"] = kc.b64url(kc.thumbprint(ver.cert))
            body["cer"] = base64.b64encode(kc.cert_der(ver.cert)).decode()
        if with_policy:
            body["policy"] = self._policy_json(cert)
        if cert.op is not None:
            body["pending"] = {"id": f"{base}/certificates/{cert.name}/pending"}
        return body

    def _deleted_fields(self, obj: Certificate | Secret, kind: str) -> dict[str, Any]:
        return {"recoveryId": f"{self.base_url}/deleted{kind}/{obj.name}",
                "deletedDate": obj.deleted, "scheduledPurgeDate": obj.purge_at}

    # Soft delete works alike for certificates and plain secrets: these serve both.

    def _soft_delete(self, live: dict[str, Any], deleted: dict[str, Any], obj: Certificate | Secret) -> None:
        now = self.now()
        obj.deleted, obj.purge_at = now, now + RECOVERABLE_DAYS * 86400
        deleted[obj.name.lower()] = live.pop(obj.name.lower())
        self._touch()

    def _delete_settled(self, cert: Certificate) -> bool:
        """Whether a deleted certificate shows in /deletedcertificates yet: soft delete
        completes asynchronously, GET of it was 404 for about 9 s after the DELETE
        (Python recording, 7.3; keyvault-facts.md second round)."""
        return cert.deleted_at is None or \
            self._seconds() >= cert.deleted_at + self.fidelity.soft_delete_settle_seconds

    def _recover(self, live: dict[str, Any], deleted: dict[str, Any], obj: Certificate | Secret) -> None:
        obj.deleted = obj.purge_at = None
        live[obj.name.lower()] = deleted.pop(obj.name.lower())
        self._touch()

    @staticmethod
    def _find_deleted(deleted: dict[str, Any], name: str, kind: str) -> Any:
        check_name(name)
        obj = deleted.get(name.lower())
        if obj is None:
            raise KvError(404, f"{kind}NotFound", f"Deleted {kind} not found: {name}")
        return obj

    def _purge(self, deleted: dict[str, Any], name: str, kind: str) -> None:
        del deleted[self._find_deleted(deleted, name, kind).name.lower()]
        self._touch()

    def _settle_op(self, cert: Certificate) -> dict[str, Any] | None:
        """The operation, with a requested cancellation applied once its delay has passed:
        the service answers the cancel with status still inProgress and reads "cancelled"
        only later (Java recording, keyvault-facts.md second round)."""
        op = cert.op
        if op is not None and op["status"] == "inProgress" and op.get("cancel_at") is not None \
                and self._seconds() >= op["cancel_at"]:
            op["status"] = "cancelled"
            op["status_details"] = "Pending certificate cancelled."
            op["cancel_at"] = None
            self._touch()
        return op

    def _op_json(self, cert: Certificate) -> dict[str, Any]:
        op = self._settle_op(cert)
        assert op is not None
        body: dict[str, Any] = {
            "id": f"{self.base_url}/certificates/{cert.name}/pending",
            "issuer": {"name": op["issuer"]},
            "csr": base64.b64encode(op["csr"]).decode(),
            "cancellation_requested": op["cancellation_requested"],
            "status": op["status"],
            "request_id": op["request_id"],
        }
        if op["status_details"] is not None:
            body["status_details"] = op["status_details"]
        if op["status"] == "completed":
            # Completed: target, and no status_details (Java recording).
            body["target"] = f"{self.base_url}/certificates/{cert.name}"
        return body

    def _change_pending(self, cert: Certificate) -> None:
        """Count a change (merge, cancel, delete) to the pending operation; a second one
        within `pending_conflict_seconds` of the last is a 409, as the service answers
        concurrent changes (azure-sdk-for-js#35011, #36328)."""
        op = cert.op
        assert op is not None
        window, now = self.fidelity.pending_conflict_seconds, self._seconds()
        last = op.get("changed_at")
        if window > 0 and last is not None and now - last < window:
            raise KvError(409, "Conflict", CONCURRENT_CONFLICT.format(name=cert.name))
        op["changed_at"] = now

    def _check_can_add_version(self, name: str) -> None:
        key = name.lower()
        if key in self.deleted_certs:
            # 409 Conflict, innererror ObjectIsDeletedButRecoverable (keyvault-facts.md second round).
            raise KvError(409, "Conflict", f"Certificate {name} is currently in a deleted but "
                          "recoverable state, and its name cannot be reused; in this state, the "
                          "certificate can only be recovered or purged.",
                          inner="ObjectIsDeletedButRecoverable")
        if key in self.secrets or key in self.deleted_secrets:
            raise KvError(409, "Conflict", f"Secret {name} already exists and is not managed by "
                          "a certificate: a certificate cannot take its name.")
        cert = self.certs.get(key)
        op = self._settle_op(cert) if cert is not None else None
        if op is not None and op["status"] == "inProgress":
            # 409, with the code the docs show: Forbidden (keyvault-facts.md second round).
            raise KvError(409, "Forbidden", PENDING_CONFLICT)

    def _new_version(self) -> str:
        return uuid.uuid4().hex

    # ------------------------------------------------------------ certificates: create

    def prepare_create(self, name: str, body: Any) -> CreatePlan:
        body = _body(body)
        check_name(name)
        with self.lock:
            self._check_can_add_version(name)
            existing = self.certs.get(name.lower())
            raw_policy = body.get("policy")
            if raw_policy is None:
                if existing is None:
                    raise bad_parameter("Property policy is required.")
                policy = copy.deepcopy(existing.policy)
            else:
                policy = normalize_policy(raw_policy)
            reused = None
            if existing is not None and policy["key_props"]["reuse_key"]:
                prev = existing.current() or existing.latest_any()
                if prev is not None and self._key_matches(prev.key, policy["key_props"]):
                    reused = prev.key
            return CreatePlan(name, policy, _attrs_in(body), _tags_in(body) or {}, reused)

    @staticmethod
    def _key_matches(key: Any, key_props: dict[str, Any]) -> bool:
        kty, size, crv = kc.key_spec_of(key)
        want = key_props["kty"].replace("-HSM", "")
        return kty == want and (size == key_props.get("key_size") if kty == "RSA"
                                else crv == key_props.get("crv"))

    def commit_create(self, plan: CreatePlan, key: Any) -> dict[str, Any]:
        policy = plan.policy
        # Everything that signs (or could fail) before the lock and before any change.
        csr = kc.build_csr(key, policy["x509_props"])
        self_cert = (kc.self_signed(key, policy["x509_props"], self._now())
                     if policy["issuer"]["name"] == "Self" else None)
        with self.lock:
            self._check_can_add_version(plan.name)
            now = self.now()
            cert = self.certs.get(plan.name.lower())
            if cert is None:
                cert = Certificate(plan.name, policy, now, now)
                self.certs[plan.name.lower()] = cert
            else:
                cert.policy, cert.policy_updated = policy, now
            kp = policy["key_props"]
            planned_nbf = now - PENDING_BACKDATE
            planned_exp = _epoch(kc.add_months(dt.datetime.fromtimestamp(planned_nbf, dt.timezone.utc),
                                               policy["x509_props"]["validity_months"]))
            ver = CertVersion(self._new_version(), key, kp["exportable"], kp["kty"].endswith("-HSM"),
                              policy["secret_props"]["contentType"], now, now,
                              enabled=plan.attributes.get("enabled", True) is not False,
                              tags=plan.tags, planned_nbf=planned_nbf, planned_exp=planned_exp)
            cert.versions[ver.version] = ver
            cert.op = {"request_id": uuid.uuid4().hex, "version": ver.version, "csr": csr,
                       "issuer": policy["issuer"]["name"], "cancellation_requested": False,
                       "status": "inProgress",
                       "status_details": "Pending certificate created. Please Perform Merge to "
                                         "complete the request."}
            answer = self._op_json(cert)
            if self_cert is not None:
                # The service answers inProgress and completes moments later; the SDK's
                # poller relies on that (it only fetches the certificate after a poll that
                # reads "completed"). Here it is complete at once; the next GET says so.
                ver.cert = self_cert
                cert.op["status"] = "completed"
                cert.op["status_details"] = None
                self._emit("CertificateNewVersionCreated", cert.name, ver.version, ver.nbf, ver.exp)
            self._touch()
            return answer

    # ------------------------------------------------------------ certificates: pending

    def get_operation(self, name: str) -> dict[str, Any]:
        with self.lock:
            check_name(name)
            cert = self.certs.get(name.lower())
            if cert is None or cert.op is None:
                raise KvError(404, "PendingCertificateNotFound", f"Pending certificate not found: {name}")
            return self._op_json(cert)

    def cancel_operation(self, name: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        flag = body.get("cancellation_requested")
        if not isinstance(flag, bool):
            raise bad_parameter("Property cancellation_requested is required and must be a boolean.")
        with self.lock:
            self.get_operation(name)
            cert = self.certs[name.lower()]
            self._change_pending(cert)
            op = self._settle_op(cert)
            assert op is not None
            if flag and op["status"] == "inProgress" and not op["cancellation_requested"]:
                # Answered with status still inProgress; "cancelled" only after the delay.
                op["cancellation_requested"] = True
                op["cancel_at"] = self._seconds() + self.fidelity.cancel_settle_seconds
                self._touch()
            return self._op_json(cert)

    def delete_operation(self, name: str) -> dict[str, Any]:
        with self.lock:
            body = self.get_operation(name)
            cert = self.certs[name.lower()]
            self._change_pending(cert)
            # The never-completed version stays behind, disabled and without a certificate:
            # DELETE /certificates/{name} later answers it (Python recording
            # test_async_request_cancellation_and_deletion, 7.3).
            cert.op = None
            self._touch()
            return body

    def _merge_target(self, name: str) -> tuple[Certificate, dict[str, Any]]:
        with self.lock:
            check_name(name)
            cert = self.certs.get(name.lower())
            op = self._settle_op(cert) if cert is not None else None
            if cert is None or op is None or op["status"] == "completed":
                # "Certificate" capitalized, as the Java recording mergeCertificateNotFound shows.
                raise KvError(404, "PendingCertificateNotFound", f"Pending Certificate not found: {name}")
            return cert, op

    def merge(self, name: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        # Nothing pending is a 404 before the body is looked at, even a garbage x5c
        # (Java recording mergeCertificateNotFound).
        self._merge_target(name)
        chain_in = kc.parse_x5c(body.get("x5c"))
        attrs = _attrs_in(body)
        tags = _tags_in(body)
        with self.lock:
            cert, op = self._merge_target(name)
            if op["status"] != "inProgress":
                raise bad_parameter(f"The pending certificate operation of {name} is "
                                    f"{op['status']}; it can no longer be merged.")
            ver = cert.versions[op["version"]]
            leaf = chain_in[0]
            if not kc.cert_has_key(leaf, ver.key):
                raise KvError(400, "BadParameter", kc.MISMATCH_MESSAGE)
            self._change_pending(cert)
            ver.cert = leaf
            ver.chain = kc.order_chain(leaf, chain_in[1:])[1:]
            ver.enabled = attrs.get("enabled", True) is not False
            if tags is not None:
                ver.tags = tags
            # created is when the version completed, not when it was requested
            # (keyvault-facts.md second round).
            ver.created = ver.updated = self.now()
            ver.planned_nbf = ver.planned_exp = None
            ver.merged = True
            op["status"] = "completed"
            op["status_details"] = None
            self._touch()
            if self.fidelity.unknown_issuer_events:
                self._emit("CertificateNewVersionCreated", cert.name, ver.version, ver.nbf, ver.exp)
            return self._bundle(cert, ver, with_policy=True)

    # ------------------------------------------------------------ certificates: import

    def import_certificate(self, name: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        check_name(name)
        password = body.get("pwd")
        if password is not None and not isinstance(password, str):
            raise bad_parameter("Property pwd must be a string.")
        key, certs, detected = kc.parse_import(body.get("value"), password)
        leaf = kc.import_leaf(key, certs)
        assert key is not None  # import_leaf refused a missing key
        others = [c for c in certs if c is not leaf]
        kty, size, crv = kc.key_spec_of(key)
        attrs = _attrs_in(body)
        tags = _tags_in(body) or {}
        raw_policy = _obj(body.get("policy"), "policy")
        with self.lock:
            self._check_can_add_version(name)
            existing = self.certs.get(name.lower())
            base = copy.deepcopy(existing.policy) if existing is not None and not raw_policy else {}
            merged = _merge_policy(base, raw_policy) if raw_policy else base
            merged.setdefault("x509_props", {})
            if not merged["x509_props"].get("subject") and not merged["x509_props"].get("sans"):
                merged["x509_props"] = {**kc.x509_props_of(leaf), **merged["x509_props"]}
                if not merged["x509_props"].get("subject"):
                    merged["x509_props"]["subject"] = kc.x509_props_of(leaf)["subject"]
            kp = dict(merged.get("key_props") or {})
            asked = kp.get("kty", "")
            if not isinstance(asked, str):
                raise bad_parameter("Property policy.key_props.kty must be a string.")
            kp.update(kty=f"{kty}-HSM" if asked.endswith("-HSM") else kty)
            kp.pop("key_size", None)
            kp.pop("crv", None)
            if size:
                kp["key_size"] = size
            else:
                kp["crv"] = crv
            merged["key_props"] = kp
            sp = dict(merged.get("secret_props") or {})
            sp.setdefault("contentType", detected)
            merged["secret_props"] = sp
            policy = normalize_policy(merged, default_issuer="Unknown", default_content_type=detected)
            now = self.now()
            cert = self.certs.get(name.lower())
            if cert is None:
                cert = Certificate(name, policy, now, now)
                self.certs[name.lower()] = cert
            else:
                cert.policy, cert.policy_updated = policy, now
            ver = CertVersion(self._new_version(), key, policy["key_props"]["exportable"],
                              policy["key_props"]["kty"].endswith("-HSM"),
                              policy["secret_props"]["contentType"], now, now,
                              enabled=attrs.get("enabled", True) is not False, tags=tags,
                              cert=leaf, chain=kc.order_chain(leaf, others)[1:])
            cert.versions[ver.version] = ver
            self._touch()
            self._emit("CertificateNewVersionCreated", cert.name, ver.version, ver.nbf, ver.exp)
            return self._bundle(cert, ver, with_policy=True)

    # ------------------------------------------------------------ certificates: read and update

    def get_certificate(self, name: str, version: str = "") -> dict[str, Any]:
        with self.lock:
            cert = self._cert(name)
            ver = self._version(cert, version)
            return self._bundle(cert, ver, with_policy=not version)

    def list_certificates(self, *, maxresults: int | None, include_pending: bool, skip: str,
                          next_url: Callable[[str], str], deleted: bool = False) -> dict[str, Any]:
        with self.lock:
            source = self.deleted_certs if deleted else self.certs
            entries, keys = [], []
            for key in sorted(source):
                cert = source[key]
                if deleted and not self._delete_settled(cert):
                    continue
                if cert.current() is None and not include_pending:
                    continue  # only never-completed versions: listed with includePending only
                ver = self._current_view(cert)
                if ver is None:
                    continue
                entries.append((cert, ver))
                keys.append(key)

            def item_of(entry: tuple[Certificate, CertVersion]) -> dict[str, Any]:
                cert, ver = entry
                # A never-completed version's item: enabled false, nbf/exp from the policy,
                # no x5t, subject "" (JS recording, keyvault-facts.md second round).
                item: dict[str, Any] = {"id": f"{self.base_url}/certificates/{cert.name}",
                                        "attributes": self._cert_attrs(ver), "tags": dict(ver.tags),
                                        "subject": ""}
                if ver.cert is not None:
                    item["x5t"] = kc.b64url(kc.thumbprint(ver.cert))
                    item["subject"] = kc.subject_text(ver.cert.subject)
                if deleted:
                    item.update(self._deleted_fields(cert, "certificates"))
                return item

            return _page(entries, maxresults, skip, next_url, keys, item_of)

    def list_versions(self, name: str, *, maxresults: int | None, skip: str,
                      next_url: Callable[[str], str]) -> dict[str, Any]:
        with self.lock:
            cert = self._cert(name)
            items = []
            for ver in cert.versions.values():
                item: dict[str, Any] = {"id": f"{self.base_url}/certificates/{cert.name}/{ver.version}",
                                        "attributes": self._cert_attrs(ver), "tags": dict(ver.tags)}
                if ver.cert is not None:
                    item["x5t"] = kc.b64url(kc.thumbprint(ver.cert))
                items.append(item)
            return _page(items, maxresults, skip, next_url)

    def get_policy(self, name: str) -> dict[str, Any]:
        with self.lock:
            return self._policy_json(self._cert(name))

    def update_policy(self, name: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        with self.lock:
            cert = self._cert(name)
            cert.policy = normalize_policy(_merge_policy(cert.policy, body))
            cert.policy_updated = self.now()
            self._touch()
            return self._policy_json(cert)

    def update_certificate(self, name: str, version: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        attrs = _attrs_in(body)
        tags = _tags_in(body)
        with self.lock:
            cert = self._cert(name)
            ver = self._version(cert, version)
            if body.get("policy") is not None:
                cert.policy = normalize_policy(_merge_policy(cert.policy, _body(body["policy"])))
                cert.policy_updated = self.now()
            if attrs.get("enabled") is not None:
                ver.enabled = attrs["enabled"]
            if tags is not None:
                ver.tags = tags
            ver.updated = self.now()
            self._touch()
            return self._bundle(cert, ver, with_policy=not version)

    # ------------------------------------------------------------ certificates: soft delete

    def _cert_json(self, cert: Certificate) -> dict[str, Any]:
        """The bundle of the current version (or a never-completed one), policy included."""
        ver = self._current_view(cert)
        assert ver is not None  # a certificate never outlives its last version
        body = self._bundle(cert, ver, with_policy=True)
        if cert.deleted is not None:
            body.update(self._deleted_fields(cert, "certificates"))
        return body

    def delete_certificate(self, name: str) -> dict[str, Any]:
        with self.lock:
            cert = self._cert(name)
            self._soft_delete(self.certs, self.deleted_certs, cert)
            cert.deleted_at = self._seconds()
            return self._cert_json(cert)

    def _settled_deleted_cert(self, name: str) -> Certificate:
        cert = self._find_deleted(self.deleted_certs, name, "Certificate")
        if not self._delete_settled(cert):
            raise KvError(404, "CertificateNotFound", f"Deleted Certificate not found: {name}")
        return cert

    def get_deleted_certificate(self, name: str) -> dict[str, Any]:
        with self.lock:
            return self._cert_json(self._settled_deleted_cert(name))

    def recover_certificate(self, name: str) -> dict[str, Any]:
        with self.lock:
            cert = self._settled_deleted_cert(name)
            self._recover(self.certs, self.deleted_certs, cert)
            cert.deleted_at = None
            return self._cert_json(cert)

    def purge_certificate(self, name: str) -> None:
        with self.lock:
            self._purge(self.deleted_certs, self._settled_deleted_cert(name).name, "Certificate")

    # ------------------------------------------------------------ secrets

    def _cert_secret(self, cert: Certificate, ver: CertVersion, *, with_value: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"{self.base_url}/secrets/{cert.name}/{ver.version}",
            "contentType": ver.content_type,
            "attributes": self._cert_attrs(ver),
            "tags": dict(ver.tags),
            "kid": f"{self.base_url}/keys/{cert.name}/{ver.version}",
            "managed": True,
        }
        if with_value:
            assert ver.cert is not None
            body["value"] = kc.secret_value(ver.key if ver.exportable else None,
                                            [ver.cert, *ver.chain], ver.content_type, cert.name)
        return body

    def _secret_json(self, secret: Secret, ver: SecretVersion, *, with_value: bool) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": ver.enabled, "created": ver.created,
                                 "updated": ver.updated, "recoveryLevel": RECOVERY_LEVEL,
                                 "recoverableDays": RECOVERABLE_DAYS}
        if ver.nbf is not None:
            attrs["nbf"] = ver.nbf
        if ver.exp is not None:
            attrs["exp"] = ver.exp
        body: dict[str, Any] = {"id": f"{self.base_url}/secrets/{secret.name}/{ver.version}",
                                "attributes": attrs, "tags": dict(ver.tags)}
        if ver.content_type is not None:
            body["contentType"] = ver.content_type
        if with_value:
            body["value"] = ver.value
        return body

    def set_secret(self, name: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        check_name(name)
        value = body.get("value")
        if not isinstance(value, str):
            raise bad_parameter("Property value is required and must be a string.")
        if len(value) > MAX_SECRET_CHARS:
            raise bad_parameter(f"The secret value is too long ({len(value)} characters; "
                                f"at most {MAX_SECRET_CHARS}).")
        content_type = body.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise bad_parameter("Property contentType must be a string.")
        attrs = _attrs_in(body)
        tags = _tags_in(body) or {}
        with self.lock:
            key = name.lower()
            if key in self.certs or key in self.deleted_certs:
                raise KvError(409, "Conflict", f"Secret {name} is managed by certificate {name}; "
                              "set a new certificate version instead.")
            if key in self.deleted_secrets:
                raise KvError(409, "Conflict", f"Secret {name} is currently in a deleted but "
                              "recoverable state, and its name cannot be reused; in this state, "
                              "the secret can only be recovered or purged.")
            secret = self.secrets.setdefault(key, Secret(name))
            now = self.now()
            ver = SecretVersion(self._new_version(), value, content_type, now, now,
                                enabled=attrs.get("enabled", True) is not False,
                                nbf=attrs.get("nbf"), exp=attrs.get("exp"), tags=tags)
            secret.versions[ver.version] = ver
            self._touch()
            return self._secret_json(secret, ver, with_value=True)

    def get_secret(self, name: str, version: str = "") -> dict[str, Any]:
        with self.lock:
            check_name(name)
            key = name.lower()
            secret = self.secrets.get(key)
            if secret is not None:
                ver = secret.versions.get(version.lower()) if version else secret.current()
                if ver is None:
                    raise not_found("Secret", name, version or None)
                if not ver.enabled:
                    raise KvError(403, "Forbidden", "Operation get is not allowed on a disabled secret.",
                                  inner="SecretDisabled")
                return self._secret_json(secret, ver, with_value=True)
            cert = self.certs.get(key)
            if cert is None:
                raise not_found("Secret", name, version or None)
            ver = cert.versions.get(version.lower()) if version else cert.current()
            if ver is None or ver.pending:
                raise not_found("Secret", name, version or None)
            if not ver.enabled:
                raise KvError(403, "Forbidden", "Operation get is not allowed on a disabled secret.",
                              inner="SecretDisabled")
            return self._cert_secret(cert, ver, with_value=True)

    def list_secrets(self, *, maxresults: int | None, skip: str, next_url: Callable[[str], str],
                     deleted: bool = False) -> dict[str, Any]:
        with self.lock:
            items: list[tuple[str, dict[str, Any]]] = []
            source = self.deleted_secrets if deleted else self.secrets
            for key, secret in source.items():
                ver = secret.current()
                if ver is None:
                    continue
                item = self._secret_json(secret, ver, with_value=False)
                item["id"] = f"{self.base_url}/secrets/{secret.name}"
                if deleted:
                    item.update(self._deleted_fields(secret, "secrets"))
                items.append((key, item))
            if not deleted:
                for key, cert in self.certs.items():
                    ver = cert.current()
                    if ver is None:
                        continue
                    item = self._cert_secret(cert, ver, with_value=False)
                    item["id"] = f"{self.base_url}/secrets/{cert.name}"
                    items.append((key, item))
            items.sort(key=lambda pair: pair[0])
            return _page([item for _, item in items], maxresults, skip, next_url,
                         [key for key, _ in items])

    def list_secret_versions(self, name: str, *, maxresults: int | None, skip: str,
                             next_url: Callable[[str], str]) -> dict[str, Any]:
        with self.lock:
            check_name(name)
            secret = self.secrets.get(name.lower())
            if secret is not None:
                items = [self._secret_json(secret, v, with_value=False) for v in secret.versions.values()]
            else:
                cert = self.certs.get(name.lower())
                if cert is None:
                    raise not_found("Secret", name)
                items = [self._cert_secret(cert, v, with_value=False)
                         for v in cert.versions.values() if not v.pending]
            return _page(items, maxresults, skip, next_url)

    def update_secret(self, name: str, version: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        attrs = _attrs_in(body)
        tags = _tags_in(body)
        content_type = body.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise bad_parameter("Property contentType must be a string.")
        with self.lock:
            check_name(name)
            secret = self.secrets.get(name.lower())
            if secret is None:
                if name.lower() in self.certs:
                    raise KvError(403, "Forbidden", "Operation update is not allowed on a managed "
                                  "secret; update the certificate instead.")
                raise not_found("Secret", name)
            ver = secret.versions.get(version.lower()) if version else secret.current()
            if ver is None:
                raise not_found("Secret", name, version or None)
            if attrs.get("enabled") is not None:
                ver.enabled = attrs["enabled"]
            for field in ("nbf", "exp"):
                if field in attrs:
                    setattr(ver, field, attrs[field])
            if "contentType" in body:
                ver.content_type = content_type
            if tags is not None:
                ver.tags = tags
            ver.updated = self.now()
            self._touch()
            return self._secret_json(secret, ver, with_value=False)

    def delete_secret(self, name: str) -> dict[str, Any]:
        with self.lock:
            check_name(name)
            key = name.lower()
            secret = self.secrets.get(key)
            if secret is None:
                if key in self.certs:
                    raise KvError(403, "Forbidden", "Operation delete is not allowed on a managed "
                                  "secret; delete the certificate instead.")
                raise not_found("Secret", name)
            self._soft_delete(self.secrets, self.deleted_secrets, secret)
            return self._current_secret_json(secret)

    def _current_secret_json(self, secret: Secret) -> dict[str, Any]:
        """The current version without its value (and the deleted fields when deleted)."""
        ver = secret.current()
        assert ver is not None  # a secret always has a version
        body = self._secret_json(secret, ver, with_value=False)
        if secret.deleted is not None:
            body.update(self._deleted_fields(secret, "secrets"))
        return body

    def get_deleted_secret(self, name: str) -> dict[str, Any]:
        with self.lock:
            return self._current_secret_json(self._find_deleted(self.deleted_secrets, name, "Secret"))

    def recover_secret(self, name: str) -> dict[str, Any]:
        with self.lock:
            secret = self._find_deleted(self.deleted_secrets, name, "Secret")
            self._recover(self.secrets, self.deleted_secrets, secret)
            return self._current_secret_json(secret)

    def purge_secret(self, name: str) -> None:
        with self.lock:
            self._purge(self.deleted_secrets, name, "Secret")

    # ------------------------------------------------------------ keys (the certificates' keys)

    def _key_version(self, name: str, version: str) -> tuple[Certificate, CertVersion]:
        check_name(name)
        cert = self.certs.get(name.lower())
        if cert is None:
            raise not_found("Key", name, version or None)
        ver = cert.versions.get(version.lower()) if version else (cert.current() or cert.latest_any())
        if ver is None:
            raise not_found("Key", name, version or None)
        return cert, ver

    def _key_json(self, cert: Certificate, ver: CertVersion) -> dict[str, Any]:
        kid = f"{self.base_url}/keys/{cert.name}/{ver.version}"
        attrs: dict[str, Any] = {"enabled": ver.enabled and not ver.pending,
                                 "created": ver.created, "updated": ver.updated,
                                 "recoveryLevel": RECOVERY_LEVEL,
                                 "recoverableDays": RECOVERABLE_DAYS, "exportable": ver.exportable}
        if not ver.pending:
            attrs["nbf"], attrs["exp"] = ver.nbf, ver.exp
        return {"key": kc.public_jwk(ver.key, kid, ver.hsm), "attributes": attrs,
                "tags": dict(ver.tags), "managed": True}

    def get_key(self, name: str, version: str = "") -> dict[str, Any]:
        with self.lock:
            return self._key_json(*self._key_version(name, version))

    def list_keys(self, *, maxresults: int | None, skip: str,
                  next_url: Callable[[str], str]) -> dict[str, Any]:
        with self.lock:
            items, keys = [], []
            for key in sorted(self.certs):
                cert = self.certs[key]
                ver = cert.current() or cert.latest_any()
                if ver is None:
                    continue
                body = self._key_json(cert, ver)
                items.append({"kid": f"{self.base_url}/keys/{cert.name}",
                              "attributes": body["attributes"], "tags": body["tags"], "managed": True})
                keys.append(key)
            return _page(items, maxresults, skip, next_url, keys)

    def list_key_versions(self, name: str, *, maxresults: int | None, skip: str,
                          next_url: Callable[[str], str]) -> dict[str, Any]:
        with self.lock:
            cert, _ = self._key_version(name, "")
            items = []
            for ver in cert.versions.values():
                body = self._key_json(cert, ver)
                items.append({"kid": body["key"]["kid"], "attributes": body["attributes"],
                              "tags": body["tags"], "managed": True})
            return _page(items, maxresults, skip, next_url)

    def _usable_key(self, name: str, version: str, operation: str) -> tuple[Certificate, CertVersion]:
        cert, ver = self._key_version(name, version)
        if ver.pending:
            # Whether the real service lets a pending version's key sign is unconfirmed
            # (keyvault-facts.md): refuse, so code that works here also works there.
            raise KvError(403, "Forbidden", f"Operation {operation} is not allowed on a disabled key "
                          "(the key of a pending certificate version is usable only after merge).",
                          inner="KeyDisabled")
        if not ver.enabled:
            raise KvError(403, "Forbidden", f"Operation {operation} is not allowed on a disabled key.",
                          inner="KeyDisabled")
        return cert, ver

    def sign(self, name: str, version: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        alg, value = body.get("alg"), body.get("value")
        if not isinstance(alg, str) or not isinstance(value, str):
            raise bad_parameter("Properties alg and value are required.")
        try:
            digest = kc.b64url_decode(value)
        except ValueError as exc:
            raise bad_parameter("Property value is not base64url.") from exc
        with self.lock:
            cert, ver = self._usable_key(name, version, "sign")
            key = ver.key
        signature = kc.sign_digest(key, alg, digest)
        return {"kid": f"{self.base_url}/keys/{cert.name}/{ver.version}", "value": kc.b64url(signature)}

    def verify(self, name: str, version: str, body: Any) -> dict[str, Any]:
        body = _body(body)
        alg, digest, value = body.get("alg"), body.get("digest"), body.get("value")
        if not all(isinstance(v, str) for v in (alg, digest, value)):
            raise bad_parameter("Properties alg, digest and value are required.")
        try:
            digest_b, sig = kc.b64url_decode(digest), kc.b64url_decode(value)
        except ValueError as exc:
            raise bad_parameter("Properties digest and value must be base64url.") from exc
        with self.lock:
            _, ver = self._usable_key(name, version, "verify")
            key = ver.key
        return {"value": kc.verify_digest(key, alg, digest_b, sig)}

    def key_spec(self, route: str, params: dict[str, str], body: Any) -> KeySpec | None:
        """The key a request works on, for the weighted throttling limits (None: no key,
        or one not known). A certificate create's key comes from its policy (or the
        certificate's), an import's HSM flag from its policy (its size is not read here)."""
        with self.lock:
            name = params.get("name", "").lower()
            if route.startswith("/keys/{name}"):
                cert = self.certs.get(name)
                version = params.get("version", "").lower()
                ver = (cert.versions.get(version) if version else cert.current()) if cert else None
                if ver is None:
                    return None
                kty, size, _ = kc.key_spec_of(ver.key)
                return KeySpec(size if kty == "RSA" else None, ver.hsm)
            if route in ("/certificates/{name}/create", "/certificates/{name}/import"):
                policy = body.get("policy") if isinstance(body, dict) else None
                if not isinstance(policy, dict) and name in self.certs:
                    policy = self.certs[name].policy
                kp = policy.get("key_props") if isinstance(policy, dict) else None
                if not isinstance(kp, dict):
                    return KeySpec(None, False)
                kty, size = str(kp.get("kty") or "RSA"), kp.get("key_size")
                rsa = size if kty.startswith("RSA") and isinstance(size, int) else None
                return KeySpec(rsa, kty.endswith("-HSM"))
            return None

    # ------------------------------------------------------------ time-driven work

    def scan(self) -> None:
        """Fire NearExpiry/Expired for thresholds the clock has passed; purge what is due."""
        with self.lock:
            now = self.now()
            for cert in self.certs.values():
                # NearExpiry and Expired are raised for the current version only
                # (event-schema-key-vault; keyvault-facts.md second round).
                ver = cert.current()
                if ver is not None and (self.fidelity.unknown_issuer_events or not ver.merged):
                    exp = ver.exp
                    assert exp is not None
                    if "near" not in ver.fired and now >= exp - NEAR_EXPIRY.total_seconds():
                        ver.fired.add("near")
                        self._touch()
                        self._emit("CertificateNearExpiry", cert.name, ver.version, ver.nbf, exp)
                    if "expired" not in ver.fired and now >= exp:
                        ver.fired.add("expired")
                        self._touch()
                        self._emit("CertificateExpired", cert.name, ver.version, ver.nbf, exp)
            for store in (self.deleted_certs, self.deleted_secrets):
                for key in [k for k, obj in store.items() if obj.purge_at and now >= obj.purge_at]:
                    del store[key]
                    self._touch()

    # ------------------------------------------------------------ persistence

    def dump(self) -> dict[str, Any]:
        """Everything, keys included (the --state file: mode 0600)."""
        with self.lock:
            def cert_state(cert: Certificate) -> dict[str, Any]:
                keys: dict[int, str] = {}
                versions = []
                for ver in cert.versions.values():
                    keys.setdefault(id(ver.key), kc.key_to_pem(ver.key))
                    versions.append({
                        "version": ver.version, "key": keys[id(ver.key)], "exportable": ver.exportable,
                        "hsm": ver.hsm, "content_type": ver.content_type, "created": ver.created,
                        "updated": ver.updated, "enabled": ver.enabled, "tags": ver.tags,
                        "cert": ver.cert.public_bytes(serialization.Encoding.PEM).decode()
                        if ver.cert else None,
                        "chain": [c.public_bytes(serialization.Encoding.PEM).decode() for c in ver.chain],
                        "fired": sorted(ver.fired), "planned_nbf": ver.planned_nbf,
                        "planned_exp": ver.planned_exp, "merged": ver.merged})
                op = None
                if cert.op is not None:
                    op = {**cert.op, "csr": base64.b64encode(cert.op["csr"]).decode()}
                return {"name": cert.name, "policy": cert.policy, "policy_created": cert.policy_created,
                        "policy_updated": cert.policy_updated, "versions": versions, "op": op,
                        "deleted": cert.deleted, "purge_at": cert.purge_at, "deleted_at": cert.deleted_at}

            def secret_state(secret: Secret) -> dict[str, Any]:
                return {"name": secret.name, "deleted": secret.deleted, "purge_at": secret.purge_at,
                        "versions": [dataclasses.asdict(v) for v in secret.versions.values()]}

            return {"format": 1, "vault_name": self.vault_name,
                    "certificates": [cert_state(c) for c in self.certs.values()],
                    "deleted_certificates": [cert_state(c) for c in self.deleted_certs.values()],
                    "secrets": [secret_state(s) for s in self.secrets.values()],
                    "deleted_secrets": [secret_state(s) for s in self.deleted_secrets.values()]}

    def load(self, state: dict[str, Any]) -> None:
        if state.get("format") != 1:
            raise ValueError("unknown state file format")

        def cert_from(data: dict[str, Any]) -> Certificate:
            cert = Certificate(data["name"], data["policy"], data["policy_created"],
                               data["policy_updated"], deleted=data["deleted"], purge_at=data["purge_at"],
                               deleted_at=data.get("deleted_at"))
            keys: dict[str, Any] = {}
            for v in data["versions"]:
                if v["key"] not in keys:
                    keys[v["key"]] = kc.key_from_pem(v["key"])
                cert.versions[v["version"]] = CertVersion(
                    v["version"], keys[v["key"]], v["exportable"], v["hsm"], v["content_type"],
                    v["created"], v["updated"], v["enabled"], dict(v["tags"]),
                    x509.load_pem_x509_certificate(v["cert"].encode()) if v["cert"] else None,
                    [x509.load_pem_x509_certificate(c.encode()) for c in v["chain"]], set(v["fired"]),
                    v.get("planned_nbf"), v.get("planned_exp"), bool(v.get("merged", False)))
            if data["op"] is not None:
                cert.op = {**data["op"], "csr": base64.b64decode(data["op"]["csr"])}
            return cert

        def secret_from(data: dict[str, Any]) -> Secret:
            secret = Secret(data["name"], deleted=data["deleted"], purge_at=data["purge_at"])
            for v in data["versions"]:
                secret.versions[v["version"]] = SecretVersion(**v)
            return secret

        # Read everything before replacing anything: a bad file leaves the vault as it was.
        certs = {c["name"].lower(): cert_from(c) for c in state["certificates"]}
        deleted_certs = {c["name"].lower(): cert_from(c) for c in state["deleted_certificates"]}
        secrets = {s["name"].lower(): secret_from(s) for s in state["secrets"]}
        deleted_secrets = {s["name"].lower(): secret_from(s) for s in state["deleted_secrets"]}
        with self.lock:
            self.certs, self.deleted_certs = certs, deleted_certs
            self.secrets, self.deleted_secrets = secrets, deleted_secrets
            self._touch()
