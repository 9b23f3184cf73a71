"""The ports: what the operations need from the services outside the process, as protocols. The
operations are typed against these; kvca_core/rim/ holds the one implementation of each.

    Vault            Key Vault: certificates, their secrets and keys      rim/keyvault.py  KeyVault
    EventPublisher   Event Grid: kvca's own events to its custom topic    rim/eventgrid.py TopicPublisher
    CrlPublisher     Blob storage: each CA's CRL as a public blob         rim/blob.py      CrlStore
    NoticeSender     the webhook: notices to a chat or a ticketing hook   rim/webhook.py   Notifier

Errors are kvca's kinds (kvca_core/errors.py: NotFound, Conflict, Throttled, UpstreamError, ...):
no SDK exception crosses a port.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, ContextManager, Mapping, Protocol, Sequence

from kvca_core.model import CertificatePolicy, CertificateVersion, PendingRequest, StoredSecret


class Vault(Protocol):
    """The port to Key Vault. Everything it returns is untrusted input: the operations re-check CSRs,
    certificates and tags before acting on them."""

    vault_url: str
    vault_name: str

    def paced(self, pace: Any) -> ContextManager[None]:
        """Inside (this task and the tasks it starts), each request to the vault but a certificate
        create, each retry included, first awaits `pace.take()` (operations/ratelimit.py ReadPace)."""

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
                                 policy: CertificatePolicy | None = None, *, fresh_key: bool = False) -> PendingRequest:
        """A new version with the certificate's current policy exactly as the vault holds it
        (the portal's "New Version"; `policy` from `get_certificate` saves reading it again);
        `fresh_key`: never reuse the current key, whatever the policy's reuse_key says.
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


class EventPublisher(Protocol):
    async def publish(self, event: Mapping[str, Any]) -> None:
        """`event`: an Event Grid schema dict (kvca_core.events.pending_request_event)."""

    async def close(self) -> None: ...


class CrlPublisher(Protocol):
    def url_of(self, ca_name: str, version: str | None = None) -> str: ...

    async def publish(self, ca_name: str, der: bytes, *, max_age: int, number: int, version: str | None = None) -> str:
        """Upload the CRL (of CA `ca_name`'s key `version`; None: its current key) unless the store
        holds one of that number or higher; its URL."""

    async def close(self) -> None: ...


class NoticeSender(Protocol):
    async def send(self, event: str, body: Mapping[str, Any]) -> bool:
        """True when the notice was accepted. Never raises."""

    def post(self, event: str, body: Mapping[str, Any]) -> None:
        """Send in the background; `drain` waits for it."""

    async def drain(self) -> None: ...

    async def close(self) -> None: ...
