"""App Service's front end in miniature, so that curl and openssl talk to kvca's registered functions
over a real wire: HTTPS on 127.0.0.1, a TLS client certificate requested but not required and handed
on in X-ARR-ClientCert (base64 DER), as App Service does with client certificates on
(learn.microsoft.com/azure/app-service/app-service-web-configure-tls-mutual-auth). Each request is
matched against the registered functions' route templates (host.json's routePrefix is ""), a
function-level route wants the function key as the host does (`x-functions-key` or `?code=`), and
the function runs on the test's event loop with a real func.HttpRequest; its answer goes back through
azure.functions' own HttpResponseConverter, the worker's encoder."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import re

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.http import HttpResponseConverter
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from apphelpers import FUNCTIONS

FUNCTION_KEY = "test-function-key"
CLIENT_CERT_HEADER = "X-ARR-ClientCert"


def _route(template: str) -> re.Pattern:
    """A Functions route template as a regular expression: {name} one segment, {*name} the rest."""
    parts = []
    for piece in re.split(r"(\{\*?[A-Za-z_]+\})", template):
        if piece.startswith("{*"):
            parts.append(f"(?P<{piece[2:-1]}>.*)")
        elif piece.startswith("{"):
            parts.append(f"(?P<{piece[1:-1]}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


ROUTES = []
for _name, _function in FUNCTIONS.items():
    _binding = json.loads(_function.get_function_json())["bindings"][0]
    if _binding["type"] == "httpTrigger":
        ROUTES.append((_route(_binding["route"]), {m.upper() for m in _binding["methods"]},
                       _binding["authLevel"].lower(), _name))


def server_credential(folder: Path, name: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A CA of a test server's own and a server certificate it signed for `name` (an IP address or a
    host name): (ca, cert, key) files in `folder`, the key mode 0600."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "front end test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    try:
        san = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        san = x509.DNSName(name)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([san]), False)
            .sign(ca_key, hashes.SHA256()))
    files = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    files[0].write_bytes(ca.public_bytes(Encoding.PEM))
    files[1].write_bytes(cert.public_bytes(Encoding.PEM))
    files[2].touch(mode=0o600)
    files[2].write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return files


class FrontEnd:
    """Start with `start()`, stop with `stop()`; `url` is https://127.0.0.1:<port>, `cafile` its CA.
    `client_cas`: the CAs whose client certificates the TLS layer accepts (App Service accepts any;
    Python's ssl needs to know them), handed on whatever kvca then thinks of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, folder: Path, client_cas: Sequence[x509.Certificate]) -> None:
        self.cafile, cert, key = server_credential(folder)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        key.unlink()  # loaded; nothing needs the file any more
        self.context.verify_mode = ssl.CERT_OPTIONAL
        self.trust(client_cas)
        self.loop = loop
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="frontend", daemon=True)

    def trust(self, client_cas: Sequence[x509.Certificate]) -> None:
        """Accept client certificates of these CAs from the next connection on."""
        if client_cas:
            self.context.load_verify_locations(cadata="".join(c.public_bytes(Encoding.PEM).decode()
                                                              for c in client_cas))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FrontEnd":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        frontend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                self.request.settimeout(60)
                self.request = frontend.context.wrap_socket(self.request, server_side=True)
                super().setup()

            def log_message(self, *args) -> None:  # the test reads `frontend.requests`, not stderr
                pass

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                status, headers, body = frontend.answer(self)
                frontend.requests.append((self.command, self.path, status))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(handler.path)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        params = dict(parse_qsl(parts.query))
        for pattern, methods, auth_level, name in ROUTES:
            found = pattern.fullmatch(parts.path.lstrip("/"))
            if found and handler.command in methods:
                break
        else:
            return 404, {}, b""
        keys = (handler.headers.get("x-functions-key"), params.get("code"))
        if auth_level == "function" and FUNCTION_KEY not in keys:
            return 401, {}, b""
        # What the client sent as X-ARR-ClientCert never reaches the app: the front end writes its own.
        headers = {k: v for k, v in handler.headers.items() if k.lower() != CLIENT_CERT_HEADER.lower()}
        peer = handler.request.getpeercert(binary_form=True)
        if peer:
            headers[CLIENT_CERT_HEADER] = base64.b64encode(peer).decode("ascii")
        request = func.HttpRequest(method=handler.command, url=f"{self.url}{handler.path}", headers=headers,
                                   params=params, route_params=found.groupdict(), body=body)
        call = asyncio.run_coroutine_threadsafe(FUNCTIONS[name].get_user_function()(request), self.loop)
        response = call.result(timeout=120)
        datum = HttpResponseConverter.encode(response, expected_type=None).value
        return (int(datum["status_code"].value), {k: v.value for k, v in datum["headers"].items()},
                datum["body"].value or b"")


