"""kvca_core.rim.netcause against exceptions that real sockets raised: the stdlib's socket and ssl, aiohttp
(what the SDKs' transport uses) and azure-core's transport wrapping it, on loopback. Nothing here
is built by hand: each failure is made to happen."""

from __future__ import annotations

import errno
import socket
import ssl

import aiohttp
import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest

from kvca_core.rim import netcause
from kvca_core.rim.netcause import Peer, describe
from nethelpers import BlackHole, LoopbackCA, closed_port, loopback_ca, serve  # noqa: F401 (fixtures)


async def aiohttp_failure(url: str, *, trust: LoopbackCA | None = None,
                          timeout: aiohttp.ClientTimeout | None = None) -> BaseException:
    """What aiohttp raised for GET `url` (trusting only `trust`'s CA when given)."""
    context = ssl.create_default_context(cafile=str(trust.pem_path) if trust else None)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                     timeout=timeout or aiohttp.ClientTimeout(total=30)) as session:
        with pytest.raises(aiohttp.ClientError) as raised:
            async with session.get(url) as response:
                await response.read()
    return raised.value


def test_a_refused_socket_names_the_peer_it_was_told():
    port = closed_port()
    with pytest.raises(ConnectionRefusedError) as raised:
        socket.create_connection(("127.0.0.1", port), timeout=5)
    cause = describe(raised.value, peer=Peer("127.0.0.1", port))
    assert cause == netcause.Cause(netcause.REFUSED, f"connection to 127.0.0.1:{port} refused",
                                   "is the port in the URL right, and is the service running there?")
    assert describe(raised.value).text == "connection to the server refused"  # no peer: no invented address


async def test_aiohttp_refused_carries_its_own_host_and_port():
    port = closed_port()
    cause = describe(await aiohttp_failure(f"https://127.0.0.1:{port}/x?sig=S3CR3T"),
                     peer=Peer("elsewhere.example", 1))  # the error's own address wins
    assert (cause.kind, cause.text) == (netcause.REFUSED, f"connection to 127.0.0.1:{port} refused")


async def test_azure_cores_transport_error_is_walked_through_inner_exception():
    port = closed_port()
    async with AioHttpTransport() as transport:
        with pytest.raises(ServiceRequestError) as raised:
            await transport.send(HttpRequest("GET", f"https://127.0.0.1:{port}/certificates?api-version=7.6"))
    cause = describe(raised.value)
    assert (cause.kind, cause.text) == (netcause.REFUSED, f"connection to 127.0.0.1:{port} refused")
    # Wrapped once more by hand-off (`raise ... from`): still found.
    try:
        raise RuntimeError("the operation failed") from raised.value
    except RuntimeError as outer:
        assert describe(outer).kind == netcause.REFUSED


async def test_an_untrusted_certificate_names_openssls_reason(loopback_ca, serve, tmp_path):
    server = serve("tls", loopback_ca.server_context(tmp_path, ["127.0.0.1"]))
    cause = describe(await aiohttp_failure(server.url))  # the system store: the loopback CA is not in it
    assert cause.kind == netcause.UNTRUSTED
    assert cause.text == f"TLS verification of 127.0.0.1:{server.port} failed: unable to get local issuer certificate"
    assert describe(await aiohttp_failure(server.url), hints={netcause.UNTRUSTED: "trust it"}).hint == "trust it"


def test_an_expired_certificate_through_the_ssl_module(loopback_ca, serve, tmp_path):
    server = serve("tls", loopback_ca.server_context(tmp_path, ["127.0.0.1"], expired=True))
    client = ssl.create_default_context(cafile=str(loopback_ca.pem_path))
    with pytest.raises(ssl.SSLCertVerificationError) as raised, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        client.wrap_socket(sock, server_hostname="127.0.0.1")
    cause = describe(raised.value, peer=Peer("127.0.0.1", server.port))
    assert (cause.kind, cause.text) == (netcause.EXPIRED, f"TLS verification of 127.0.0.1:{server.port} failed: "
                                                          "certificate has expired")
    assert cause.hint == "check the server's certificate and this machine's clock"


