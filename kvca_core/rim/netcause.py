"""Why a connection failed, in words: refused, TLS verification (and why), DNS, timeout, reset.

    cause = describe(exc, peer=Peer("127.0.0.1", 8443, connect_timeout=10))
    cause.text   # "connection to 127.0.0.1:8443 refused"
    cause.hint   # "is the port in the URL right, and is the service running there?"

The SDKs wrap the one exception that says why in two or three others: azure-core's
`ServiceRequestError` keeps aiohttp's error as `inner_exception` (and `__cause__`,
azure/core/pipeline/transport/_aiohttp.py `send`), aiohttp's `ClientConnectorError` keeps the
OS's as `os_error` and the host and port it was connecting to (`certificate_error` for a
failed verification, aiohttp/client_exceptions.py). `describe` walks all of those links.

No azure import here: the Key Vault adapter, the CRL store and the webhook share it. A cause
carries the host and port, the OS's or OpenSSL's own words (errno texts, `verify_message`,
the SSL reason) and type names, never an exception's free text: aiohttp's messages quote
request URLs, and a URL may carry a token (a SAS, a webhook's secret path).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

import aiohttp

# What went wrong; callers may give a hint of their own per kind (`describe(hints=...)`).
REFUSED = "refused"
UNTRUSTED = "untrusted"  # verification failed: no trusted CA issued the chain
EXPIRED = "expired"  # verification failed: a certificate is past notAfter or before notBefore
NAME_MISMATCH = "name-mismatch"  # verification failed: not issued for this host name or address
TLS_VERIFY = "tls-verify"  # verification failed otherwise (revoked, bad signature, ...)
TLS = "tls"  # the handshake failed before any certificate was judged
DNS = "dns"
CONNECT_TIMEOUT = "connect-timeout"  # TCP connect and TLS handshake: aiohttp's sock_connect covers both
READ_TIMEOUT = "read-timeout"
TIMEOUT = "timeout"  # a timeout with no word of which
RESET = "reset"
CLOSED = "closed"
UNREACHABLE = "unreachable"
OTHER = "other"

# OpenSSL's X509_V_ERR_* codes (include/openssl/x509_vfy.h), as ssl.SSLCertVerificationError.verify_code.
_UNTRUSTED_CODES = frozenset({
    2,  # unable to get issuer certificate
    18,  # self-signed certificate
    19,  # self-signed certificate in certificate chain
    20,  # unable to get local issuer certificate
    21,  # unable to verify the first certificate
})
_CLOCK_CODES = frozenset({9, 10})  # certificate is not yet valid, certificate has expired
_NAME_CODES = frozenset({62, 64})  # hostname mismatch, IP address mismatch

_HINTS = {
    REFUSED: "is the port in the URL right, and is the service running there?",
    UNTRUSTED: "the server's certificate must chain to a CA this machine trusts",
    EXPIRED: "check the server's certificate and this machine's clock",
    NAME_MISMATCH: "use the host name the server's certificate was issued for (one of its subject "
                   "alternative names), or reissue it for this one",
    DNS: "check the host name in the URL, and this machine's DNS (a private endpoint needs its private DNS zone)",
    CONNECT_TIMEOUT: "is the host reachable from here (firewall, proxy, private endpoint)?",
    READ_TIMEOUT: "the service took the request but did not answer in time; try again later",
    RESET: "something between here and the service (a proxy, a firewall) or the service itself dropped "
           "the connection; try again",
    CLOSED: "is that port serving HTTPS? A proxy or firewall on the way can also do this",
    UNREACHABLE: "check this machine's network and its route to the host",
}
_WRONG_VERSION_HINT = "is that port serving plain HTTP rather than HTTPS?"

# Links from one exception to the one it wraps: aiohttp's, azure-core's, Python's.
_LINKS = ("os_error", "certificate_error", "inner_exception", "__cause__", "__context__")
_MAX_CHAIN = 32


@dataclass(frozen=True)
class Peer:
    """The host and port a connection was for, and the timeouts in force (seconds; None: unknown).
    Only for errors that do not say it themselves (aiohttp's timeouts and disconnects do not)."""

    host: str | None
    port: int | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None

    @classmethod
    def of_url(cls, url: str, **timeouts: float | None) -> "Peer":
        """Host and port of `url` (443/80 by scheme); its path and query are never kept."""
        try:
            parts = urlsplit(str(url))
            port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
        except ValueError:
            return cls(None, None, **timeouts)
        return cls(parts.hostname, port, **timeouts)


@dataclass(frozen=True)
class Cause:
    kind: str
    text: str  # e.g. "connection to 127.0.0.1:8443 refused"
    hint: str | None = None


def describe(exc: BaseException, *, peer: Peer | None = None,
             hints: Mapping[str, str] | None = None) -> Cause | None:
    """Why `exc` (or anything it wraps) failed to connect, with the host and port it was about:
    the first exception of the chain that says one, else `peer`. None when the chain holds no
    network failure at all (no OSError, no aiohttp client error, no timeout)."""
    chain = _chain(exc)
    best = max(((rank, kind, e) for e in chain for rank, kind in [_classify(e)] if rank), default=None,
               key=lambda found: found[0])
    if best is None:
        return None
    _, kind, culprit = best
    host, port = _address(chain, peer)
    where = _where(chain, host, port)
    text, hint = _words(kind, culprit, chain, where, host, peer)
    hint = (hints or {}).get(kind, hint)
    return Cause(kind, text, hint)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it wraps, outermost first, each once. `__context__` (what was being
    handled when it was raised) counts as Python's traceback counts it: only without a
    `__cause__` and unless suppressed (`raise ... from None`)."""
    seen: set[int] = set()
    order: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(order) < _MAX_CHAIN:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        order.append(current)
        for link in _LINKS:
            if link == "__context__" and (current.__cause__ is not None or current.__suppress_context__):
                continue
            try:
                todo.append(getattr(current, link, None))
            except Exception:  # a property of a half-built exception; the other links still count
                continue
    return order


_CONNECTION_TIMEOUT = getattr(aiohttp, "ConnectionTimeoutError", None)  # aiohttp 3.10+
_SOCKET_TIMEOUT = getattr(aiohttp, "SocketTimeoutError", None)
_DNS_ERROR = getattr(aiohttp, "ClientConnectorDNSError", None)


def _classify(e: BaseException) -> tuple[int, str]:
    """(how telling, kind) of one exception; rank 0: says nothing about a connection. The most
    telling of a chain wins: OpenSSL's verdict over the connector error that carries it, aiohttp's
    "connect timeout" over the bare TimeoutError beneath it."""
    # aiohttp's certificate and SSL connector errors are ssl exceptions too (ssl.CertificateError is
    # SSLCertVerificationError), without OpenSSL's code and reason: the one they wrap says more.
    wrapper = isinstance(e, aiohttp.ClientError)
    if isinstance(e, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
        return 0, OTHER  # "not yet": asyncio's TLS loop handles these; a reset's __context__ may be one
    if isinstance(e, ssl.SSLCertVerificationError):
        code = getattr(e, "verify_code", None)
        rank = 65 if wrapper or code is None else 90
        if code in _UNTRUSTED_CODES:
            return rank, UNTRUSTED
        if code in _CLOCK_CODES:
            return rank, EXPIRED
        if code in _NAME_CODES:
            return rank, NAME_MISMATCH
        return rank, TLS_VERIFY
    if isinstance(e, socket.gaierror):
        return 80, DNS
    if isinstance(e, ssl.SSLError):
        return 65 if wrapper else 75, CLOSED if isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) else TLS
    if _DNS_ERROR is not None and isinstance(e, _DNS_ERROR):
        return 70, DNS
    if _CONNECTION_TIMEOUT is not None and isinstance(e, _CONNECTION_TIMEOUT):
        return 60, CONNECT_TIMEOUT
    if _SOCKET_TIMEOUT is not None and isinstance(e, _SOCKET_TIMEOUT):
        return 60, READ_TIMEOUT
    number = getattr(e, "errno", None) if isinstance(e, OSError) else None
    if isinstance(e, ConnectionRefusedError) or number == errno.ECONNREFUSED:
        return 50, REFUSED
    if number == errno.ECONNRESET:
        return 50, RESET
    if number in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN):
        return 50, UNREACHABLE
    if isinstance(e, (ConnectionError, aiohttp.ServerDisconnectedError)):  # reset without errno, EOF, EPIPE
        return 45, CLOSED
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):  # also ETIMEDOUT: the OS gave up on the SYNs
        return 30, TIMEOUT
    if isinstance(e, OSError) and isinstance(number, int) and number > 0:
        return 20, OTHER
    if isinstance(e, (OSError, aiohttp.ClientError)):
        return 10, OTHER
    return 0, OTHER


def _address(chain: list[BaseException], peer: Peer | None) -> tuple[str | None, int | None]:
    """The host and port the failing connection was for: aiohttp's connector errors carry them
    (`ClientConnectorError.host/.port`, also for certificate and DNS errors); else `peer`."""
    for e in chain:
        if isinstance(e, aiohttp.ClientConnectorError):  # certificate and DNS errors included
            try:
                return str(e.host), e.port
            except Exception:  # no connection key: fall back to the caller's peer
                break
    return (peer.host, peer.port) if peer is not None else (None, None)


def _where(chain: list[BaseException], host: str | None, port: int | None) -> str:
    if not host:
        return "the server"
    shown = f"[{host}]" if ":" in host else host
    shown = f"{shown}:{port}" if port else shown
    # aiohttp's connector errors name the proxy, not the target, when the proxy failed.
    return f"the proxy {shown}" if any(isinstance(e, aiohttp.ClientProxyConnectionError) for e in chain) else shown


def _words(kind: str, culprit: BaseException, chain: list[BaseException], where: str, host: str | None,
           peer: Peer | None) -> tuple[str, str | None]:
    hint = _HINTS.get(kind)
    if kind in (UNTRUSTED, EXPIRED, NAME_MISMATCH, TLS_VERIFY):
        why = getattr(culprit, "verify_message", None) or getattr(culprit, "reason", None) or type(culprit).__name__
        why = str(why).rstrip(".")
        if why[1:2].islower():  # "Hostname mismatch, ..." -> "hostname ..."; "IP address ..." stays
            why = why[0].lower() + why[1:]
        return f"TLS verification of {where} failed: {why}", hint
    if kind == TLS:
        reason = getattr(culprit, "reason", None)
        why = str(reason).lower().replace("_", " ") if reason else type(culprit).__name__
        if reason == "WRONG_VERSION_NUMBER":  # the answer to a ClientHello was no TLS record
            hint = _WRONG_VERSION_HINT
        return f"TLS handshake with {where} failed ({why})", hint
    if kind == DNS:
        # getaddrinfo's words (gai_strerror); aiohttp's aiodns resolver gives an OSError of its own.
        os_error = next((e for e in chain if isinstance(e, socket.gaierror)), None) or \
            next((e for e in chain if type(e) is OSError), None)
        why = (os_error.strerror if os_error is not None and os_error.strerror else None) or type(culprit).__name__
        return f"DNS lookup of {host or 'the host'} failed: {why}", hint
    if kind == REFUSED:
        return f"connection to {where} refused", hint
    if kind == CONNECT_TIMEOUT:
        limit = f" after {peer.connect_timeout:g} s" if peer is not None and peer.connect_timeout else ""
        return f"connecting to {where} timed out{limit} (TCP connect and TLS handshake)", hint
    if kind == READ_TIMEOUT:
        limit = f" for {peer.read_timeout:g} s" if peer is not None and peer.read_timeout else ""
        return f"{where} sent nothing{limit} (read timeout)", hint
    if kind == TIMEOUT:
        return f"the connection to {where} timed out", None
    if kind == RESET:
        return f"connection to {where} reset by the peer", hint
    if kind == CLOSED:
        if isinstance(culprit, aiohttp.ServerDisconnectedError):
            return f"{where} closed the connection without answering", hint
        if isinstance(culprit, BrokenPipeError):
            return f"{where} closed the connection (broken pipe)", hint
        if any(isinstance(e, aiohttp.ClientConnectorError) for e in chain):
            return f"{where} closed the connection while connecting (TCP connect and TLS handshake)", hint
        return f"{where} closed the connection", hint
    number = getattr(culprit, "errno", None)
    if kind == UNREACHABLE:
        return f"{where} is unreachable: {os.strerror(number)}", hint
    if isinstance(culprit, OSError) and isinstance(number, int) and number > 0:
        return f"connection to {where} failed: {os.strerror(number)}", None
    return f"connection to {where} failed ({type(culprit).__name__})", None
