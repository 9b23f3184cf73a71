"""The Key Vault adapter: the one module of kvca_core that imports `azure.*`.

`KeyVault` implements the `kvca_core.model.Vault` port over the async SDK
clients (`azure.keyvault.*.aio`). One instance per process: the clients and
their credential are created once and reused across Functions invocations.
Every service error leaves this module as a kvca error kind
(`kvca_core.errors`), so the operations never see `HttpResponseError`.

`TopicPublisher` publishes kvca's own `Kvca.CertificatePendingRequest` event
to a custom Event Grid topic with `azure-eventgrid`.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping, Sequence
from urllib.parse import urlparse

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.certificates import (
    CertificateContentType,
    CertificateOperation,
    CertificatePolicy as SdkPolicy,
    CertificateProperties,
    KeyVaultCertificate,
)
from azure.keyvault.certificates.aio import CertificateClient
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.keys.crypto import SignatureAlgorithm
from azure.keyvault.keys.crypto.aio import CryptographyClient
from azure.keyvault.secrets.aio import SecretClient
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kvca_core.errors import (
    Conflict,
    InvalidRequest,
    KvcaError,
    NotFound,
    Throttled,
    UpstreamError,
)
from kvca_core.model import CertificatePolicy, CertificateVersion, KeySpec, PendingRequest
from kvca_core.settings import Settings

logger = logging.getLogger(__name__)

# Retries: azure-core's RetryPolicy already waits for the service's Retry-After
# on 429/503 (azure/core/pipeline/policies/_retry.py, RetryPolicyBase.is_retry:
# "if Retry-After present: retry", for every method, POST included; Key Vault
# sends Retry-After with its 429s) and backs off exponentially otherwise. Key
# Vault throttles per 10-second window (keyvault-facts.md), so a few retries
# capped at 60 s ride out a burst; after that the error becomes Throttled and
# the caller (HTTP 503 + Retry-After, Event Grid redelivery, the next sweep)
# tries again later. A retried create or merge that had in fact succeeded
# answers 409 / 404, which the operations treat as "already done".
_RETRY = dict(retry_total=6, retry_status=5, retry_connect=3, retry_read=3,
              retry_backoff_factor=0.5, retry_backoff_max=60)

_NOISY_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity",
                  "azure.identity.aio")


def quiet_azure_logging(level: int = logging.WARNING) -> None:
    """The SDK's HTTP logging policy logs every request and response at INFO:
    too loud for the Functions log, so it is raised to WARNING by default."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def default_credential(settings: Settings):
    """The process's one credential: DefaultAzureCredential (managed identity in
    Azure, `az login` on a laptop, the emulator's identity endpoint locally)."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None)


def _client_kwargs(settings: Settings, retry: Mapping[str, Any] | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {**_RETRY, **(retry or {})}
    if settings.tls_ca_bundle:
        kwargs["connection_verify"] = settings.tls_ca_bundle
    return kwargs


def _retry_after(response: Any) -> float | None:
    if response is None:
        return None
    raw = response.headers.get("Retry-After") if response.headers else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def translate(exc: BaseException, what: str) -> KvcaError:
    """One place that turns an SDK exception into a kvca error kind.

    The message names the object and the status; the service's own message is
    kept (it names objects, never key material)."""
    if isinstance(exc, KvcaError):
        return exc
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        return UpstreamError("could not get a token for Key Vault", subject=what,
                             hint="check the managed identity / `az login` (AZURE_CLIENT_ID)")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = exc.status_code
        detail = _service_message(exc)
        if status == 404:
            return NotFound(f"not found in the vault ({detail})", subject=what)
        if status == 409:
            return Conflict(f"the vault refused it: {detail}", subject=what)
        if status == 429:
            return Throttled(f"Key Vault is throttling requests ({detail})", subject=what,
                             retry_after=_retry_after(exc.response))
        if status in (401, 403):
            return UpstreamError(f"access denied by Key Vault (HTTP {status}: {detail})", subject=what,
                                 hint="grant the identity the Key Vault roles listed in the README")
        if status == 400:
            return InvalidRequest(f"Key Vault rejected the request: {detail}", subject=what)
        return UpstreamError(f"Key Vault answered HTTP {status} ({detail})", subject=what)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return UpstreamError(f"could not reach Key Vault ({type(exc).__name__})", subject=what)
    return UpstreamError(f"Key Vault call failed ({type(exc).__name__})", subject=what)


def _service_message(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code or message:
        return f"{code}: {message}" if code else str(message)
    return (exc.reason or f"HTTP {exc.status_code}").strip()


@asynccontextmanager
async def _calling(what: str):
    try:
        yield
    except KvcaError:
        raise
    except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
        raise translate(exc, what) from None


def _version_of(props: CertificateProperties, cert: KeyVaultCertificate | None = None) -> CertificateVersion:
    return CertificateVersion(
        name=props.name,
        version=props.version,
        enabled=bool(props.enabled),
        not_before=props.not_before,
        expires_on=props.expires_on,
        created_on=props.created_on,
        tags=dict(props.tags or {}),
        cer=bytes(cert.cer) if cert is not None and cert.cer else None,
        key_id=cert.key_id if cert is not None else None,
        secret_id=cert.secret_id if cert is not None else None,
        x5t=props.x509_thumbprint,
    )


def _pending_of(name: str, op: CertificateOperation) -> PendingRequest:
    return PendingRequest(name=name, status=op.status or "unknown", csr=bytes(op.csr) if op.csr else None,
                          request_id=op.request_id,
                          cancellation_requested=bool(op.cancellation_requested))


def _policy_of(p: SdkPolicy) -> CertificatePolicy:
    key_type = str(p.key_type.value if hasattr(p.key_type, "value") else p.key_type or "RSA")
    curve = p.key_curve_name
    key = KeySpec(kty=key_type.replace("-HSM", ""), size=p.key_size,
                  curve=str(curve.value if hasattr(curve, "value") else curve) if curve else None,
                  exportable=bool(p.exportable), reuse_key=bool(p.reuse_key))
    content = p.content_type
    return CertificatePolicy(
        issuer_name=p.issuer_name or "",
        subject=p.subject or "",
        dns_names=tuple(p.san_dns_names or ()),
        emails=tuple(p.san_emails or ()),
        upns=tuple(p.san_user_principal_names or ()),
        ekus=tuple(p.enhanced_key_usage or ()),
        key_usage=tuple(str(u.value if hasattr(u, "value") else u) for u in (p.key_usage or ())),
        validity_months=p.validity_in_months,
        key=key,
        content_type=str(content.value if hasattr(content, "value") else content or "application/x-pkcs12"),
    )


def _sdk_policy(p: CertificatePolicy) -> SdkPolicy:
    return SdkPolicy(
        issuer_name=p.issuer_name,
        subject=p.subject or None,
        san_dns_names=list(p.dns_names) or None,
        san_emails=list(p.emails) or None,
        san_user_principal_names=list(p.upns) or None,
        enhanced_key_usage=list(p.ekus) or None,
        key_usage=list(p.key_usage) or None,
        validity_in_months=p.validity_months,
        key_type=p.key.kty,
        key_size=p.key.size,
        key_curve_name=p.key.curve,
        exportable=p.key.exportable,
        reuse_key=p.key.reuse_key,
        content_type=CertificateContentType(p.content_type),
    )


def _b64url_int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def parse_key_id(key_id: str) -> tuple[str, str | None]:
    """`https://v.vault.azure.net/keys/NAME/VERSION` -> (NAME, VERSION)."""
    parts = [p for p in urlparse(key_id).path.split("/") if p]
    if len(parts) < 2 or parts[0] not in ("keys", "certificates"):
        raise InvalidRequest(f"{key_id!r} is not a Key Vault key identifier", subject="key")
    return parts[1], (parts[2] if len(parts) > 2 else None)


class KeyVault:
    """`model.Vault` over the async Key Vault clients."""

    def __init__(self, settings: Settings, credential, *, retry: Mapping[str, Any] | None = None) -> None:
        """`retry`: azure-core RetryPolicy keywords overriding the defaults above (e.g. an
        interactive caller that prefers failing fast: {"retry_total": 1})."""
        quiet_azure_logging()
        self.vault_url = settings.vault_url
        self.vault_name = settings.vault_name
        self._credential = credential
        self._kwargs = _client_kwargs(settings, retry)
        auth = dict(verify_challenge_resource=settings.verify_challenge_resource)
        self._certs = CertificateClient(self.vault_url, credential, **auth, **self._kwargs)
        self._secrets = SecretClient(self.vault_url, credential, **auth, **self._kwargs)
        self._keys = KeyClient(self.vault_url, credential, **auth, **self._kwargs)
        self._auth = auth
        self._crypto: dict[str, CryptographyClient] = {}

    # --- certificates -------------------------------------------------------
    async def get_certificate(self, name: str, version: str | None = None) -> CertificateVersion:
        async with _calling(f"certificate '{name}'"):
            if version:
                cert = await self._certs.get_certificate_version(name, version)
            else:
                cert = await self._certs.get_certificate(name)
        return _version_of(cert.properties, cert)

    async def get_policy(self, name: str) -> CertificatePolicy:
        async with _calling(f"certificate '{name}'"):
            return _policy_of(await self._certs.get_certificate_policy(name))

    async def get_pending(self, name: str) -> PendingRequest | None:
        try:
            async with _calling(f"certificate '{name}'"):
                op = await self._certs.get_certificate_operation(name)
        except NotFound:
            return None
        return _pending_of(name, op)

    async def create_certificate(self, name: str, policy: CertificatePolicy,
                                 tags: Mapping[str, str] | None = None,
                                 enabled: bool = True) -> PendingRequest | CertificateVersion:
        return await self._create(name, _sdk_policy(policy), tags, enabled)

    async def create_new_version(self, name: str, tags: Mapping[str, str] | None = None) -> PendingRequest:
        """A new version with the certificate's current policy exactly as the vault
        holds it (lifetime actions, IP SANs and all): the portal's "New Version"."""
        async with _calling(f"certificate '{name}'"):
            policy = await self._certs.get_certificate_policy(name)
        result = await self._create(name, policy, tags, True)
        if not isinstance(result, PendingRequest):
            raise Conflict("a new version completed without a pending request (issuer is not Unknown)",
                           subject=f"certificate '{name}'")
        return result

    async def _create(self, name: str, policy: SdkPolicy, tags, enabled) -> PendingRequest | CertificateVersion:
        async with _calling(f"certificate '{name}'"):
            # _polling_interval: issuer Self completes at once in the emulator and
            # within seconds in Key Vault; the SDK's default is 5 s between polls.
            result = await self._certs.create_certificate(name, policy, tags=dict(tags) if tags else None,
                                                          enabled=enabled, _polling_interval=1)
        if isinstance(result, CertificateOperation):
            return _pending_of(name, result)
        return _version_of(result.properties, result)

    async def merge(self, name: str, chain_der: Sequence[bytes],
                    tags: Mapping[str, str] | None = None) -> CertificateVersion:
        async with _calling(f"certificate '{name}'"):
            cert = await self._certs.merge_certificate(name, [bytes(c) for c in chain_der],
                                                       tags=dict(tags) if tags else None)
        return _version_of(cert.properties, cert)

    async def delete_pending(self, name: str) -> None:
        async with _calling(f"certificate '{name}'"):
            await self._certs.delete_certificate_operation(name)

    async def list_certificates(self, include_pending: bool = True) -> AsyncIterator[CertificateVersion]:
        async with _calling("certificate list"):
            async for props in self._certs.list_properties_of_certificates(include_pending=include_pending):
                yield _version_of(props)

    async def list_versions(self, name: str) -> AsyncIterator[CertificateVersion]:
        async with _calling(f"certificate '{name}'"):
            async for props in self._certs.list_properties_of_certificate_versions(name):
                yield _version_of(props)

    async def update_properties(self, name: str, version: str | None = None, *,
                                enabled: bool | None = None,
                                tags: Mapping[str, str] | None = None) -> CertificateVersion:
        async with _calling(f"certificate '{name}'"):
            props = await self._certs.update_certificate_properties(
                name, version or None, enabled=enabled, tags=dict(tags) if tags is not None else None)
        return _version_of(props.properties, props)

    async def import_certificate(self, name: str, pfx: bytes, *, password: str | None = None,
                                 policy: CertificatePolicy | None = None,
                                 tags: Mapping[str, str] | None = None) -> CertificateVersion:
        async with _calling(f"certificate '{name}'"):
            cert = await self._certs.import_certificate(
                name, pfx, password=password, policy=_sdk_policy(policy) if policy else None,
                tags=dict(tags) if tags else None)
        return _version_of(cert.properties, cert)

    # --- secrets and keys ---------------------------------------------------
    async def get_secret_value(self, name: str, version: str | None = None) -> tuple[str, str]:
        async with _calling(f"secret '{name}'"):
            secret = await self._secrets.get_secret(name, version)
        return (secret.properties.content_type or "", secret.value or "")

    async def sign_digest(self, key_id: str, algorithm: str, digest: bytes) -> bytes:
        try:
            alg = SignatureAlgorithm(algorithm)
        except ValueError:
            raise InvalidRequest(f"signature algorithm {algorithm!r} is not a Key Vault algorithm",
                                 subject=f"key '{key_id}'") from None
        client = self._crypto.get(key_id)
        if client is None:
            client = self._crypto[key_id] = CryptographyClient(key_id, self._credential,
                                                               **self._auth, **self._kwargs)
        name, _ = parse_key_id(key_id)
        async with _calling(f"key '{name}'"):
            result = await client.sign(alg, digest)
        return bytes(result.signature)

    async def get_public_key(self, key_id: str):
        name, version = parse_key_id(key_id)
        async with _calling(f"key '{name}'"):
            key = await self._keys.get_key(name, version)
        jwk = key.key
        kty = str(jwk.kty.value if hasattr(jwk.kty, "value") else jwk.kty)
        if kty.startswith("EC"):
            curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
            crv = str(jwk.crv.value if hasattr(jwk.crv, "value") else jwk.crv)
            if crv not in curves:
                raise InvalidRequest(f"curve {crv!r} is not supported", subject=f"key '{name}'")
            return ec.EllipticCurvePublicNumbers(_b64url_int(jwk.x), _b64url_int(jwk.y),
                                                 curves[crv]).public_key()
        if kty.startswith("RSA"):
            return rsa.RSAPublicNumbers(_b64url_int(jwk.e), _b64url_int(jwk.n)).public_key()
        raise InvalidRequest(f"key type {kty!r} is not supported", subject=f"key '{name}'")

    async def close(self) -> None:
        for client in (*self._crypto.values(), self._certs, self._secrets, self._keys):
            try:
                await client.close()
            except Exception:  # closing is best effort; a failure here must not mask the result
                logger.debug("closing a Key Vault client failed", exc_info=True)
        self._crypto.clear()


class TopicPublisher:
    """Publishes kvca's own events to the custom topic of KVCA_EVENTGRID_TOPIC_ENDPOINT."""

    def __init__(self, settings: Settings, credential) -> None:
        from azure.eventgrid.aio import EventGridPublisherClient

        self.endpoint = settings.eventgrid_topic_endpoint
        self._client = EventGridPublisherClient(self.endpoint, credential, **_client_kwargs(settings))

    async def publish(self, event: Mapping[str, Any]) -> None:
        """`event` is an Event Grid schema dict (kvca_core.events.pending_request_event)."""
        from azure.eventgrid import EventGridEvent

        sdk_event = EventGridEvent(subject=event["subject"], event_type=event["eventType"],
                                   data=dict(event["data"]), data_version=event.get("dataVersion", "1"),
                                   id=event.get("id"))
        async with _calling(f"Event Grid topic '{urlparse(self.endpoint).hostname}'"):
            await self._client.send(sdk_event)

    async def close(self) -> None:
        await self._client.close()

