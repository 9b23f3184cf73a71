"""Consumers of kvca's certificates run for real on loopback: Debian's nginx and mosquitto
(started as the current user, every file in one directory), a Python `ssl` server when nginx
is missing, `openssl s_client`, and `mosquitto_pub` / `mosquitto_sub`.

`make demo` shows the certificates in use with these, and tests/consumers checks them with the
same code. Servers bind 127.0.0.1 only. nginx and mosquitto need the private key in a file:
`KeyFiles` writes it with mode 0600 and removes it when asked (the demo and the test fixtures
do so when they end)."""

from __future__ import annotations

import getpass
import grp
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

WAIT = 30.0  # seconds a server gets to start, reload or answer (a bound, not a timing)
# What to install when a binary is missing (Debian package names).
PACKAGES = {"nginx": "nginx", "mosquitto": "mosquitto", "mosquitto_pub": "mosquitto-clients",
            "mosquitto_sub": "mosquitto-clients", "openssl": "openssl"}


def find(binary: str) -> str | None:
    """The path of `binary` on PATH, or in /usr/sbin (where Debian puts nginx and mosquitto,
    and which a normal user's PATH leaves out)."""
    return shutil.which(binary) or (f"/usr/sbin/{binary}" if os.access(f"/usr/sbin/{binary}", os.X_OK) else None)


def install_hint(*binaries: str) -> str:
    packages = sorted({PACKAGES.get(b, b) for b in binaries})
    return f"sudo apt-get install -y {' '.join(packages)}"


def binary(name: str) -> str:
    path = find(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed ({install_hint(name)})")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None, log: Path | None) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {WAIT:.0f} s: {_tail(log)}")


def _tail(path: Path | None) -> str:
    try:
        return path.read_text(errors="replace")[-2000:] if path else "(no log)"
    except OSError:
        return "(no log)"


# --- key files ----------------------------------------------------------------------------------
def key_file(path: Path, key) -> Path:
    """The private key as unencrypted PKCS#8 PEM, created with mode 0600 from the first byte."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def pem_file(path: Path, certs: list[x509.Certificate]) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


@dataclass
class KeyFiles:
    """Key files handed to a server or client; `remove()` deletes them (fixture finalizers)."""

    paths: list[Path] = field(default_factory=list)

    def write(self, directory: Path, stem: str, key, certs: list[x509.Certificate]) -> tuple[Path, Path]:
        """(certificate chain PEM, key PEM): `certs` leaf first; an older key file of the same stem
        is replaced."""
        key_path = directory / f"{stem}.key"
        if key_path.exists():
            key_path.unlink()
        key_file(key_path, key)
        self.paths.append(key_path)
        return pem_file(directory / f"{stem}.pem", certs), key_path

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.paths.clear()


def _user_and_group() -> tuple[str, str]:
    return getpass.getuser(), grp.getgrgid(os.getgid()).gr_name


class _Server:
    """A server program run as the current user on 127.0.0.1:<free port>, its files in `root`."""

    PROGRAM = ""
    STOP = signal.SIGTERM

    def __init__(self, root: Path, conf: str, log: str) -> None:
        self.binary = binary(self.PROGRAM)
        self.root = root
        self.port = free_port()
        self.conf = root / conf
        self.log = root / log
        self.proc: subprocess.Popen | None = None

    def _launch(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.STOP)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=WAIT)


# --- nginx --------------------------------------------------------------------------------------
class Nginx(_Server):
    """Debian's nginx on 127.0.0.1:<free port>, run as the current user, every file in `root`."""

    PROGRAM = "nginx"
    STOP = signal.SIGQUIT  # graceful: the master waits for its workers

    def __init__(self, root: Path, cert: Path, key: Path, server_name: str) -> None:
        super().__init__(root, "nginx.conf", "error.log")
        user, group = _user_and_group()
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / sub).mkdir(exist_ok=True)
        # `user` takes effect only when the master runs as root; then the workers stay this user too.
        self.conf.write_text(f"""
user {user} {group};
worker_processes 1;
pid {root}/nginx.pid;
error_log {self.log} info;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        server_name {server_name};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "kvca\\n"; }}
    }}
}}
""")

    def _args(self) -> list[str]:
        return [self.binary, "-p", str(self.root), "-c", str(self.conf), "-e", str(self.log)]

    def start(self) -> "Nginx":
        check = subprocess.run(self._args() + ["-t"], capture_output=True, text=True, timeout=WAIT)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t: {check.stderr.strip()}")
        self._launch(self._args() + ["-g", "daemon off;"])
        return self

    def reload(self) -> None:
        """What an operator or a rotation hook does after the files change: `nginx -s reload`."""
        result = subprocess.run(self._args() + ["-s", "reload"], capture_output=True, text=True, timeout=WAIT)
        if result.returncode != 0:
            raise RuntimeError(f"nginx -s reload: {result.stderr.strip()}")


