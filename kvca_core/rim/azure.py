"""What every Azure client of kvca shares: the credential, one connection pool and TLS context for
the process, the retry policy, and the words for a token that could not be had.

The rim's modules (kvca_core/rim/) build their SDK clients with these; nothing else in kvca_core
imports azure.*.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import ssl
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import aiohttp
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError, \
    ServiceResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import AioHttpTransport

from kvca_core.rim import netcause
from kvca_core.errors import UpstreamError
from kvca_core.settings import Settings

logger = logging.getLogger(__name__)

# Retries. azure-core's RetryPolicy (azure/core/pipeline/policies/_retry.py) retries a
# 429/503 that carries Retry-After for every method, waiting as told. Without Retry-After
# it retries only "safe" methods: `_is_method_retryable` refuses POST and PATCH except on
# 500/503/504, so a 429 without Retry-After on a create, a merge or a keys-API sign comes
# back at once. Key Vault may send exactly that (docs/keyvault-behaviour.md, "Throttling": one real
# capture had no Retry-After), so those three calls go through `_throttle_backoff` below:
# a few jittered, exponentially growing waits, one log line per operation. After that the
# error is Throttled and the caller (HTTP 503 + Retry-After, Event Grid redelivery, the
# next sweep) tries again later. Key Vault throttles per 10-second window, so the waits
# together span more than one window. A retried create or merge that had in fact
# succeeded answers 409 / 404, which the operations treat as "already done".
_RETRY = dict(retry_total=6, retry_status=5, retry_connect=3, retry_read=3,
              retry_backoff_factor=0.5, retry_backoff_max=60)


@dataclass(frozen=True)
class Backoff:
    """kvca's own retries of a throttled POST that came without Retry-After: `attempts` tries
    in all, waiting a random time up to base * 2**n (capped) between them ("full jitter", so
    workers throttled together do not retry together)."""

    attempts: int = 5
    base: float = 1.0
    cap: float = 8.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2 ** attempt))


_NOISY_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity",
                  "azure.identity.aio")


def quiet_azure_logging(level: int = logging.WARNING) -> None:
    """The SDK's HTTP logging policy logs every request and response at INFO:
    too loud for the Functions log, so it is raised to WARNING by default."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def default_credential(settings: Settings):
    """The process's one credential: DefaultAzureCredential (managed identity in Azure, `az login`
    on a laptop, the emulator's identity endpoint locally), keeping why it failed (`_kept_cause`)."""
    from azure.identity.aio import DefaultAzureCredential

    return _kept_cause(DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None))


# What the credential of the chain that gave up raised, in this task (see _kept_cause).
_token_failure: contextvars.ContextVar[BaseException | None] = contextvars.ContextVar("kvca_token_failure",
                                                                                      default=None)


@contextmanager
def _cause_kept():
    mark = _token_failure.set(None)
    try:
        yield
    except ClientAuthenticationError as exc:
        failure = _token_failure.get()
        if failure is not None and exc.__cause__ is None and failure is not exc:
            raise exc from failure
        raise
    finally:
        _token_failure.reset(mark)


@contextmanager
def _noting_failure():
    """"Unavailable" (nothing to try with: no az login, no identity endpoint) is not a failure;
    the chain goes on to the next credential."""
    try:
        yield
    except Exception as exc:
        from azure.identity import CredentialUnavailableError  # loaded already: a credential raised it

        if not isinstance(exc, CredentialUnavailableError):
            _token_failure.set(exc)
        raise


class _Guarded:
    """An async credential whose token calls run inside `guard`; everything else is the inner one's.

    `single_flight`: concurrent token calls with the same arguments share one call of the inner
    credential. Each SDK client's auth policy asks for its own token, one request at a time
    (azure-core's AsyncBearerTokenCredentialPolicy holds a lock in `authorize_request`), but the
    clients do not share that lock: on a cold instance the certificates, secrets and keys clients,
    each CryptographyClient and the Event Grid publisher all ask at once, and the credential looks
    in its cache, finds nothing and requests a token for each, with no lock between the look and
    the request (azure-identity 1.27, azure/identity/aio/_internal/get_token_mixin.py,
    `_get_token_base`; 40 concurrent get_token calls on ManagedIdentityCredential made 40 requests
    to the emulator's identity endpoint). The shared call runs in a task of its own, so a caller
    that gives up (cancelled) does not cancel it for the rest."""

    def __init__(self, inner, guard, *, single_flight: bool = False) -> None:
        self._inner, self._guard = inner, guard
        self._flights: dict[str, asyncio.Future] | None = {} if single_flight else None
        # The name the chain's message gives a credential (azure/identity/_credentials/chained.py).
        self._credential_name = getattr(inner, "_credential_name", type(inner).__name__)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    async def _run(self, method: str, scopes: tuple[str, ...], kwargs: dict[str, Any]):
        with self._guard():
            return await getattr(self._inner, method)(*scopes, **kwargs)

    async def _call(self, method: str, scopes: tuple[str, ...], kwargs: dict[str, Any]):
        if self._flights is None:
            return await self._run(method, scopes, kwargs)
        key = _request_key(method, scopes, kwargs)
        flight = self._flights.get(key)
        if flight is None or flight.get_loop() is not asyncio.get_running_loop():
            flight = self._flights[key] = asyncio.ensure_future(self._run(method, scopes, kwargs))
            flight.add_done_callback(lambda done, key=key: self._landed(key, done))
        return await asyncio.shield(flight)

    def _landed(self, key: str, flight: asyncio.Future) -> None:
        if self._flights is not None and self._flights.get(key) is flight:
            del self._flights[key]  # the next caller asks the inner credential, which has the token cached
        if not flight.cancelled():
            flight.exception()  # retrieved here too: every waiter may have gone

    async def get_token(self, *scopes: str, **kwargs: Any):
        return await self._call("get_token", scopes, kwargs)

    async def get_token_info(self, *scopes: str, **kwargs: Any):
        return await self._call("get_token_info", scopes, kwargs)

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self):
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self._inner.__aexit__(*args)


