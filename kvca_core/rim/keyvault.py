"""Key Vault: `KeyVault` implements the `kvca_core.ports.Vault` port over the async SDK clients
(`azure.keyvault.*.aio`).

One instance per process: the clients and their credential are created once and reused across
Functions invocations. Every service error leaves this module as a kvca error kind
(`kvca_core.errors`), so the operations never see `HttpResponseError`. Each Key Vault answer's Date
header sets kvca's clock (`VaultClock`, `kvca_core/clock.py`).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import email.utils
import logging
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, AsyncIterator, Mapping, Sequence
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError, \
    ServiceResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
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

from kvca_core import clock
from kvca_core.rim import netcause
from kvca_core.errors import Busy, Conflict, InvalidRequest, KvcaError, NotFound, Throttled, UpstreamError
from kvca_core.model import CertificatePolicy, CertificateVersion, KeySpec, PendingRequest, StoredSecret
from kvca_core.rim.azure import (
    Backoff,
    CallPacing,
    SharedTransport,
    client_kwargs,
    connection_failure,
    quiet_azure_logging,
    retry_after,
    pacing,
    throttled_post,
    tls_context,
    token_error,
)
from kvca_core.settings import Settings

logger = logging.getLogger(__name__)

class VaultClock(SansIOHTTPPolicy):
    """Hands each Key Vault response's Date header to `clock.observe`: kvca's "now" is the vault's.

    A policy of the Key Vault clients, not a filter in `SharedTransport.send`: the transport also
    carries the Event Grid publisher's requests, and a host cannot tell them apart (the emulator
    serves its Event Grid topic on the vault's own host and port). The Key Vault clients honour
    `per_retry_policies`: AsyncKeyVaultClientBase passes its keywords to the generated client,
    which builds its own `policies` list and hands both to AsyncPipelineClient, whose
    `_build_pipeline` puts per-retry policies right after the RetryPolicy
    (azure/core/_pipeline_client_async.py). There, before the challenge policy, the policy sees
    every attempt's final answer (a throttled one included: its Date is as good) and not the
    401 that the challenge policy answers itself. CryptographyClient has the same base.

    A missing or malformed Date is ignored: it must never fail a call."""

    def __init__(self, source: str) -> None:
        self.source = source

    def on_response(self, request, response) -> None:
        received = dt.datetime.now(dt.timezone.utc)
        try:
            raw = response.http_response.headers.get("Date")
            server_time = email.utils.parsedate_to_datetime(raw) if raw else None
        except (TypeError, ValueError, IndexError, OverflowError):
            server_time = None
        if server_time is not None:
            clock.observe(server_time, received, source=self.source)


# What to do about a connection failure, where Key Vault knows better than netcause's defaults.
_VAULT_HINTS = {
    netcause.REFUSED: "is the port in the vault URL right, and is the vault (locally: the emulator) running there?",
    netcause.UNTRUSTED: "set KVCA_TLS_CA_BUNDLE to the PEM file of the CA that issued the vault's certificate "
                        "(the emulator's ca.pem); when set, it is the only CA trusted",
    netcause.CONNECT_TIMEOUT: "is the vault reachable from here (firewall, proxy, private endpoint)? "
                              "KVCA_CONNECT_TIMEOUT_SECONDS sets the limit",
    netcause.READ_TIMEOUT: "the service took the request but did not answer in time; try again later "
                           "(KVCA_READ_TIMEOUT_SECONDS sets the limit)",
}
def translate(exc: BaseException, what: str, *, service: str = "Key Vault") -> KvcaError:
    """One place that turns an SDK exception into a kvca error kind.

    The message names the object and the status; the service's own message is
    kept (it names objects, never key material). A connection failure names its cause
    (kvca_core/rim/netcause.py): refused, TLS verification and why, DNS, timeout, reset."""
    if isinstance(exc, KvcaError):
        return exc
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        return token_error(exc, what, service)
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = exc.status_code
        detail = _service_message(exc)
        if status == 404:
            return NotFound(f"not found in the vault ({detail})", subject=what)
        if status == 409:
            return Conflict(f"the vault refused it: {detail}", subject=what)
        if status == 429:
            return Throttled(f"Key Vault is throttling requests ({detail})", subject=what,
                             retry_after=retry_after(exc.response))
        if status in (401, 403):
            return UpstreamError(f"access denied by Key Vault (HTTP {status}: {detail})", subject=what,
                                 hint="grant the identity the Key Vault roles listed in docs/deploy.md")
        if status == 400:
            return InvalidRequest(f"Key Vault rejected the request: {detail}", subject=what)
        return UpstreamError(f"Key Vault answered HTTP {status} ({detail})", subject=what)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        peer = getattr(exc, "kvca_peer", None)
        if peer is None:  # not from the vault's transport: the credential's own token request
            return token_error(exc, what, service)
        cause = netcause.describe(exc, peer=peer, hints=_VAULT_HINTS)
        if cause is not None:
            return UpstreamError(f"could not reach {service}: {cause.text}", subject=what, hint=cause.hint)
        return UpstreamError(f"could not reach {service} ({type(exc).__name__})", subject=what)
    return UpstreamError(f"{service} call failed ({type(exc).__name__})", subject=what)


def _service_message(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code or message:
        return f"{code}: {message}" if code else str(message)
    return (exc.reason or f"HTTP {exc.status_code}").strip()


@asynccontextmanager
async def calling(what: str, *, pending_change: bool = False, service: str = "Key Vault"):
    """`pending_change`: the call changes a pending certificate (merge, cancel, delete). Its 409
    is then Key Vault's "conflict while updating/deleting pending certificate", another caller
    changing it at the same moment (docs/keyvault-behaviour.md, "Pending versions"): Busy, told apart by the
    call and the status, not the text. A create's 409 stays Conflict (a request is pending).

    A connection failure stays chained to the kvca error (`kvca --debug` prints the OS's or
    OpenSSL's own exception); HTTP bodies and the one-line messages never show a chain."""
    try:
        yield
    except KvcaError:
        raise
    except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
        error = translate(exc, what, service=service)
        if pending_change and type(error) is Conflict:
            raise Busy(f"another caller is changing the pending request ({error.message})", subject=what,
                       hint="nothing to do: it finishes, or the next sweep does") from None
        raise error from (exc if connection_failure(exc) else None)
    except ValueError as exc:
        # The SDK's challenge policy refuses a 401 challenge whose resource is not the vault's
        # domain with a bare ValueError ("The challenge resource '...' does not match the
        # requested domain", azure/keyvault/*/_shared/challenge_auth_policy.py): a vault URL that
        # is not *.vault.azure.net, such as the local emulator's. Any other ValueError is a bug.
        if not str(exc).startswith("The challenge"):
            raise
        raise UpstreamError(f"{service}'s authentication challenge names another resource than the vault's "
                            f"host, so the SDK refused to send it a token", subject=what,
                            hint="against the local emulator set KVCA_VERIFY_CHALLENGE_RESOURCE=false; against "
                                 "Azure, check the vault URL (its host is NAME.vault.azure.net)") from exc


def _version_of(props: CertificateProperties, cert: KeyVaultCertificate | None = None) -> CertificateVersion:
    policy = getattr(cert, "policy", None) if cert is not None else None
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
        policy=_policy_of(policy) if policy is not None else None,
    )


