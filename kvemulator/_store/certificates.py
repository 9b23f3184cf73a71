"""Certificates and their pending operations: create, merge, import, read, list, update,
soft delete (the /certificates and /deletedcertificates routes)."""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import uuid
from typing import Any, Callable, Iterator

from cryptography import x509

from kvemulator import _crypto as kc
from kvemulator._errors import KvError, bad_parameter, not_found
from kvemulator._store.model import (
    CONCURRENT_CONFLICT, PENDING_BACKDATE, PENDING_CONFLICT, Certificate, CertVersion, attrs_in, body_of,
    cert_attrs, check_name, epoch, new_version, obj, tags_in)
from kvemulator._store.paging import numbered, page
from kvemulator._store.policy import created_policy, merge_policy, normalize_policy
from kvemulator._store.state import VaultState


@dataclasses.dataclass
class CreatePlan:
    """A create checked and decided, waiting for its key (generated outside the lock)."""
    name: str
    policy: dict[str, Any]
    attributes: dict[str, Any]
    tags: dict[str, str]
    key: Any | None  # reused key, or None: generate one


class Certificates:
    def __init__(self, state: VaultState) -> None:
        self.state = state

    # ------------------------------------------------------------ lookups and bodies

    def _cert(self, name: str) -> Certificate:
        check_name(name)
        cert = self.state.certs.get(name.lower())
        if cert is None:
            raise not_found("Certificate", name)
        return cert

    def _version(self, cert: Certificate, version: str) -> CertVersion:
        if version:
            ver = cert.versions.get(version.lower())
            if ver is None:
                raise not_found("Certificate", cert.name, version)
            return ver
        ver = self.current_view(cert)
        if ver is None:
            raise not_found("Certificate", cert.name)
        return ver

    def current_view(self, cert: Certificate) -> CertVersion | None:
        """The version a versionless GET (and the list, and DELETE) answers.

        Whether the real service answers a newer pending or abandoned version over an
        older completed one is unconfirmed (azure-cli#26044: disabled versions are answered
        as current), hence the switch; a certificate with no completed version answers its
        newest one either way (.NET recording VerifyCertificateGetWithPolicyInProgress).
        """
        if self.state.fidelity.current_includes_pending:
            return cert.latest_any()
        return cert.current() or cert.latest_any()

    def _policy_json(self, cert: Certificate) -> dict[str, Any]:
        body = copy.deepcopy(cert.policy)
        body["id"] = f"{self.state.base_url}/certificates/{cert.name}/policy"
        body["attributes"] = {"enabled": True, "created": cert.policy_created,
                              "updated": cert.policy_updated}
        return body

    def _bundle(self, cert: Certificate, ver: CertVersion, *, with_policy: bool) -> dict[str, Any]:
        base = self.state.base_url
        body: dict[str, Any] = {
            "id": f"{base}/certificates/{cert.name}/{ver.version}",
            "attributes": cert_attrs(ver),
            "tags": dict(ver.tags),
        }
        if ver.cert is not None:
            # A never-completed version has no kid, sid, x5t or cer (.NET recording
            # VerifyCertificateGetWithPolicyInProgress, and Java's): "pending" shows as
            # their absence, not as missing dates.
            body["kid"] = f"{base}/keys/{cert.name}/{ver.version}"
            body["sid"] = f"{base}/secrets/{cert.name}/{ver.version}"
            body["x5t"] = kc.b64url(kc.thumbprint(ver.cert))
            body["cer"] = base64.b64encode(kc.cert_der(ver.cert)).decode()
        if with_policy:
            body["policy"] = self._policy_json(cert)
        if cert.op is not None:
            body["pending"] = {"id": f"{base}/certificates/{cert.name}/pending"}
        return body

    def _cert_json(self, cert: Certificate) -> dict[str, Any]:
        """The bundle of the current version (or a never-completed one), policy included."""
        ver = self.current_view(cert)
        assert ver is not None  # a certificate never outlives its last version
        body = self._bundle(cert, ver, with_policy=True)
        if cert.deleted is not None:
            body.update(self.state.deleted_fields(cert, "certificates"))
        return body

    # ------------------------------------------------------------ the pending operation

    def _settle_op(self, cert: Certificate) -> dict[str, Any] | None:
        """The operation, with a requested cancellation applied once its delay has passed:
        the service answers the cancel with status still inProgress and reads "cancelled"
        only later (Java recording)."""
        op = cert.op
        if op is not None and op["status"] == "inProgress" and op.get("cancel_at") is not None \
                and self.state.seconds() >= op["cancel_at"]:
            op["status"] = "cancelled"
            op["status_details"] = "Pending certificate cancelled."
            op["cancel_at"] = None
            self.state.touch()
        return op

    def _op_json(self, cert: Certificate) -> dict[str, Any]:
        op = self._settle_op(cert)
        assert op is not None
        body: dict[str, Any] = {
            "id": f"{self.state.base_url}/certificates/{cert.name}/pending",
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
            body["target"] = f"{self.state.base_url}/certificates/{cert.name}"
        return body

    def _change_pending(self, cert: Certificate) -> None:
        """Count a change (merge, cancel, delete) to the pending operation; a second one
        within `pending_conflict_seconds` of the last is a 409, as the service answers
        concurrent changes (azure-sdk-for-js#35011, #36328)."""
        op = cert.op
        assert op is not None
        window, now = self.state.fidelity.pending_conflict_seconds, self.state.seconds()
        last = op.get("changed_at")
        if window > 0 and last is not None and now - last < window:
            raise KvError(409, "Conflict", CONCURRENT_CONFLICT.format(name=cert.name))
        op["changed_at"] = now

    def _check_can_add_version(self, name: str) -> None:
        state, key = self.state, name.lower()
        if key in state.deleted_certs:
            # 409 Conflict, innererror ObjectIsDeletedButRecoverable, this message (as a
            # real vault answered it: rcl-letsencrypt-auto-ssl/Lets-Encrypt-Auto#16).
            raise KvError(409, "Conflict", f"Certificate {name} is currently in a deleted but "
                          "recoverable state, and its name cannot be reused; in this state, the "
                          "certificate can only be recovered or purged.",
                          inner="ObjectIsDeletedButRecoverable")
        if key in state.secrets or key in state.deleted_secrets:
            raise KvError(409, "Conflict", f"Secret {name} already exists and is not managed by "
                          "a certificate: a certificate cannot take its name.")
        cert = state.certs.get(key)
        op = self._settle_op(cert) if cert is not None else None
        if op is not None and op["status"] == "inProgress":
            # 409, with the code the docs show: Forbidden
            # (learn.microsoft.com/azure/key-vault/certificates/create-certificate-scenarios).
            raise KvError(409, "Forbidden", PENDING_CONFLICT)

    # ------------------------------------------------------------ create

    def prepare_create(self, name: str, body: Any) -> CreatePlan:
        body = body_of(body)
        check_name(name)
        with self.state.lock:
            self._check_can_add_version(name)
            existing = self.state.certs.get(name.lower())
            raw_policy = body.get("policy")
            if raw_policy is None:
                if existing is None:
                    raise bad_parameter("Property policy is required.")
                policy = copy.deepcopy(existing.policy)
            else:
                policy = created_policy(raw_policy)
            reused = None
            if existing is not None and policy["key_props"]["reuse_key"]:
                prev = existing.current() or existing.latest_any()
                if prev is not None and self._key_matches(prev.key, policy["key_props"]):
                    reused = prev.key
            return CreatePlan(name, policy, attrs_in(body), tags_in(body) or {}, reused)

    @staticmethod
    def _key_matches(key: Any, key_props: dict[str, Any]) -> bool:
        kty, size, crv = kc.key_spec_of(key)
        want = key_props["kty"].replace("-HSM", "")
        return kty == want and (size == key_props.get("key_size") if kty == "RSA"
                                else crv == key_props.get("crv"))

    def commit_create(self, plan: CreatePlan, key: Any) -> dict[str, Any]:
        state, policy = self.state, plan.policy
        # Everything that signs (or could fail) before the lock and before any change.
        csr = kc.build_csr(key, policy["x509_props"])
        created = state.now_datetime()  # a Self certificate's dates count from it
        self_cert = (kc.self_signed(key, policy["x509_props"], created)
                     if policy["issuer"]["name"] == "Self" else None)
        with state.lock:
            self._check_can_add_version(plan.name)
            now = epoch(created)
            cert = self._with_policy(plan.name, policy, now)
            kp = policy["key_props"]
            planned_nbf = now - PENDING_BACKDATE
            planned_exp = epoch(kc.add_months(dt.datetime.fromtimestamp(planned_nbf, dt.timezone.utc),
                                              policy["x509_props"]["validity_months"]))
            ver = CertVersion(new_version(), key, kp["exportable"], kp["kty"].endswith("-HSM"),
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
                state.completed(cert, ver)
                state.emit("CertificateNewVersionCreated", cert.name, ver.version, ver.nbf, ver.exp)
            state.touch()
            return answer

    def _with_policy(self, name: str, policy: dict[str, Any], now: int) -> Certificate:
        """The certificate `name` (made if new) carrying `policy` from now on."""
        cert = self.state.certs.get(name.lower())
        if cert is None:
            cert = Certificate(name, policy, now, now)
            self.state.certs[name.lower()] = cert
        else:
            cert.policy, cert.policy_updated = policy, now
        return cert

    # ------------------------------------------------------------ pending: read, cancel, delete, merge

    def get_operation(self, name: str) -> dict[str, Any]:
        with self.state.lock:
            check_name(name)
            cert = self.state.certs.get(name.lower())
            if cert is None or cert.op is None:
                raise KvError(404, "PendingCertificateNotFound", f"Pending certificate not found: {name}")
            return self._op_json(cert)

    def cancel_operation(self, name: str, body: Any) -> dict[str, Any]:
        body = body_of(body)
        flag = body.get("cancellation_requested")
        if not isinstance(flag, bool):
            raise bad_parameter("Property cancellation_requested is required and must be a boolean.")
        with self.state.lock:
            self.get_operation(name)
            cert = self.state.certs[name.lower()]
            self._change_pending(cert)
            op = self._settle_op(cert)
            assert op is not None
            if flag and op["status"] == "inProgress" and not op["cancellation_requested"]:
                # Answered with status still inProgress; "cancelled" only after the delay.
                op["cancellation_requested"] = True
                op["cancel_at"] = self.state.seconds() + self.state.fidelity.cancel_settle_seconds
                self.state.touch()
            return self._op_json(cert)

    def delete_operation(self, name: str) -> dict[str, Any]:
        with self.state.lock:
            body = self.get_operation(name)
            cert = self.state.certs[name.lower()]
            self._change_pending(cert)
            # The never-completed version stays behind, disabled and without a certificate:
            # DELETE /certificates/{name} later answers it (Python recording
            # test_async_request_cancellation_and_deletion, 7.3).
            cert.op = None
            self.state.touch()
            return body

    def _merge_target(self, name: str) -> tuple[Certificate, dict[str, Any]]:
        with self.state.lock:
            check_name(name)
            cert = self.state.certs.get(name.lower())
            op = self._settle_op(cert) if cert is not None else None
            if cert is None or op is None or op["status"] == "completed":
                # "Certificate" capitalized, as the Java recording mergeCertificateNotFound shows.
                raise KvError(404, "PendingCertificateNotFound", f"Pending Certificate not found: {name}")
            return cert, op

    def merge(self, name: str, body: Any) -> dict[str, Any]:
        body = body_of(body)
        # Nothing pending is a 404 before the body is looked at, even a garbage x5c
        # (Java recording mergeCertificateNotFound).
        self._merge_target(name)
        chain_in = kc.parse_x5c(body.get("x5c"))
        attrs = attrs_in(body)
        tags = tags_in(body)
        state = self.state
        with state.lock:
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
            # created is when the version completed, not when it was requested (the SDK
            # test suites' recorded sessions: a Self create's created is its completion).
            ver.created = ver.updated = state.now()
            ver.planned_nbf = ver.planned_exp = None
            ver.merged = True
            op["status"] = "completed"
            op["status_details"] = None
            state.completed(cert, ver)
            state.touch()
            if state.fidelity.unknown_issuer_events:
                state.emit("CertificateNewVersionCreated", cert.name, ver.version, ver.nbf, ver.exp)
            return self._bundle(cert, ver, with_policy=True)

    # ------------------------------------------------------------ import

    def import_certificate(self, name: str, body: Any) -> dict[str, Any]:
        body = body_of(body)
        check_name(name)
        password = body.get("pwd")
        if password is not None and not isinstance(password, str):
            raise bad_parameter("Property pwd must be a string.")
        key, certs, detected = kc.parse_import(body.get("value"), password)
        leaf = kc.import_leaf(key, certs)
        assert key is not None  # import_leaf refused a missing key
        others = [c for c in certs if c is not leaf]
        key_spec = kc.key_spec_of(key)
        attrs = attrs_in(body)
        tags = tags_in(body) or {}
        raw_policy = obj(body.get("policy"), "policy")
        state = self.state
        with state.lock:
            self._check_can_add_version(name)
            existing = state.certs.get(name.lower())
            base = copy.deepcopy(existing.policy) if existing is not None and not raw_policy else {}
            policy = _import_policy(merge_policy(base, raw_policy) if raw_policy else base,
                                    leaf, key_spec, detected)
            now = state.now()
            cert = self._with_policy(name, policy, now)
            ver = CertVersion(new_version(), key, policy["key_props"]["exportable"],
                              policy["key_props"]["kty"].endswith("-HSM"),
                              policy["secret_props"]["contentType"], now, now,
                              enabled=attrs.get("enabled", True) is not False, tags=tags,
                              cert=leaf, chain=kc.order_chain(leaf, others)[1:])
            cert.versions[ver.version] = ver
            state.completed(cert, ver)
            state.touch()
            state.emit("CertificateNewVersionCreated", cert.name, ver.version, ver.nbf, ver.exp)
            return self._bundle(cert, ver, with_policy=True)

    # ------------------------------------------------------------ read and update

    def get_certificate(self, name: str, version: str = "") -> dict[str, Any]:
        with self.state.lock:
            cert = self._cert(name)
            ver = self._version(cert, version)
            return self._bundle(cert, ver, with_policy=not version)

    def list_certificates(self, *, maxresults: int | None, include_pending: bool, skip: str,
                          next_url: Callable[[str], str], deleted: bool = False) -> dict[str, Any]:
        state = self.state
        source = state.deleted_certs if deleted else state.certs

        def walk(after: str | None) -> Iterator[tuple[str, tuple[Certificate, CertVersion]]]:
            for key, cert in source.after(after):
                if deleted and not self._delete_settled(cert):
                    continue
                if cert.current() is None and not include_pending:
                    continue  # only never-completed versions: listed with includePending only
                ver = self.current_view(cert)
                if ver is not None:
                    yield key, (cert, ver)

        def item_of(entry: tuple[Certificate, CertVersion]) -> dict[str, Any]:
            cert, ver = entry
            # A never-completed version's item: enabled false, nbf/exp from the policy,
            # no x5t, subject "" (JS recording).
            item: dict[str, Any] = {"id": f"{state.base_url}/certificates/{cert.name}",
                                    "attributes": cert_attrs(ver), "tags": dict(ver.tags), "subject": ""}
            if ver.cert is not None:
                item["x5t"] = kc.b64url(kc.thumbprint(ver.cert))
                item["subject"] = kc.subject_text(ver.cert.subject)
            if deleted:
                item.update(state.deleted_fields(cert, "certificates"))
            return item

        with state.lock:
            return page(walk, maxresults, skip, next_url, item_of)

    def list_versions(self, name: str, *, maxresults: int | None, skip: str,
                      next_url: Callable[[str], str]) -> dict[str, Any]:
        with self.state.lock:
            cert = self._cert(name)
            base = f"{self.state.base_url}/certificates/{cert.name}"

            def item_of(ver: CertVersion) -> dict[str, Any]:
                item: dict[str, Any] = {"id": f"{base}/{ver.version}", "attributes": cert_attrs(ver),
                                        "tags": dict(ver.tags)}
                if ver.cert is not None:
                    item["x5t"] = kc.b64url(kc.thumbprint(ver.cert))
                return item

            return page(numbered(cert.versions.values()), maxresults, skip, next_url, item_of)

    def get_policy(self, name: str) -> dict[str, Any]:
        with self.state.lock:
            return self._policy_json(self._cert(name))

    def update_policy(self, name: str, body: Any) -> dict[str, Any]:
        body = body_of(body)
        with self.state.lock:
            cert = self._cert(name)
            cert.policy = normalize_policy(merge_policy(cert.policy, body))
            cert.policy_updated = self.state.now()
            self.state.touch()
            return self._policy_json(cert)

    def update_certificate(self, name: str, version: str, body: Any) -> dict[str, Any]:
        body = body_of(body)
        attrs = attrs_in(body)
        tags = tags_in(body)
        with self.state.lock:
            cert = self._cert(name)
            ver = self._version(cert, version)
            if body.get("policy") is not None:
                cert.policy = normalize_policy(merge_policy(cert.policy, body_of(body["policy"])))
                cert.policy_updated = self.state.now()
            if attrs.get("enabled") is not None:
                ver.enabled = attrs["enabled"]
            if tags is not None:
                ver.tags = tags
            ver.updated = self.state.now()
            self.state.touch()
            return self._bundle(cert, ver, with_policy=not version)

    # ------------------------------------------------------------ soft delete

    def _delete_settled(self, cert: Certificate) -> bool:
        """Whether a deleted certificate shows in /deletedcertificates yet: soft delete
        completes asynchronously, GET of it was 404 for about 9 s after the DELETE
        (Python recording, 7.3)."""
        return cert.deleted_at is None or \
            self.state.seconds() >= cert.deleted_at + self.state.fidelity.soft_delete_settle_seconds

    def delete_certificate(self, name: str) -> dict[str, Any]:
        with self.state.lock:
            cert = self._cert(name)
            self.state.soft_delete(self.state.certs, self.state.deleted_certs, cert)
            cert.deleted_at = self.state.seconds()
            return self._cert_json(cert)

    def _settled_deleted_cert(self, name: str) -> Certificate:
        cert = self.state.find_deleted(self.state.deleted_certs, name, "Certificate")
        if not self._delete_settled(cert):
            raise KvError(404, "CertificateNotFound", f"Deleted Certificate not found: {name}")
        return cert

    def get_deleted_certificate(self, name: str) -> dict[str, Any]:
        with self.state.lock:
            return self._cert_json(self._settled_deleted_cert(name))

    def recover_certificate(self, name: str) -> dict[str, Any]:
        with self.state.lock:
            cert = self._settled_deleted_cert(name)
            self.state.recover(self.state.certs, self.state.deleted_certs, cert)
            cert.deleted_at = None
            current = cert.current()
            if current is not None:
                self.state.completed(cert, current)
            return self._cert_json(cert)

    def purge_certificate(self, name: str) -> None:
        with self.state.lock:
            self.state.purge(self.state.deleted_certs, self._settled_deleted_cert(name).name, "Certificate")


def _import_policy(given: dict[str, Any], leaf: x509.Certificate,
                   key_spec: tuple[str, int | None, str | None], detected: str) -> dict[str, Any]:
    """An import's policy: what was given (or the certificate's), its subject and names
    read from the leaf when none were given, its key properties from the imported key."""
    given.setdefault("x509_props", {})
    if not given["x509_props"].get("subject") and not given["x509_props"].get("sans"):
        from_leaf = kc.x509_props_of(leaf)
        given["x509_props"] = {**from_leaf, **given["x509_props"]}
        if not given["x509_props"].get("subject"):
            given["x509_props"]["subject"] = from_leaf["subject"]
    kty, size, crv = key_spec
    kp = dict(given.get("key_props") or {})
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
    given["key_props"] = kp
    sp = dict(given.get("secret_props") or {})
    sp.setdefault("contentType", detected)
    given["secret_props"] = sp
    return normalize_policy(given, default_issuer="Unknown", default_content_type=detected)
