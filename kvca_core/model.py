"""What kvca knows about a vault, without knowing HTTP.

`Vault` is the port every operation talks to; `kvca_core.vault.KeyVault` is
its only implementation (the one module that imports `azure.*`). The data
classes here are plain values: operations, the CLI and the Functions app pass
them around without touching the SDK's models.

Everything a vault returns is untrusted input: the operations re-check CSRs,
certificates and tags before acting on them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import AsyncIterator, Mapping, Protocol, Sequence

# The tag that makes a certificate kvca's: its value names the issuing CA's
# certificate in the same vault.
CA_TAG = "kvca-ca"
# Tag on CA certificates themselves ("root" or "intermediate"); the sweep never renews them.
CA_ROLE_TAG = "kvca-role"
# Tag on the objects `kvca ca create` is still building; its value is the role they will get.
CREATING_TAG = "kvca-creating"
# A revoked version's record (kvca_core/revocation.py): the RFC 5280 reason, when (ISO 8601 UTC)
# and the serial (hex). The version is also disabled.
REVOKED_TAG = "kvca-revoked"
REVOKED_AT_TAG = "kvca-revoked-at"
REVOKED_SERIAL_TAG = "kvca-revoked-serial"
# The record belongs to the revoked version alone: a new version (a renewal, the replacement
# of a revoked certificate) never takes these over from the version before it.
REVOCATION_TAGS = (REVOKED_TAG, REVOKED_AT_TAG, REVOKED_SERIAL_TAG)
# On a CA's delegated OCSP responder certificate `<CA>-ocsp`; its value names the CA.
RESPONDER_TAG = "kvca-ocsp-responder"
# Tag on a leaf: whether its merged chain ends with the root ("with-root") or stops at the
# last intermediate ("without-root"). A tag because Key Vault's policy has no field for it,
# and tags travel with every version kvca makes (renewals pass them on), so the choice made
# at issue time holds across renewals. Absent: the profile's default (operations.py).
CHAIN_TAG = "kvca-chain"
CHAIN_WITH_ROOT, CHAIN_WITHOUT_ROOT = "with-root", "without-root"
# Tag on a leaf: the URI SANs kvca adds when it signs, separated by spaces (a URI holds no
# space, RFC 3986 2). A tag because Key Vault's policy cannot carry URIs: x509_props.sans has
# dns_names, emails and upns only (keyvault-facts.md "Certificates with a non-integrated CA"),
# so the vault's CSR never asks for them. Like CHAIN_TAG it is passed on to every new version,
# so renewals keep the URIs; the signer checks them exactly as CSR names (allow_uri, allowed
# domains, name constraints). Key Vault allows 15 tags per object with values of at most 256
# characters (the emulator is laxer: 512), hence URIS_TAG_MAX.
URIS_TAG = "kvca-uris"
URIS_TAG_MAX = 256
# On a CA's current version: the version of the secret `<CA>-policy` that holds the CA's
# issuance policy (issue 12). A version id rather than the policy itself: a tag value holds
# 256 characters at most, and a secret version never changes, so every signer reads it once
# per version and caches it. Versions of the CA that kvca makes (rotation) carry it on.
POLICY_TAG = "kvca-policy"
POLICY_SUFFIX = "-policy"
# On a CA version kvca warned about (kvca_core/notify.py): "<UTC date> <expiring|expired>", the
# day a webhook was last told, so that the sweeps of one day (and every instance) tell it once.
NOTIFIED_TAG = "kvca-notified"
# On a leaf version kvca signed: the version of the CA certificate whose key signed it, written
# at the merge. After `kvca ca rotate` the sweep moves every leaf whose tag names another
# version than the CA's current one (operations.moved_state). 32 hex characters: well inside
# Key Vault's 256 per tag value.
CA_VERSION_TAG = "kvca-ca-version"
# On a CA version made by `kvca ca rotate`: when it was rotated (ISO 8601 UTC, seconds). The
# sweep's window for moving leaves starts here; a CA version without it was not rotated.
ROTATED_TAG = "kvca-rotated"


@dataclass(frozen=True)
class KeySpec:
    """Key Vault `key_props`: kty RSA/EC, size or curve, exportable, reuse_key."""

    kty: str  # "RSA" or "EC"
    size: int | None = None  # RSA bits
    curve: str | None = None  # "P-256", "P-384", "P-521"
    exportable: bool = False
    reuse_key: bool = False

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
        (keyvault-facts.md, second round), so dates never tell "pending"."""
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


