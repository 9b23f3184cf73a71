"""What kvca knows about a vault, without knowing HTTP: plain values that the operations, the CLI
and the Functions app pass around without touching the SDK's models. The port that returns them
is `kvca_core.ports.Vault`.

Everything a vault returns is untrusted input: the operations re-check CSRs,
certificates and tags before acting on them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Mapping

@dataclass(frozen=True)
class KeySpec:
    """Key Vault `key_props`: kty RSA/EC, size or curve, exportable, reuse_key, and whether the key
    lives in an HSM (kty RSA-HSM / EC-HSM in Key Vault's spelling)."""

    kty: str  # "RSA" or "EC"
    size: int | None = None  # RSA bits
    curve: str | None = None  # "P-256", "P-384", "P-521"
    exportable: bool = False
    reuse_key: bool = False
    # An HSM key (Premium vaults; never exportable): Key Vault creates half as many of them per 10 s,
    # which the shared create budget counts (operations/coordination.py).
    hsm: bool = False

    @classmethod
    def parse(cls, text: str, *, exportable: bool = False) -> "KeySpec":
        """`ec-p256`, `rsa-2048`, ... (the CLI's and HTTP API's spelling)."""
        from kvca_core.errors import InvalidRequest

        names = {
            "ec-p256": ("EC", None, "P-256"), "ec-p384": ("EC", None, "P-384"),
            "ec-p521": ("EC", None, "P-521"), "rsa-2048": ("RSA", 2048, None),
            "rsa-3072": ("RSA", 3072, None), "rsa-4096": ("RSA", 4096, None),
        }
        try:
            kty, size, curve = names[text.strip().lower()]
        except KeyError:
            raise InvalidRequest(f"key type {text!r} is not supported (use one of {', '.join(names)})") from None
        return cls(kty=kty, size=size, curve=curve, exportable=exportable)


@dataclass(frozen=True)
class CertificatePolicy:
    """The parts of a Key Vault certificate policy kvca reads and writes."""

    issuer_name: str  # "Unknown" for kvca-managed certificates, "Self" for self-signed
    subject: str  # e.g. "CN=api.example.internal"
    dns_names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    upns: tuple[str, ...] = ()
    ekus: tuple[str, ...] = ()  # dotted OIDs as Key Vault stores them
    key_usage: tuple[str, ...] = ()  # Key Vault spelling: digitalSignature, keyEncipherment, ...
    validity_months: int | None = None
    key: KeySpec = field(default_factory=lambda: KeySpec("EC", curve="P-256"))
    content_type: str = "application/x-pkcs12"  # or "application/x-pem-file"
    # The vault adapter's own copy of the policy as read (lifetime actions and all), opaque
    # here: a new version is made with exactly that policy. None when built by kvca.
    raw: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class CertificateVersion:
    """One certificate version as the vault reports it."""

    name: str
    version: str | None
    enabled: bool
    not_before: dt.datetime | None
    expires_on: dt.datetime | None
    created_on: dt.datetime | None
    tags: Mapping[str, str]
    cer: bytes | None = None  # DER of the leaf; None when the only version is pending
    key_id: str | None = None  # kid, with version
    secret_id: str | None = None  # sid, with version
    x5t: bytes | None = None  # SHA-1 thumbprint as the vault reports it
    policy: CertificatePolicy | None = None  # with a versionless get_certificate; None in listings

    @property
    def completed(self) -> bool:
        """Whether the version holds a certificate. A pending or abandoned (withdrawn) version has
        no x5t and no cer, but it does have dates: Key Vault computes nbf/exp from the policy
        (docs/keyvault-behaviour.md, "Pending versions"), so dates never tell "pending"."""
        return self.x5t is not None or self.cer is not None


@dataclass(frozen=True)
class PendingRequest:
    """The certificate operation of a certificate being created with issuer Unknown."""

    name: str
    status: str  # "inProgress", "completed", "cancelled", "failed"
    csr: bytes | None  # DER PKCS#10 (untrusted)
    request_id: str | None
    cancellation_requested: bool = False

    @property
    def in_progress(self) -> bool:
        return self.status.lower() == "inprogress" and not self.cancellation_requested


@dataclass(frozen=True)
class StoredSecret:
    """One version of a plain secret (kvca's own data, e.g. a CA's issuance policy `<CA>-policy`).
    The value is vault data: untrusted until parsed."""

    name: str
    version: str | None
    content_type: str
    value: str
    tags: Mapping[str, str] = field(default_factory=dict)