def _newest(versions: list[CertificateVersion]) -> CertificateVersion | None:
    floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return max(versions, key=lambda v: (v.created_on or floor, v.version or ""), default=None)


def _pending_of(name: str, op: CertificateOperation) -> PendingRequest:
    return PendingRequest(name=name, status=op.status or "unknown", csr=bytes(op.csr) if op.csr else None,
                          request_id=op.request_id,
                          cancellation_requested=bool(op.cancellation_requested))


def _policy_of(p: SdkPolicy) -> CertificatePolicy:
    key_type = str(p.key_type.value if hasattr(p.key_type, "value") else p.key_type or "RSA")
    curve = p.key_curve_name
    # An EC policy reads back its curve's key_size too (.NET session
    # DownloadECDsaCertificateSignRemoteVerifyLocal, API 7.2: P-256, 256): kvca's size is RSA's.
    key = KeySpec(kty=key_type.replace("-HSM", ""), size=p.key_size if key_type.startswith("RSA") else None,
                  curve=str(curve.value if hasattr(curve, "value") else curve) if curve else None,
                  exportable=bool(p.exportable), reuse_key=bool(p.reuse_key), hsm=key_type.upper().endswith("-HSM"))
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
        raw=p,
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
        key_type=p.key.kty + ("-HSM" if p.key.hsm else ""),
        key_size=p.key.size,
        key_curve_name=p.key.curve,
        exportable=p.key.exportable,
        reuse_key=p.key.reuse_key,
        content_type=CertificateContentType(p.content_type),
    )


