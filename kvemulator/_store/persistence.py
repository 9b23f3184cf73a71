"""The vault as one JSON-ready document (the --state file) and back.

The document holds private keys: the emulator writes it mode 0600 and never logs it.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kvemulator import _crypto as kc
from kvemulator._store.model import Certificate, CertVersion, Secret, SecretVersion
from kvemulator._store.state import VaultState

FORMAT = 1


def dump(state: VaultState) -> dict[str, Any]:
    """Everything, keys included."""
    with state.lock:
        return {"format": FORMAT, "vault_name": state.vault_name,
                "certificates": [_cert_state(c) for c in state.certs.values()],
                "deleted_certificates": [_cert_state(c) for c in state.deleted_certs.values()],
                "secrets": [_secret_state(s) for s in state.secrets.values()],
                "deleted_secrets": [_secret_state(s) for s in state.deleted_secrets.values()]}


def load(state: VaultState, data: dict[str, Any]) -> None:
    """Replace the vault's contents with `data` (a `dump`). Everything is read before anything
    is replaced: a bad document leaves the vault as it was."""
    if data.get("format") != FORMAT:
        raise ValueError("unknown state file format")
    certs = {c["name"].lower(): _cert_from(c) for c in data["certificates"]}
    deleted_certs = {c["name"].lower(): _cert_from(c) for c in data["deleted_certificates"]}
    secrets = {s["name"].lower(): _secret_from(s) for s in data["secrets"]}
    deleted_secrets = {s["name"].lower(): _secret_from(s) for s in data["deleted_secrets"]}
    state.replace(certs, deleted_certs, secrets, deleted_secrets)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _cert_state(cert: Certificate) -> dict[str, Any]:
    keys: dict[int, str] = {}  # a reused key is written once per certificate, then referred to
    versions = []
    for ver in cert.versions.values():
        keys.setdefault(id(ver.key), kc.key_to_pem(ver.key))
        versions.append({
            "version": ver.version, "key": keys[id(ver.key)], "exportable": ver.exportable,
            "hsm": ver.hsm, "content_type": ver.content_type, "created": ver.created,
            "updated": ver.updated, "enabled": ver.enabled, "tags": ver.tags,
            "cert": _pem(ver.cert) if ver.cert else None,
            "chain": [_pem(c) for c in ver.chain],
            "fired": sorted(ver.fired), "planned_nbf": ver.planned_nbf,
            "planned_exp": ver.planned_exp, "merged": ver.merged})
    op = None
    if cert.op is not None:
        op = {**cert.op, "csr": base64.b64encode(cert.op["csr"]).decode()}
    return {"name": cert.name, "policy": cert.policy, "policy_created": cert.policy_created,
            "policy_updated": cert.policy_updated, "versions": versions, "op": op,
            "deleted": cert.deleted, "purge_at": cert.purge_at, "deleted_at": cert.deleted_at}


def _cert_from(data: dict[str, Any]) -> Certificate:
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


def _secret_state(secret: Secret) -> dict[str, Any]:
    return {"name": secret.name, "deleted": secret.deleted, "purge_at": secret.purge_at,
            "versions": [dataclasses.asdict(v) for v in secret.versions.values()]}


def _secret_from(data: dict[str, Any]) -> Secret:
    secret = Secret(data["name"], deleted=data["deleted"], purge_at=data["purge_at"])
    for v in data["versions"]:
        secret.versions[v["version"]] = SecretVersion(**v)
    return secret
