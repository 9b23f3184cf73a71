"""Real network failures on loopback for the connection-error tests: a port nothing listens on,
TLS servers with an expired certificate or one for another name (issued by a test CA the client
may be told to trust), a server that accepts and never answers, one that resets, one that speaks
plain HTTP; a port that drops every SYN (a black hole)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class LoopbackCA:
    """A CA for loopback TLS servers; `pem_path` is what a client trusts (KVCA_TLS_CA_BUNDLE)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    pem_path: Path

    @classmethod
    def create(cls, directory: Path, cn: str = "kvca connection-test CA") -> "LoopbackCA":
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=30)).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        directory.mkdir(parents=True, exist_ok=True)
        pem_path = directory / f"{cn.replace(' ', '-')}.pem"
        pem_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert, key, pem_path)

    def server_context(self, directory: Path, names: list[str], *, expired: bool = False) -> ssl.SSLContext:
        """A server context whose certificate names `names` (DNS names or IP addresses); `expired`:
        its notAfter was yesterday."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        not_before, not_after = ((now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired
                                 else (now - dt.timedelta(days=1), now + dt.timedelta(days=10)))
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                # RFC 5280 4.2.1.1: Python 3.13's default context (VERIFY_X509_STRICT) refuses a
                # chain without it, before the expiry or name check these servers are here to show.
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        path = directory / f"server-{x509.random_serial_number()}.pem"  # test keys only, under tmp_path
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(path)
        return context


class LoopbackServer:
    """A TCP server on 127.0.0.1 in a thread. What it does with each connection:

    - "silent": accepts and never sends a byte (a TLS client waits for the handshake);
    - "reset": accepts and resets at once (SO_LINGER 0: RST, not FIN);
    - "http": answers plain HTTP (a TLS client gets a record that is no TLS);
    - "tls-silent": TLS handshake with `context`, reads the request, never answers;
    - "tls": TLS handshake with `context` (a client that refuses the certificate stops there).
    """

    def __init__(self, mode: str, context: ssl.SSLContext | None = None) -> None:
        self.mode, self.context = mode, context
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(32)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"loopback-{mode}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:  # the 0.1 s poll, or closed
                continue
            conn.settimeout(30)
            self._open.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self.mode == "silent":
                return  # kept open in self._open until close()
            if self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                return
            if self.mode == "http":
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            assert self.context is not None
            tls = self.context.wrap_socket(conn, server_side=True)
            self._open.append(tls)
            if self.mode == "tls-silent":
                tls.recv(65536)
        except OSError:  # the client gave up (refused our certificate, timed out): expected
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._open:
            try:
                conn.close()
            except OSError:
                pass
        self._sock.close()


class BlackHole:
    """A loopback port whose accept queue is full, so the kernel drops new SYNs: connecting to it
    hangs as it does to an address that never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self.port = self._sock.getsockname()[1]
        self._queued: list[socket.socket] = []
        for _ in range(3):  # a backlog of 0 still queues a connection or two: fill it
            client = socket.socket()
            client.setblocking(False)
            try:
                client.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self._queued.append(client)

    def close(self) -> None:
        for sock in (*self._queued, self._sock):
            sock.close()


@pytest.fixture
def loopback_ca(tmp_path) -> LoopbackCA:
    return LoopbackCA.create(tmp_path / "loopback-ca")


@pytest.fixture
def serve():
    """Start LoopbackServers: `serve(mode, context)`; all are closed after the test."""
    started: list[LoopbackServer] = []

    def start(mode: str, context: ssl.SSLContext | None = None) -> LoopbackServer:
        started.append(LoopbackServer(mode, context))
        return started[-1]

    yield start
    for server in started:
        server.close()
