"""The OCSP responder: `openssl ocsp` gets "revoked" and "good", signed by the CA's own key (RFC 6960
2.2: the CA may answer for its certificates), from the ledger, through the registered functions
served by a small local HTTP server with real func.HttpRequest objects."""

from __future__ import annotations

import asyncio
import base64
import http.server
import subprocess
import threading
import urllib.parse
import urllib.request

import azure.functions as func
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from apphelpers import emulator_now, user_function
from kvca_core import operations, revocation

from revhelpers import CA, OCSP_URL, pem, pkilint_ocsp_findings


@pytest.fixture
async def responder_url(revocation_ca):
    """http://127.0.0.1:PORT/api/ocsp/ — each request handed to the registered trigger on the
    test's event loop (where the app's context lives)."""
    loop = asyncio.get_running_loop()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _call(self, method: str, body: bytes) -> None:
            path = urllib.parse.urlsplit(self.path).path
            parts = path.split("/", 4)  # '', 'api', 'ocsp', ca, request?
            route = {"ca": parts[3]} if len(parts) > 3 else {}
            function = "kvca_ocsp_post"
            if method == "GET":
                route["request"] = parts[4] if len(parts) > 4 else ""
                function = "kvca_ocsp_get"
            req = func.HttpRequest(method=method, url=f"http://127.0.0.1{self.path}", headers=dict(self.headers),
                                   params={}, route_params=route, body=body)
            resp = asyncio.run_coroutine_threadsafe(user_function(function)(req), loop).result(timeout=60)
            data = resp.get_body()
            self.send_response(resp.status_code)
            self.send_header("Content-Type", resp.mimetype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802
            self._call("POST", self.rfile.read(int(self.headers.get("Content-Length", "0"))))

        def do_GET(self):  # noqa: N802
            self._call("GET", b"")

        def log_message(self, *args):  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/ocsp/"
    finally:
        server.shutdown()
        server.server_close()


def _openssl_ocsp(tmp, leaf, url: str) -> str:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "root.pem").write_bytes(pem(leaf.root))
    (tmp / "inter.pem").write_bytes(pem(leaf.intermediate))
    (tmp / "leaf.pem").write_bytes(pem(leaf.cert))
    result = subprocess.run(["openssl", "ocsp", "-issuer", str(tmp / "inter.pem"), "-cert", str(tmp / "leaf.pem"),
                             "-url", url, "-CAfile", str(tmp / "root.pem"), "-verify_other", str(tmp / "inter.pem"),
                             "-attime", str(int(emulator_now().timestamp())), "-timeout", "30"],
                            capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


async def test_openssl_ocsp_gets_revoked_and_good_signed_by_the_ca(revocation_ca, leaves, responder_url, tmp_path):
    ctx = revocation_ca
    # The leaves carry the responder's URL (AIA OCSP), derived from KVCA_OCSP_URL.
    aia = leaves["good"].cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP] == \
        [f"{OCSP_URL}/{CA}"]

    await revocation.revoke(ctx, "bad", reason="keyCompromise")
    url = responder_url + CA
    output = await asyncio.to_thread(_openssl_ocsp, tmp_path / "bad", leaves["bad"], url)
    assert "Response verify OK" in output and "leaf.pem: revoked" in output, output
    assert "Reason: keyCompromise" in output, output
    output = await asyncio.to_thread(_openssl_ocsp, tmp_path / "good", leaves["good"], url)
    assert "Response verify OK" in output and "leaf.pem: good" in output, output
    # No responder certificate exists or is needed: the answer names the CA itself.
    with pytest.raises(Exception):
        await ctx.vault.get_certificate(f"{CA}-ocsp")


def _get(url: str, data: bytes | None = None) -> ocsp.OCSPResponse:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"] == "application/ocsp-response"
        body = response.read()
    answer = ocsp.load_der_ocsp_response(body)
    if answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
        assert pkilint_ocsp_findings(body) == []
    return answer


async def test_get_form_answers_and_bad_requests_get_unsigned_errors(revocation_ca, leaves, responder_url):
    request = ocsp.OCSPRequestBuilder().add_certificate(
        leaves["good"].cert, leaves["good"].intermediate, hashes.SHA1()).build()
    encoded = urllib.parse.quote(base64.b64encode(request.public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)).decode(),
        safe="")
    answer = await asyncio.to_thread(_get, responder_url + f"{CA}/{encoded}")
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert answer.serial_number == leaves["good"].cert.serial_number
    answer = await asyncio.to_thread(_get, responder_url + f"{CA}/not-base64!")
    assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    for hostile in (b"\x30\x03\x02\x01\x00", b"garbage", b"\x30" * 20000):
        answer = await asyncio.to_thread(_get, responder_url + CA, hostile)
        assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # A request about another CA's certificate: unauthorized, not a guess.
    answer = await asyncio.to_thread(_get, responder_url + f"no-such-ca/{encoded}")
    assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


async def test_a_request_asking_for_the_ocsp_signing_eku_is_refused(revocation_ca):
    """Nobody gets OCSPSigning: whoever held it could answer for the CA (the CA answers itself)."""
    from kvca_core.model import CertificatePolicy, KeySpec
    from kvca_core.vocabulary import CA_TAG

    ctx = revocation_ca
    await ctx.vault.create_certificate("sneaky", CertificatePolicy(
        issuer_name="Unknown", subject="CN=ocsp.rev.internal", dns_names=("ocsp.rev.internal",),
        ekus=(ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string,), validity_months=1,
        key=KeySpec("EC", curve="P-256")), tags={CA_TAG: CA})
    with pytest.raises(Exception, match="extended key usage 'OCSPSigning' is not issued by kvca"):
        await operations.sign_pending(ctx, "sneaky")