class Vault(Protocol):
    """The port to Key Vault. Errors are kvca's kinds (NotFound, Conflict, Throttled, ...)."""

    vault_url: str
    vault_name: str

    async def get_certificate(self, name: str, version: str | None = None) -> CertificateVersion:
        """No `version`: the current version, which is the newest completed one (a pending or
        abandoned newer version is passed over; a disabled completed one stays current), with
        its `policy`; the pending version when no version is completed."""

    async def get_policy(self, name: str) -> CertificatePolicy: ...

    async def get_pending(self, name: str) -> PendingRequest | None:
        """None when the vault answers PendingCertificateNotFound."""

    async def create_certificate(self, name: str, policy: CertificatePolicy,
                                 tags: Mapping[str, str] | None = None,
                                 enabled: bool = True) -> PendingRequest | CertificateVersion:
        """Issuer Unknown: the PendingRequest; issuer Self: the finished version.
        Raises Conflict when a pending request is already in progress (409)."""

    async def create_new_version(self, name: str, tags: Mapping[str, str] | None = None,
                                 policy: CertificatePolicy | None = None) -> PendingRequest:
        """A new version with the certificate's current policy exactly as the vault holds it
        (the portal's "New Version"; `policy` from `get_certificate` saves reading it again).
        Raises Conflict when a request is already pending (409)."""

    async def merge(self, name: str, chain_der: Sequence[bytes],
                    tags: Mapping[str, str] | None = None) -> CertificateVersion:
        """`tags` given: the merged version's tags (a new version does not inherit them).
        Raises Busy when another caller is changing the same pending request (409)."""

    async def delete_pending(self, name: str) -> None:
        """Withdraw the request. Key Vault keeps the never-completed version (disabled, no
        certificate; there is no API to delete one version): `get_certificate` passes over it."""

    def list_certificates(self, include_pending: bool = True) -> AsyncIterator[CertificateVersion]:
        """Every certificate's current version, page by page (no `cer`, no policy); with
        `include_pending`, pending-only certificates on every page."""

    def list_versions(self, name: str) -> AsyncIterator[CertificateVersion]: ...

    async def update_properties(self, name: str, version: str | None = None, *,
                                enabled: bool | None = None,
                                tags: Mapping[str, str] | None = None) -> CertificateVersion: ...

    async def import_certificate(self, name: str, pfx: bytes, *, password: str | None = None,
                                 policy: CertificatePolicy | None = None,
                                 tags: Mapping[str, str] | None = None) -> CertificateVersion: ...

    async def get_secret_value(self, name: str, version: str | None = None) -> tuple[str, str]:
        """(content_type, value) of the certificate's secret. The value may hold a
        private key: keep it in memory, never log or persist it."""

    async def get_secret(self, name: str, version: str | None = None) -> StoredSecret:
        """A plain secret's version (no `version`: the current one). NotFound when absent."""

    async def set_secret(self, name: str, value: str, *, content_type: str,
                         tags: Mapping[str, str] | None = None) -> StoredSecret:
        """A new version of a plain secret (Key Vault's PUT /secrets/{name}: never changes an
        existing version). Conflict (409) when the name belongs to a certificate."""

    async def sign_digest(self, key_id: str, algorithm: str, digest: bytes) -> bytes:
        """The keys API's sign: `algorithm` RS256/384/512, PS256/384/512, ES256/384/512.
        EC answers are raw r||s, as the service returns them."""

    async def get_public_key(self, key_id: str):
        """The public key behind `key_id`, as a `cryptography` public key."""

    async def close(self) -> None: ...