@pytest.mark.parametrize("host, words", [
    ("localhost", "hostname mismatch, certificate is not valid for 'localhost'"),
    ("127.0.0.1", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
])
async def test_a_certificate_for_another_name_says_which_mismatch(loopback_ca, serve, tmp_path, host, words):
    server = serve("tls", loopback_ca.server_context(tmp_path, ["vault.other.example"]))
    cause = describe(await aiohttp_failure(f"https://{host}:{server.port}", trust=loopback_ca))
    assert (cause.kind, cause.text) == (netcause.NAME_MISMATCH,
                                        f"TLS verification of {host}:{server.port} failed: {words}")


async def test_tls_to_a_plain_http_port_says_so(serve):
    server = serve("http")
    cause = describe(await aiohttp_failure(server.url))
    assert cause.kind == netcause.TLS
    assert cause.text == f"TLS handshake with 127.0.0.1:{server.port} failed (wrong version number)"
    assert cause.hint == "is that port serving plain HTTP rather than HTTPS?"


async def test_a_reset_connection_says_reset(serve):
    server = serve("reset")
    cause = describe(await aiohttp_failure(server.url))
    assert (cause.kind, cause.text) == (netcause.RESET, f"connection to 127.0.0.1:{server.port} reset by the peer")


def test_a_name_that_does_not_resolve_through_the_socket_module():
    with pytest.raises(socket.gaierror) as raised:
        socket.getaddrinfo("kvca-test.invalid", 443)
    cause = describe(raised.value, peer=Peer("kvca-test.invalid", 443))
    assert cause.kind == netcause.DNS
    assert cause.text == f"DNS lookup of kvca-test.invalid failed: {raised.value.strerror}"


async def test_a_name_that_does_not_resolve_through_aiohttp():
    cause = describe(await aiohttp_failure("https://kvca-test.invalid/certificates"))
    assert cause.kind == netcause.DNS and cause.text.startswith("DNS lookup of kvca-test.invalid failed: ")


async def test_a_handshake_that_never_comes_is_a_connect_timeout_with_its_seconds(serve):
    server = serve("silent")
    error = await aiohttp_failure(server.url, timeout=aiohttp.ClientTimeout(sock_connect=0.3))
    cause = describe(error, peer=Peer("127.0.0.1", server.port, connect_timeout=0.3))
    assert cause.kind == netcause.CONNECT_TIMEOUT
    assert cause.text == f"connecting to 127.0.0.1:{server.port} timed out after 0.3 s (TCP connect and TLS handshake)"


async def test_an_answer_that_never_comes_is_a_read_timeout_with_its_seconds(loopback_ca, serve, tmp_path):
    server = serve("tls-silent", loopback_ca.server_context(tmp_path, ["127.0.0.1"]))
    error = await aiohttp_failure(server.url, trust=loopback_ca, timeout=aiohttp.ClientTimeout(sock_read=0.3))
    # aiohttp's read timeout does not say where it was reading from: the caller's peer does.
    assert describe(error).text == "the server sent nothing (read timeout)"
    cause = describe(error, peer=Peer("127.0.0.1", server.port, read_timeout=0.3))
    assert (cause.kind, cause.text) == (netcause.READ_TIMEOUT, f"127.0.0.1:{server.port} sent nothing for 0.3 s "
                                                               "(read timeout)")


@pytest.mark.skipif(not hasattr(socket, "TCP_SYNCNT"), reason="TCP_SYNCNT is Linux's")
def test_a_black_hole_the_os_gives_up_on_is_a_timeout():
    hole = BlackHole()
    try:
        with socket.socket() as sock, pytest.raises(TimeoutError) as raised:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)  # give up after one resent SYN (~3 s)
            sock.connect(("127.0.0.1", hole.port))
    finally:
        hole.close()
    assert raised.value.errno == errno.ETIMEDOUT
    cause = describe(raised.value, peer=Peer("127.0.0.1", hole.port))
    assert (cause.kind, cause.text) == (netcause.TIMEOUT, f"the connection to 127.0.0.1:{hole.port} timed out")


def test_what_is_no_network_failure_has_no_cause():
    with pytest.raises(ValueError) as raised:
        int("not a number")
    assert describe(raised.value) is None


def test_a_peer_from_a_url_keeps_host_and_port_only():
    assert Peer.of_url("https://acct.blob.core.windows.net/crl/ca.crl?sv=2024&sig=S3CR3T") == \
        Peer("acct.blob.core.windows.net", 443)
    assert Peer.of_url("http://[::1]:8080/hooks/T0KEN", connect_timeout=10) == Peer("::1", 8080, connect_timeout=10)
    port = closed_port()
    with pytest.raises(ConnectionRefusedError) as raised:
        socket.create_connection(("127.0.0.1", port), timeout=5)
    # The OS's error carries no address: the peer's is written as a URL would, brackets for IPv6.
    text = describe(raised.value, peer=Peer.of_url(f"https://[::1]:{port}/x?sig=S3CR3T")).text
    assert text == f"connection to [::1]:{port} refused"