def _request_key(method: str, scopes: tuple[str, ...], kwargs: Mapping[str, Any]) -> str:
    """What a token call asks for, whichever way it is spelled: get_token_info's `options` and
    get_token's keywords alike, absent and None the same, in any order. The SDK's two paths to a
    token spell one request differently: Key Vault's challenge policy builds
    {"enable_cae": True, "tenant_id": ...} in `_request_kv_token`, azure-core's policy
    {"claims": None, "tenant_id": ..., "enable_cae": True} in `_request_token`."""
    asked = {**{k: v for k, v in kwargs.items() if k != "options"}, **(kwargs.get("options") or {})}
    return repr((method, scopes, sorted((k, repr(v)) for k, v in asked.items() if v is not None)))


def _kept_cause(chain) -> _Guarded:
    """DefaultAzureCredential whose "failed to retrieve a token" error has its cause chained, and
    whose concurrent token requests are one (`_Guarded`, single_flight).

    The chain (azure/identity/aio/_credentials/chained.py, get_token/get_token_info) catches each
    credential's exception, keeps only its text for its message and raises a new
    ClientAuthenticationError without `__cause__`: the refused connection to the identity
    endpoint is gone by the time kvca sees it. So each credential of the chain notes what it
    raised (`_noting_failure`), and the chain's error is raised again `from` that
    (`_cause_kept`), where `translate` (netcause) finds it and `--debug` shows it."""
    chain.credentials = tuple(_Guarded(c, _noting_failure) for c in chain.credentials)
    return _Guarded(chain, _cause_kept, single_flight=True)


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The process's one TLS client context: the system trust store, or only KVCA_TLS_CA_BUNDLE
    when it is set (what azure-core's `connection_verify=<file>` means)."""
    return ssl.create_default_context(cafile=settings.tls_ca_bundle or None)


# The pace of the vault calls the current task makes (and the tasks it starts): a sweep's share of
# Key Vault's transaction limit (operations/ratelimit.py ReadPace). None: unpaced.
_pace: contextvars.ContextVar[Any] = contextvars.ContextVar("kvca_vault_pace", default=None)


@contextmanager
def pacing(pace: Any) -> Iterator[None]:
    """Inside, every request of a client built with `CallPacing` waits for `await pace.take()` first."""
    token = _pace.set(pace)
    try:
        yield
    finally:
        _pace.reset(token)


class CallPacing(SansIOHTTPPolicy):
    """A per-retry policy: each attempt of a request waits for the pace in force in its task, so a
    retry counts as the request it is (the service counts it too). Certificate creates are not
    paced here: Key Vault counts them against the key-create limit, which the shared create budget
    keeps (operations/coordination.py).

    A SansIO policy with an async `on_request`, which azure-core's async runner awaits
    (`_SansIOAsyncHTTPPolicyRunner`, azure/core/pipeline/_base_async.py): one instance may then
    serve every client of the vault, where an HTTPPolicy's `next` belongs to one pipeline."""

    async def on_request(self, request) -> None:
        pace = _pace.get()
        if pace is not None and not _is_create(request.http_request):
            await pace.take()


def _is_create(http_request: Any) -> bool:
    path = (getattr(http_request, "url", "") or "").split("?", 1)[0].rstrip("/")
    return getattr(http_request, "method", "").upper() == "POST" and path.endswith("/create")


# At most this many seconds are added to a retry's wait (see `spread`).
RETRY_SPREAD_CAP = 5.0


def spread(seconds: float) -> float:
    """A retry's wait, spread: `seconds` plus a random part up to `seconds` (at most
    RETRY_SPREAD_CAP). azure-core's RetryPolicy waits exactly the Retry-After the service sent
    (azure/core/pipeline/policies/_retry_async.py, `_sleep_for_retry`), and Key Vault's is the time
    to the end of its 10-second window, so every client throttled in one window retried at the same
    instant and most were throttled again. Never less than asked: Retry-After is a minimum."""
    if seconds <= 0:
        return seconds
    return seconds + random.uniform(0, min(seconds, RETRY_SPREAD_CAP))


class SharedTransport(AioHttpTransport):
    """One aiohttp session, so one connection pool and one TLS context, for every client of a
    process (certificates, secrets, keys, the CryptographyClients, the Event Grid publisher).

    Why not `connection_verify=<file>` on each client: azure-core's AioHttpTransport turns a
    path into a new `ssl.create_default_context(cafile=...)` on every request
    (`_build_ssl_config`, called from `send`), and aiohttp pools connections per SSL context,
    so no connection was ever reused and every request parsed the CA file again (the issue
    measured about 4 MB per certificate swept). Here the context is built once and given to
    the session's connector; requests carry no `connection_verify`, so azure-core passes no
    `ssl` of its own and aiohttp uses the connector's.

    The session is opened lazily (aiohttp needs a running loop) and is not closed when a
    client closes: `close()` is a no-op for the clients that share it, `dispose()` ends it.

    `connect_timeout` covers the TCP connect and the TLS handshake (aiohttp's `sock_connect`, which
    azure-core sets from `connection_timeout`), `read_timeout` each wait for the answer's bytes
    (`sock_read`): KVCA_CONNECT_TIMEOUT_SECONDS and KVCA_READ_TIMEOUT_SECONDS.
    """

    def __init__(self, context: ssl.SSLContext, *, connect_timeout: float = 10.0,
                 read_timeout: float = 60.0) -> None:
        super().__init__(session_owner=True, connection_timeout=connect_timeout, read_timeout=read_timeout)
        self.ssl_context = context

    async def open(self) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl_context),
                # What AioHttpTransport.open gives its own sessions: proxy settings from the
                # environment, no cookies, bodies left as they came.
                trust_env=True, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        await super().open()

    async def send(self, request, **config):
        try:
            return await super().send(request, **config)
        except (ServiceRequestError, ServiceResponseError) as exc:
            # aiohttp's timeout and disconnect errors do not say where they were going: the host
            # and port (never the URL, whose query may carry a token) and the timeouts in force
            # go with the error, for `translate`. It also marks the error as the vault's own
            # request's, not the credential's token request (azure-identity has its own pipeline).
            exc.kvca_peer = netcause.Peer.of_url(
                request.url, connect_timeout=config.get("connection_timeout", self.connection_config.timeout),
                read_timeout=config.get("read_timeout", self.connection_config.read_timeout))
            raise

    async def sleep(self, duration: float) -> None:
        """Where azure-core's retry policy (and a poller) waits between attempts: spread (`spread`)."""
        await super().sleep(spread(duration))

    async def close(self) -> None:
        return None

    async def dispose(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


def client_kwargs(transport: SharedTransport, retry: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {**_RETRY, **(retry or {}), "transport": transport}



def retry_after(response: Any) -> float | None:
    if response is None:
        return None
    raw = response.headers.get("Retry-After") if response.headers else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def throttled_post(exc: HttpResponseError) -> bool:
    """A 429 without Retry-After on a POST: the one throttling answer azure-core does not retry."""
    response = exc.response
    request = getattr(response, "request", None)
    return exc.status_code == 429 and retry_after(response) is None and \
        getattr(request, "method", "").upper() == "POST"



_TOKEN_HINT = "check the managed identity / `az login` (AZURE_CLIENT_ID)"
_TOKEN_UNREACHABLE_HINT = ("the token comes from the managed identity endpoint (IDENTITY_ENDPOINT, which the "
                           "emulator prints) or `az login`: check that it is the right one and running")


def token_error(exc: BaseException, what: str, service: str) -> UpstreamError:
    """No token: the credential could not reach its endpoint (named, with the cause), or had nothing
    to sign in with."""
    cause = netcause.describe(exc)
    if cause is None:
        return UpstreamError(f"could not get a token for {service}", subject=what, hint=_TOKEN_HINT)
    return UpstreamError(f"could not get a token for {service}: {cause.text}", subject=what,
                         hint=_TOKEN_UNREACHABLE_HINT)


def connection_failure(exc: BaseException) -> bool:
    """A failure to connect or to get a token: its cause is worth a traceback under --debug. An HTTP
    answer's error is not chained: the message already holds all the service said."""
    return isinstance(exc, (ServiceRequestError, ServiceResponseError)) or \
        (isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None)