def _stored_secret(name: str, secret: Any) -> StoredSecret:
    props = secret.properties
    return StoredSecret(name=props.name or name, version=props.version, content_type=props.content_type or "",
                        value=secret.value or "", tags=dict(props.tags or {}))


def _b64url_int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def parse_key_id(key_id: str) -> tuple[str, str | None]:
    """`https://v.vault.azure.net/keys/NAME/VERSION` -> (NAME, VERSION)."""
    parts = [p for p in urlparse(key_id).path.split("/") if p]
    if len(parts) < 2 or parts[0] not in ("keys", "certificates"):
        raise InvalidRequest(f"{key_id!r} is not a Key Vault key identifier", subject="key")
    return parts[1], (parts[2] if len(parts) > 2 else None)


class KeyVault:
    """`ports.Vault` over the async Key Vault clients."""

    def __init__(self, settings: Settings, credential, *, retry: Mapping[str, Any] | None = None,
                 backoff: Backoff | None = None) -> None:
        """`retry`: azure-core RetryPolicy keywords overriding the defaults above (e.g. an
        interactive caller that prefers failing fast: {"retry_total": 1}). `backoff`: kvca's own
        retries of a throttled POST without Retry-After."""
        quiet_azure_logging()
        self.vault_url = settings.vault_url
        self.vault_name = settings.vault_name
        self._credential = credential
        self.transport = SharedTransport(tls_context(settings), connect_timeout=settings.connect_timeout_seconds,
                                         read_timeout=settings.read_timeout_seconds)
        # Key Vault clients only (certificates, secrets, keys, CryptographyClients): see VaultClock.
        self._kwargs = {**client_kwargs(self.transport, retry),
                        "per_retry_policies": [VaultClock(urlparse(self.vault_url).hostname or "the vault"),
                                               CallPacing()]}
        self._backoff = backoff or Backoff()
        auth = dict(verify_challenge_resource=settings.verify_challenge_resource)
        self._certs = CertificateClient(self.vault_url, credential, **auth, **self._kwargs)
        self._secrets = SecretClient(self.vault_url, credential, **auth, **self._kwargs)
        self._keys = KeyClient(self.vault_url, credential, **auth, **self._kwargs)
        self._auth = auth
        self._crypto: dict[str, CryptographyClient] = {}

    def paced(self, pace):
        """Inside (this task and the tasks it starts), every request but a create waits for
        `pace.take()` first (rim/azure.py CallPacing): a sweep's share of the vault's limit."""
        return pacing(pace)

    async def _posting(self, what: str, call, *, pending_change: bool = False):
        """`await call()` (a create, merge or sign: a POST), retried with `Backoff` while Key Vault
        answers that POST 429 without Retry-After (azure-core has given up at once then, see
        _RETRY). A 429 with Retry-After has already been retried by azure-core as the service
        asked, and a 429 on a GET the call made afterwards (a create's polling) means the POST
        went through: both stand."""
        attempts = max(1, self._backoff.attempts)
        for attempt in range(attempts):
            async with calling(what, pending_change=pending_change):
                try:
                    return await call()
                except HttpResponseError as exc:
                    if attempt + 1 >= attempts or not throttled_post(exc):
                        raise
            if attempt == 0:
                logger.warning("kvca throttled without Retry-After subject=%s; backing off, at most %d more tries",
                               what, attempts - 1)
            await asyncio.sleep(self._backoff.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    # --- certificates -------------------------------------------------------
    async def get_certificate(self, name: str, version: str | None = None) -> CertificateVersion:
        """A version, or (no `version`) the current one: the newest completed version.

        Whether a versionless GET answers a newer pending or abandoned version (a withdrawn
        request leaves one behind, disabled and without a certificate) over an older completed
        one is unconfirmed (docs/keyvault-behaviour.md, "Pending versions"). Either would stall signing and
        renewal, so an answer without a certificate is checked against the versions list; the
        usual answer, a completed version, costs the one GET. A certificate with no completed
        version answers its pending version (cer None).

        A completed version that is disabled stays current, as Key Vault answers it
        (azure-cli#26044) and as its consumers see it: disabling a CA's or a leaf's version
        stops kvca using or renewing it, instead of falling back to an older one."""
        what = f"certificate '{name}'"
        async with calling(what):
            if version:
                cert = await self._certs.get_certificate_version(name, version)
            else:
                cert = await self._certs.get_certificate(name)
        found = _version_of(cert.properties, cert)
        if version or found.completed:
            return found
        async with calling(what):
            completed = [_version_of(p) async for p in self._certs.list_properties_of_certificate_versions(name)
                         if p.x509_thumbprint]
        best = _newest(completed)
        if best is None:
            return found
        async with calling(what):
            cert = await self._certs.get_certificate_version(name, best.version)
        return replace(_version_of(cert.properties, cert), policy=found.policy)

    async def get_policy(self, name: str) -> CertificatePolicy:
        async with calling(f"certificate '{name}'"):
            return _policy_of(await self._certs.get_certificate_policy(name))

    async def get_pending(self, name: str) -> PendingRequest | None:
        try:
            async with calling(f"certificate '{name}'"):
                op = await self._certs.get_certificate_operation(name)
        except NotFound:
            return None
        return _pending_of(name, op)

    async def create_certificate(self, name: str, policy: CertificatePolicy,
                                 tags: Mapping[str, str] | None = None,
                                 enabled: bool = True) -> PendingRequest | CertificateVersion:
        return await self._create(name, _sdk_policy(policy), tags, enabled)

    async def create_new_version(self, name: str, tags: Mapping[str, str] | None = None,
                                 policy: CertificatePolicy | None = None, *, fresh_key: bool = False) -> PendingRequest:
        """A new version with the certificate's current policy exactly as the vault holds it
        (lifetime actions, IP SANs and all): the portal's "New Version". `policy`: the one a
        versionless `get_certificate` just returned (it holds the vault's own copy), which
        saves reading it again."""
        sdk_policy = policy.raw if policy is not None and policy.raw is not None else None
        if sdk_policy is None:
            async with calling(f"certificate '{name}'"):
                sdk_policy = await self._certs.get_certificate_policy(name)
        if fresh_key and sdk_policy.reuse_key:
            # After a key compromise the next version must get a new key whatever the policy says: the
            # same policy with reuse_key off (the SDK's CertificatePolicy has no setter; a copy is
            # changed, and a create with a policy makes it the certificate's from then on).
            sdk_policy = copy.copy(sdk_policy)
            sdk_policy._reuse_key = False  # noqa: SLF001
        result = await self._create(name, sdk_policy, tags, True)
        if not isinstance(result, PendingRequest):
            raise Conflict("a new version completed without a pending request (issuer is not Unknown)",
                           subject=f"certificate '{name}'")
        return result

    async def _create(self, name: str, policy: SdkPolicy, tags, enabled) -> PendingRequest | CertificateVersion:
        # _polling_interval: issuer Self completes at once in the emulator and
        # within seconds in Key Vault; the SDK's default is 5 s between polls.
        result = await self._posting(f"certificate '{name}'", lambda: self._certs.create_certificate(
            name, policy, tags=dict(tags) if tags else None, enabled=enabled, _polling_interval=1))
        if isinstance(result, CertificateOperation):
            return _pending_of(name, result)
        return _version_of(result.properties, result)

    async def merge(self, name: str, chain_der: Sequence[bytes],
                    tags: Mapping[str, str] | None = None) -> CertificateVersion:
        cert = await self._posting(f"certificate '{name}'", lambda: self._certs.merge_certificate(
            name, [bytes(c) for c in chain_der], tags=dict(tags) if tags else None), pending_change=True)
        return _version_of(cert.properties, cert)

    async def delete_pending(self, name: str) -> None:
        async with calling(f"certificate '{name}'", pending_change=True):
            await self._certs.delete_certificate_operation(name)

    async def list_certificates(self, include_pending: bool = True) -> AsyncIterator[CertificateVersion]:
        """Page by page, asking for pending certificates on every page.

        Key Vault's nextLink keeps only api-version and $skiptoken (docs/keyvault-behaviour.md,
        "Listing and paging"; azure-sdk-for-python#38589), and the SDK follows it as it is: its
        `prepare_request(next_link)` (azure/keyvault/certificates/_generated/aio/_operations/
        _operations.py, get_certificates) keeps the link's query and sets only api-version.
        So each page is fetched with `by_page(continuation_token=<nextLink>)`, the link given
        `includePending=true` again (azure/core/async_paging.py: the token is what `get_next`
        receives). Without it every certificate past the first page whose only version is
        pending would never be signed."""
        params = {"includePending": "true"} if include_pending else {}
        token: str | None = None
        while True:
            async with calling("certificate list"):
                pages = self._certs.list_properties_of_certificates(
                    include_pending=include_pending).by_page(continuation_token=token)
                try:
                    page = await pages.__anext__()
                except StopAsyncIteration:
                    return
                items = [_version_of(props) async for props in page]
            for item in items:
                yield item
            if not pages.continuation_token:
                return
            token = self._next_link(pages.continuation_token, params)

    def _next_link(self, link: str, params: Mapping[str, str]) -> str:
        """The service's nextLink (untrusted: it must stay on this vault) with `params` set again."""
        parsed, ours = urlparse(link), urlparse(self.vault_url)
        if parsed.scheme != "https" or parsed.hostname != ours.hostname or \
                (parsed.port or 443) != (ours.port or 443):
            raise UpstreamError("the vault's list answered a next page on another host", subject="certificate list")
        names = {n.lower() for n in params}
        query = [(k, v) for k, v in parse_qsl(parsed.query, keep_blank_values=True) if k.lower() not in names]
        query += list(params.items())
        return urlunparse(parsed._replace(query=urlencode(query, safe="$")))

    async def list_versions(self, name: str) -> AsyncIterator[CertificateVersion]:
        async with calling(f"certificate '{name}'"):
            async for props in self._certs.list_properties_of_certificate_versions(name):
                yield _version_of(props)

    async def update_properties(self, name: str, version: str | None = None, *,
                                enabled: bool | None = None,
                                tags: Mapping[str, str] | None = None) -> CertificateVersion:
        async with calling(f"certificate '{name}'"):
            props = await self._certs.update_certificate_properties(
                name, version or None, enabled=enabled, tags=dict(tags) if tags is not None else None)
        return _version_of(props.properties, props)

    async def import_certificate(self, name: str, pfx: bytes, *, password: str | None = None,
                                 policy: CertificatePolicy | None = None,
                                 tags: Mapping[str, str] | None = None) -> CertificateVersion:
        async with calling(f"certificate '{name}'"):
            cert = await self._certs.import_certificate(
                name, pfx, password=password, policy=_sdk_policy(policy) if policy else None,
                tags=dict(tags) if tags else None)
        return _version_of(cert.properties, cert)

    # --- secrets and keys ---------------------------------------------------
    async def get_secret_value(self, name: str, version: str | None = None) -> tuple[str, str]:
        async with calling(f"secret '{name}'"):
            secret = await self._secrets.get_secret(name, version)
        return (secret.properties.content_type or "", secret.value or "")

    async def get_secret(self, name: str, version: str | None = None) -> StoredSecret:
        async with calling(f"secret '{name}'"):
            secret = await self._secrets.get_secret(name, version)
        return _stored_secret(name, secret)

    async def set_secret(self, name: str, value: str, *, content_type: str,
                         tags: Mapping[str, str] | None = None) -> StoredSecret:
        # A PUT of a secret makes a new version and leaves every older one as it was
        # (docs/keyvault-behaviour.md, "Throttling": secret create, 300 per 10 s), which is why a CA's
        # policy is referenced by version and cached per version (kvca_core/capolicy.py).
        async with calling(f"secret '{name}'"):
            secret = await self._secrets.set_secret(name, value, content_type=content_type,
                                                    tags=dict(tags) if tags else None)
        return _stored_secret(name, secret)

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
        result = await self._posting(f"key '{name}'", lambda: client.sign(alg, digest))
        return bytes(result.signature)

    async def get_public_key(self, key_id: str):
        name, version = parse_key_id(key_id)
        async with calling(f"key '{name}'"):
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
        await self.transport.dispose()


