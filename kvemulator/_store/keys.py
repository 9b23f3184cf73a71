"""Keys: the certificates' keys, as the keys API shows them (read, list, sign, verify),
and what a request's key costs against the throttling limits."""

from __future__ import annotations

from typing import Any, Callable

from kvemulator import _crypto as kc
from kvemulator._errors import KvError, bad_parameter, not_found
from kvemulator._faults import KeySpec
from kvemulator._store.model import RECOVERABLE_DAYS, RECOVERY_LEVEL, Certificate, CertVersion, body_of, check_name
from kvemulator._store.paging import numbered, page
from kvemulator._store.state import VaultState


class Keys:
    def __init__(self, state: VaultState) -> None:
        self.state = state

    def _key_version(self, name: str, version: str) -> tuple[Certificate, CertVersion]:
        check_name(name)
        cert = self.state.certs.get(name.lower())
        if cert is None:
            raise not_found("Key", name, version or None)
        ver = cert.versions.get(version.lower()) if version else (cert.current() or cert.latest_any())
        if ver is None:
            raise not_found("Key", name, version or None)
        return cert, ver

    def _key_json(self, cert: Certificate, ver: CertVersion) -> dict[str, Any]:
        kid = f"{self.state.base_url}/keys/{cert.name}/{ver.version}"
        attrs: dict[str, Any] = {"enabled": ver.enabled and not ver.pending,
                                 "created": ver.created, "updated": ver.updated,
                                 "recoveryLevel": RECOVERY_LEVEL,
                                 "recoverableDays": RECOVERABLE_DAYS, "exportable": ver.exportable}
        if not ver.pending:
            attrs["nbf"], attrs["exp"] = ver.nbf, ver.exp
        return {"key": kc.public_jwk(ver.key, kid, ver.hsm), "attributes": attrs,
                "tags": dict(ver.tags), "managed": True}

    def get_key(self, name: str, version: str = "") -> dict[str, Any]:
        with self.state.lock:
            return self._key_json(*self._key_version(name, version))

    def list_keys(self, *, maxresults: int | None, skip: str,
                  next_url: Callable[[str], str]) -> dict[str, Any]:
        state = self.state

        def item_of(cert: Certificate) -> dict[str, Any]:
            ver = cert.current() or cert.latest_any()
            assert ver is not None  # a certificate never outlives its last version
            body = self._key_json(cert, ver)
            return {"kid": f"{state.base_url}/keys/{cert.name}", "attributes": body["attributes"],
                    "tags": body["tags"], "managed": True}

        with state.lock:
            return page(state.certs.after, maxresults, skip, next_url, item_of)

    def list_key_versions(self, name: str, *, maxresults: int | None, skip: str,
                          next_url: Callable[[str], str]) -> dict[str, Any]:
        with self.state.lock:
            cert, _ = self._key_version(name, "")

            def item_of(ver: CertVersion) -> dict[str, Any]:
                body = self._key_json(cert, ver)
                return {"kid": body["key"]["kid"], "attributes": body["attributes"], "tags": body["tags"],
                        "managed": True}

            return page(numbered(cert.versions.values()), maxresults, skip, next_url, item_of)

    def _usable_key(self, name: str, version: str, operation: str) -> tuple[Certificate, CertVersion]:
        cert, ver = self._key_version(name, version)
        if ver.pending:
            # Whether the real service lets a pending version's key sign is unconfirmed:
            # refuse, so code that works here also works there.
            raise KvError(403, "Forbidden", f"Operation {operation} is not allowed on a disabled key "
                          "(the key of a pending certificate version is usable only after merge).",
                          inner="KeyDisabled")
        if not ver.enabled:
            raise KvError(403, "Forbidden", f"Operation {operation} is not allowed on a disabled key.",
                          inner="KeyDisabled")
        return cert, ver

    def sign(self, name: str, version: str, body: Any) -> dict[str, Any]:
        body = body_of(body)
        alg, value = body.get("alg"), body.get("value")
        if not isinstance(alg, str) or not isinstance(value, str):
            raise bad_parameter("Properties alg and value are required.")
        try:
            digest = kc.b64url_decode(value)
        except ValueError as exc:
            raise bad_parameter("Property value is not base64url.") from exc
        with self.state.lock:
            cert, ver = self._usable_key(name, version, "sign")
            key = ver.key
        signature = kc.sign_digest(key, alg, digest)
        return {"kid": f"{self.state.base_url}/keys/{cert.name}/{ver.version}", "value": kc.b64url(signature)}

    def verify(self, name: str, version: str, body: Any) -> dict[str, Any]:
        body = body_of(body)
        alg, digest, value = body.get("alg"), body.get("digest"), body.get("value")
        if not all(isinstance(v, str) for v in (alg, digest, value)):
            raise bad_parameter("Properties alg, digest and value are required.")
        try:
            digest_b, sig = kc.b64url_decode(digest), kc.b64url_decode(value)
        except ValueError as exc:
            raise bad_parameter("Properties digest and value must be base64url.") from exc
        with self.state.lock:
            _, ver = self._usable_key(name, version, "verify")
            key = ver.key
        return {"value": kc.verify_digest(key, alg, digest_b, sig)}

    def key_spec(self, route: str, params: dict[str, str], body: Any) -> KeySpec | None:
        """The key a request works on, for the weighted throttling limits (None: no key,
        or one not known). A certificate create's key comes from its policy (or the
        certificate's), an import's HSM flag from its policy (its size is not read here)."""
        state = self.state
        with state.lock:
            name = params.get("name", "").lower()
            if route.startswith("/keys/{name}"):
                cert = state.certs.get(name)
                version = params.get("version", "").lower()
                ver = (cert.versions.get(version) if version else cert.current()) if cert else None
                if ver is None:
                    return None
                kty, size, _ = kc.key_spec_of(ver.key)
                return KeySpec(size if kty == "RSA" else None, ver.hsm)
            if route in ("/certificates/{name}/create", "/certificates/{name}/import"):
                policy = body.get("policy") if isinstance(body, dict) else None
                if not isinstance(policy, dict) and name in state.certs:
                    policy = state.certs[name].policy
                kp = policy.get("key_props") if isinstance(policy, dict) else None
                if not isinstance(kp, dict):
                    return KeySpec(None, False)
                kty, size = str(kp.get("kty") or "RSA"), kp.get("key_size")
                rsa = size if kty.startswith("RSA") and isinstance(size, int) else None
                return KeySpec(rsa, kty.endswith("-HSM"))
            return None
