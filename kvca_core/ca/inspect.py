"""`show_ca`, `list_cas`, `ca_names`: what the vault holds of each CA, never any key material."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from kvca_core import clock
from kvca_core.authority import parse_secret
from kvca_core.errors import NotFound, NotManaged
from kvca_core.model import CertificateVersion
from kvca_core.vocabulary import CA_TAG, CREATING_TAG, INTERMEDIATE, ROLE_TAG, ROOT, ca_of_root, check_name, root_name
from kvca_core.signing.certs import is_ca_certificate, is_self_signed, issued_by

from kvca_core.ca.common import basic_constraints, ca_where, cert_of, current_or_none, describe_key, name_constraints, order_chain, subject_label

log = logging.getLogger("kvca_core.ca")

# ---------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class CAInfo:
    """What `kvca ca show` prints about one CA (no key material, ever; JSON: `ca`)."""

    OBJECT = "ca"

    name: str
    version: str | None
    subject: str
    issuer: str
    key: str  # "EC P-256", "RSA 3072"
    key_exportable: bool | None  # from the vault's policy; None when unknown
    origin: str  # "created in Key Vault" or "imported"
    not_before: dt.datetime
    not_after: dt.datetime
    path_length: int | None
    permitted_dns: tuple[str, ...]
    excluded_dns: tuple[str, ...]
    serial: str
    sha256: str
    chain: tuple[str, ...]  # subjects above the CA, nearest first
    root_subject: str | None
    root_not_after: dt.datetime | None
    issued_valid: int  # certificates tagged kvca-ca=NAME that are enabled and not expired
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def when(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "name": self.name, "version": self.version, "subject": self.subject, "issuer": self.issuer,
            "key": self.key, "key_exportable": self.key_exportable, "origin": self.origin,
            "not_before": when(self.not_before), "not_after": when(self.not_after),
            "path_length": self.path_length, "permitted_dns": list(self.permitted_dns),
            "excluded_dns": list(self.excluded_dns), "serial": self.serial, "sha256": self.sha256,
            "chain": list(self.chain), "root_subject": self.root_subject,
            "root_not_after": when(self.root_not_after), "issued_valid": self.issued_valid,
            "notes": list(self.notes),
        }



# ---------------------------------------------------------------------------
# inspect


async def _ca_chain(vault, name: str) -> tuple[CertificateVersion, list[x509.Certificate], bool]:
    """The CA's current version, [its certificate, ..., root?], and whether the root
    `NAME-root` that `kvca ca create` made issued it.

    A created CA's chain comes from the certificates API, as authority.py takes it: its
    secret (which holds the private key when --exportable) is not read. An imported CA's
    chain is only in its secret; the key parsed with it is dropped at once."""
    current = await current_or_none(vault, name)
    if current is None:
        if await vault.get_pending(name) is not None:
            raise NotFound("this CA is not finished (only a pending request exists)", subject=ca_where(name),
                           hint="run the same `kvca ca create` again to finish it")
        raise NotFound("no CA of this name in the vault", subject=ca_where(name), hint="`kvca ca list` shows the CAs")
    if (current.tags or {}).get(ROLE_TAG) != INTERMEDIATE:
        if (current.tags or {}).get(CREATING_TAG):
            raise NotFound("this CA is not finished", subject=ca_where(name),
                           hint="run the same `kvca ca create` again to finish it")
        if (current.tags or {}).get(ROLE_TAG) == ROOT and ca_of_root(name):
            ca = ca_of_root(name)
            raise NotManaged(f"is the root of CA '{ca}', which signs through its intermediate", subject=ca_where(name),
                             hint=f"`kvca ca show {ca}`")
        raise NotManaged(f"the certificate is not a kvca CA (no tag {ROLE_TAG}=intermediate)", subject=ca_where(name),
                         hint="`kvca ca list` shows the CAs")
    cert = cert_of(current)
    if cert is None:
        raise NotFound("the CA has no completed version", subject=ca_where(name))
    root_version = await current_or_none(vault, root_name(name))
    if root_version is not None and (root_version.tags or {}).get(ROLE_TAG) == ROOT:
        root = cert_of(root_version)
        if root is not None and is_ca_certificate(root) and issued_by(cert, root):
            return current, [cert, root], True
    content_type, value = await vault.get_secret_value(name, current.version)
    key, certs = parse_secret(ca_where(name), content_type, value)
    del key, value
    return current, order_chain(cert, [c for c in certs if c != cert], ca_where(name)), False


async def _scan(vault) -> tuple[list[str], dict[str, int]]:
    """One listing of the vault: the finished CAs (tag kvca-role=intermediate) by name, and for
    each CA name how many certificates tagged kvca-ca=NAME are enabled and not expired."""
    listed = [item async for item in vault.list_certificates(include_pending=False)]
    now = clock.now()  # after the listing: kvca's clock follows the vault's answers (clock.py)
    names: list[str] = []
    counts: dict[str, int] = {}
    for item in listed:
        tags = item.tags or {}
        if tags.get(ROLE_TAG) == INTERMEDIATE:
            names.append(item.name)
        ca = tags.get(CA_TAG)
        if ca and item.enabled and item.expires_on is not None and item.expires_on > now:
            counts[ca] = counts.get(ca, 0) + 1
    return sorted(names), counts


async def _info(vault, name: str, counts: dict[str, int] | None = None) -> CAInfo:
    current, chain, created = await _ca_chain(vault, name)
    cert = chain[0]
    if counts is None:
        _, counts = await _scan(vault)
    try:
        exportable = (await vault.get_policy(name)).key.exportable
    except NotFound:
        exportable = None
    root = chain[-1] if is_self_signed(chain[-1]) else None
    bc = basic_constraints(cert)
    permitted, excluded = name_constraints(cert)
    return CAInfo(
        name=name, version=current.version, subject=subject_label(cert), issuer=cert.issuer.rfc4514_string(),
        key=describe_key(cert.public_key()), key_exportable=exportable,
        origin="created in Key Vault" if created else "imported",
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        path_length=bc.path_length if bc else None, permitted_dns=permitted, excluded_dns=excluded,
        serial=f"{cert.serial_number:x}", sha256=cert.fingerprint(hashes.SHA256()).hex(),
        chain=tuple(subject_label(c) for c in chain[1:]),
        root_subject=subject_label(root) if root is not None else None,
        root_not_after=root.not_valid_after_utc if root is not None else None,
        issued_valid=counts.get(name, 0),
    )


async def show_ca(ctx, name: str) -> CAInfo:
    check_name(name, "CA")
    return await _info(ctx.vault, name)


async def ca_names(ctx) -> list[str]:
    """The names of the finished CAs in the vault, sorted: one listing, nothing else read."""
    names, _ = await _scan(ctx.vault)
    return names


async def list_cas(ctx) -> list[CAInfo]:
    """Every finished CA in the vault (tag kvca-role=intermediate), by name."""
    names, counts = await _scan(ctx.vault)
    return [await _info(ctx.vault, n, counts) for n in names]