@dataclass
class Handshake:
    code: int
    output: str
    served: x509.Certificate | None

    @property
    def verified(self) -> bool:
        return self.code == 0 and "Verify return code: 0 (ok)" in self.output


def s_client(port: int, server_name: str, cafile: Path, *, cert: Path | None = None,
             key: Path | None = None) -> Handshake:
    """`openssl s_client -verify_return_error` against the exported trust, checking the name too;
    with `cert` and `key`, as a client presenting its own certificate (mutual TLS)."""
    own = ["-cert", str(cert), "-key", str(key)] if cert is not None and key is not None else []
    proc = subprocess.run(
        [binary("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-servername", server_name,
         "-verify_return_error", "-verify_hostname", server_name, "-CAfile", str(cafile), "-showcerts", *own],
        input="Q\n", capture_output=True, text=True, timeout=WAIT)
    served = None
    text = proc.stdout
    if "-----BEGIN CERTIFICATE-----" in text:
        start = text.index("-----BEGIN CERTIFICATE-----")
        end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
        served = x509.load_pem_x509_certificate(text[start:end].encode())
    return Handshake(proc.returncode, text + proc.stderr, served)


def wait_for_serial(port: int, server_name: str, cafile: Path, serial: int) -> Handshake:
    """A reload replaces the workers gracefully: poll until the new certificate is served."""
    deadline = time.monotonic() + WAIT
    while True:
        shake = s_client(port, server_name, cafile)
        if (shake.served is not None and shake.served.serial_number == serial) or time.monotonic() > deadline:
            return shake
        time.sleep(0.2)


# --- mosquitto ----------------------------------------------------------------------------------
class Mosquitto(_Server):
    """Debian's mosquitto on 127.0.0.1:<free port> with `require_certificate true`: a client must
    present a certificate that chains to `cafile`; its CN becomes its MQTT user name."""

    PROGRAM = "mosquitto"

    def __init__(self, root: Path, cafile: Path, cert: Path, key: Path) -> None:
        super().__init__(root, "mosquitto.conf", "mosquitto.log")
        user, _ = _user_and_group()
        self.conf.write_text(f"""
user {user}
pid_file {root}/mosquitto.pid
persistence false
log_dest file {self.log}
log_type all
per_listener_settings false
listener {self.port} 127.0.0.1
cafile {cafile}
certfile {cert}
keyfile {key}
require_certificate true
use_identity_as_username true
allow_anonymous false
""")

    def start(self) -> "Mosquitto":
        self._launch([self.binary, "-c", str(self.conf)])
        return self

    def log_text(self) -> str:
        return _tail(self.log)

    def _tls(self, cafile: Path, cert: Path, key: Path) -> list[str]:
        # --insecure turns off only the check of the *broker's* host name (it listens on
        # 127.0.0.1, and Key Vault cannot put an IP address SAN in a certificate); the broker's
        # chain is still verified against cafile, and the broker verifies the client in full.
        return ["-h", "127.0.0.1", "-p", str(self.port), "--cafile", str(cafile), "--cert", str(cert),
                "--key", str(key), "--insecure", "-q", "1"]

    def publish(self, cafile: Path, cert: Path, key: Path, topic: str, message: str) -> subprocess.CompletedProcess:
        return subprocess.run([binary("mosquitto_pub"), *self._tls(cafile, cert, key),
                               "-t", topic, "-m", message, "-i", f"pub-{os.getpid()}"],
                              capture_output=True, text=True, timeout=WAIT)

    def subscribe(self, cafile: Path, cert: Path, key: Path, topic: str) -> subprocess.Popen:
        """A subscriber that prints one message and exits (`-C 1`); read it with `.communicate()`."""
        return subprocess.Popen([binary("mosquitto_sub"), *self._tls(cafile, cert, key),
                                 "-t", topic, "-C", "1", "-W", str(int(WAIT)), "-v", "-i", f"sub-{os.getpid()}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for_log(self, text: str) -> bool:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if text in self.log_text():
                return True
            time.sleep(0.1)
        return False


class PythonTLSServer:
    """A TLS server from Python's `ssl` module on 127.0.0.1 (the demo's TLS endpoint when nginx is
    not installed): it completes handshakes, answers one line and closes. With `client_ca`, it
    requires a client certificate chaining to it (mutual TLS, as an MQTT broker does) and keeps the
    subject of each client it accepted in `clients`."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        self.clients: list[str] = []
        if client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(cafile=str(client_ca))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="demo-tls", daemon=True)
        self._stopped = threading.Event()

    def start(self) -> "PythonTLSServer":
        self._thread.start()
        return self

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                conn.settimeout(WAIT)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert()
                    if peer:
                        self.clients.append(", ".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn))
                    tls.sendall(b"kvca\n")
                    tls.recv(1)  # the client closes first: it reads no truncated stream (no close_notify)
            except (OSError, ssl.SSLError):
                pass  # a client that gave up, or refused our certificate

    def stop(self) -> None:
        self._stopped.set()
        self.sock.close()
        self._thread.join(timeout=WAIT)
