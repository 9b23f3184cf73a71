"""Secrets: plain ones (set, read, update, soft delete) and the read-only secrets behind
certificates (the /secrets and /deletedsecrets routes)."""

from __future__ import annotations

import heapq
from typing import Any, Callable, Iterator

from kvemulator import _crypto as kc
from kvemulator._errors import KvError, bad_parameter, not_found
from kvemulator._store.model import (
    MAX_SECRET_CHARS, RECOVERABLE_DAYS, RECOVERY_LEVEL, Certificate, CertVersion, Secret, SecretVersion, attrs_in,
    body_of, cert_attrs, check_name, new_version, tags_in)
from kvemulator._store.paging import numbered, page
from kvemulator._store.state import VaultState

_DISABLED = "Operation get is not allowed on a disabled secret."


class Secrets:
    def __init__(self, state: VaultState) -> None:
        self.state = state

    # ------------------------------------------------------------ bodies

    def _cert_secret(self, cert: Certificate, ver: CertVersion, *, with_value: bool) -> dict[str, Any]:
        base = self.state.base_url
        body: dict[str, Any] = {
            "id": f"{base}/secrets/{cert.name}/{ver.version}",
            "contentType": ver.content_type,
            "attributes": cert_attrs(ver),
            "tags": dict(ver.tags),
            "kid": f"{base}/keys/{cert.name}/{ver.version}",
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
        body: dict[str, Any] = {"id": f"{self.state.base_url}/secrets/{secret.name}/{ver.version}",
                                "attributes": attrs, "tags": dict(ver.tags)}
        if ver.content_type is not None:
            body["contentType"] = ver.content_type
        if with_value:
            body["value"] = ver.value
        return body

    def _current_secret_json(self, secret: Secret) -> dict[str, Any]:
        """The current version without its value (and the deleted fields when deleted)."""
        ver = secret.current()
        assert ver is not None  # a secret always has a version
        body = self._secret_json(secret, ver, with_value=False)
        if secret.deleted is not None:
            body.update(self.state.deleted_fields(secret, "secrets"))
        return body

    # ------------------------------------------------------------ set, read, list

    def set_secret(self, name: str, body: Any) -> dict[str, Any]:
        body = body_of(body)
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
        attrs = attrs_in(body)
        tags = tags_in(body) or {}
        state = self.state
        with state.lock:
            key = name.lower()
            if key in state.certs or key in state.deleted_certs:
                raise KvError(409, "Conflict", f"Secret {name} is managed by certificate {name}; "
                              "set a new certificate version instead.")
            if key in state.deleted_secrets:
                raise KvError(409, "Conflict", f"Secret {name} is currently in a deleted but "
                              "recoverable state, and its name cannot be reused; in this state, "
                              "the secret can only be recovered or purged.")
            secret = state.secrets.setdefault(key, Secret(name))
            now = state.now()
            ver = SecretVersion(new_version(), value, content_type, now, now,
                                enabled=attrs.get("enabled", True) is not False,
                                nbf=attrs.get("nbf"), exp=attrs.get("exp"), tags=tags)
            secret.versions[ver.version] = ver
            state.touch()
            return self._secret_json(secret, ver, with_value=True)

    def get_secret(self, name: str, version: str = "") -> dict[str, Any]:
        state = self.state
        with state.lock:
            check_name(name)
            key = name.lower()
            secret = state.secrets.get(key)
            if secret is not None:
                ver = secret.versions.get(version.lower()) if version else secret.current()
                if ver is None:
                    raise not_found("Secret", name, version or None)
                if not ver.enabled:
                    raise KvError(403, "Forbidden", _DISABLED, inner="SecretDisabled")
                return self._secret_json(secret, ver, with_value=True)
            cert = state.certs.get(key)
            if cert is None:
                raise not_found("Secret", name, version or None)
            cert_ver = cert.versions.get(version.lower()) if version else cert.current()
            if cert_ver is None or cert_ver.pending:
                raise not_found("Secret", name, version or None)
            if not cert_ver.enabled:
                raise KvError(403, "Forbidden", _DISABLED, inner="SecretDisabled")
            return self._cert_secret(cert, cert_ver, with_value=True)

    def list_secrets(self, *, maxresults: int | None, skip: str, next_url: Callable[[str], str],
                     deleted: bool = False) -> dict[str, Any]:
        """Plain secrets and, unless `deleted`, the secrets of completed certificates, by name."""
        state = self.state

        def walk(after: str | None) -> Iterator[tuple[str, Secret | Certificate]]:
            objects: Iterator[tuple[str, Secret | Certificate]] = (
                state.deleted_secrets.after(after) if deleted else
                heapq.merge(state.secrets.after(after), state.certs.after(after), key=lambda pair: pair[0]))
            return ((key, obj) for key, obj in objects if obj.current() is not None)

        def item_of(obj: Secret | Certificate) -> dict[str, Any]:
            if isinstance(obj, Certificate):
                ver = obj.current()
                assert ver is not None
                item = self._cert_secret(obj, ver, with_value=False)
            else:
                item = self._current_secret_json(obj)
            item["id"] = f"{state.base_url}/secrets/{obj.name}"
            return item

        with state.lock:
            return page(walk, maxresults, skip, next_url, item_of)

    def list_secret_versions(self, name: str, *, maxresults: int | None, skip: str,
                             next_url: Callable[[str], str]) -> dict[str, Any]:
        with self.state.lock:
            check_name(name)
            secret = self.state.secrets.get(name.lower())
            if secret is not None:
                return page(numbered(secret.versions.values()), maxresults, skip, next_url,
                            lambda v: self._secret_json(secret, v, with_value=False))
            cert = self.state.certs.get(name.lower())
            if cert is None:
                raise not_found("Secret", name)
            return page(numbered(v for v in cert.versions.values() if not v.pending), maxresults, skip,
                        next_url, lambda v: self._cert_secret(cert, v, with_value=False))

    # ------------------------------------------------------------ update, soft delete

    def update_secret(self, name: str, version: str, body: Any) -> dict[str, Any]:
        body = body_of(body)
        attrs = attrs_in(body)
        tags = tags_in(body)
        content_type = body.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise bad_parameter("Property contentType must be a string.")
        with self.state.lock:
            check_name(name)
            secret = self.state.secrets.get(name.lower())
            if secret is None:
                if name.lower() in self.state.certs:
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
            ver.updated = self.state.now()
            self.state.touch()
            return self._secret_json(secret, ver, with_value=False)

    def delete_secret(self, name: str) -> dict[str, Any]:
        state = self.state
        with state.lock:
            check_name(name)
            key = name.lower()
            secret = state.secrets.get(key)
            if secret is None:
                if key in state.certs:
                    raise KvError(403, "Forbidden", "Operation delete is not allowed on a managed "
                                  "secret; delete the certificate instead.")
                raise not_found("Secret", name)
            state.soft_delete(state.secrets, state.deleted_secrets, secret)
            return self._current_secret_json(secret)

    def get_deleted_secret(self, name: str) -> dict[str, Any]:
        with self.state.lock:
            return self._current_secret_json(
                self.state.find_deleted(self.state.deleted_secrets, name, "Secret"))

    def recover_secret(self, name: str) -> dict[str, Any]:
        state = self.state
        with state.lock:
            secret = state.find_deleted(state.deleted_secrets, name, "Secret")
            state.recover(state.secrets, state.deleted_secrets, secret)
            return self._current_secret_json(secret)

    def purge_secret(self, name: str) -> None:
        with self.state.lock:
            self.state.purge(self.state.deleted_secrets, name, "Secret")
