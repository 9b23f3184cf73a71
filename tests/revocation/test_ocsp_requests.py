"""Malformed OCSP requests (ocsp_corpus.py) are refused before anything reads them: by
parse_request with the rule they break, and through the registered HTTP functions (POST and
GET, real func.HttpRequest objects) as a DER malformedRequest, with no exception escaping.
Well-formed ones, SHA-2 CertIDs and nonces of 1 to 128 octets included, are answered."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import urllib.parse

import azure.functions as func
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from apphelpers import user_function
from kvca_core.errors import InvalidRequest
from kvca_core.signing import LocalSigner, create_root
from kvca_core.signing.ocsp import parse_request

import ocsp_corpus
from revhelpers import CA

# A CA made here, at import, so that the corpus can be listed for parametrizing.
ISSUER = asyncio.run(create_root("CN=OCSP Corpus CA", LocalSigner(ec.generate_private_key(ec.SECP256R1())),
                                 years=2, now=dt.datetime.now(dt.timezone.utc)))
MALFORMED = ocsp_corpus.malformed(ISSUER)
WELLFORMED = ocsp_corpus.wellformed(ISSUER)


@pytest.mark.parametrize("der, says", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_parse_request_refuses_each_malformed_request_naming_the_rule(der, says):
    with pytest.raises(InvalidRequest) as caught:
        parse_request(der)
    assert says in str(caught.value), str(caught.value)


@pytest.mark.parametrize("der", [case[1] for case in WELLFORMED], ids=[case[0] for case in WELLFORMED])
def test_parse_request_accepts_each_wellformed_request(der):
    request = parse_request(der)
    assert request.serial_number > 0 and request.hash_algorithm.name in ("sha1", "sha256", "sha384", "sha512")


async def _post(ca: str, body: bytes) -> ocsp.OCSPResponse:
    req = func.HttpRequest(method="POST", url=f"http://kvca.example/api/ocsp/{ca}",
                           headers={"content-type": "application/ocsp-request"}, params={},
                           route_params={"ca": ca}, body=body)
    return _answer(await user_function("kvca_ocsp_post")(req))


async def _get(ca: str, body: bytes) -> ocsp.OCSPResponse:
    encoded = urllib.parse.quote(base64.b64encode(body).decode(), safe="")
    req = func.HttpRequest(method="GET", url=f"http://kvca.example/api/ocsp/{ca}/{encoded}", headers={},
                           params={}, route_params={"ca": ca, "request": encoded}, body=b"")
    return _answer(await user_function("kvca_ocsp_get")(req))


def _answer(resp: func.HttpResponse) -> ocsp.OCSPResponse:
    assert resp.status_code == 200 and resp.mimetype == "application/ocsp-response", resp.status_code
    return ocsp.load_der_ocsp_response(resp.get_body())


async def test_the_routes_answer_every_malformed_request_malformed_and_answer_the_rest(revocation_ca):
    """Against the real CA (its true CertID hashes), through both routes: a malformed request
    must not reach the lookup (which would answer successful or unauthorized)."""
    from kvca_core.authority import read_certificate

    ca_cert = read_certificate((await revocation_ca.vault.get_certificate(CA)).cer, CA)
    wrong = []
    for name, der, _ in ocsp_corpus.malformed(ca_cert):
        for method, call in (("POST", _post), ("GET", _get)):
            status = (await call(CA, der)).response_status
            if status != ocsp.OCSPResponseStatus.MALFORMED_REQUEST:
                wrong.append((name, method, status))
    assert wrong == []
    for name, der in ocsp_corpus.wellformed(ca_cert):
        for method, call in (("POST", _post), ("GET", _get)):
            answer = await call(CA, der)
            assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, (name, method)
            assert answer.serial_number == parse_request(der).serial_number
            assert answer.hash_algorithm.name == parse_request(der).hash_algorithm.name, name
            # No nonce in any answer: one signed answer serves every client (signing/ocsp.py).
            assert not [e for e in answer.extensions if e.oid.dotted_string == ocsp_corpus.NONCE], name
