"""OCSP from the ledger: `answer_ocsp(ctx, ca, der)`.

- The answer is signed by the CA key that issued the certificate asked about: RFC 6960 2.2 lets the
  CA itself answer, so no delegated responder certificate has to follow a rotation. Every
  still-valid key version of the CA answers for its own leaves (Authority.keys, kept a minute per
  process); a request naming a key not among them makes the keys be read again at once, so
  the answers follow a rotation as it happens.
- `good` only for a serial the ledger holds for that CA key; `revoked` for one it recorded a
  revocation of; `unknown` for anything else. A serial never issued is not vouched for: RFC 6960
  2.2 says "unknown" is for a certificate the responder does not know, and a private CA has no
  pre-certificates in CT logs, which is why the CA/Browser Forum chose "revoked" for public CAs.
  OpenSSL and nginx fail an `unknown` answer closed.
- Answers are pre-signed and kept (signing/ocsp.py ResponseCache) per (key version, CertID hash,
  serial, status): repeated requests, with or without a nonce, cost no keys-API signature.
  Nonces are ignored and not echoed (RFC 5019 4, RFC 9654 2.1; see signing/ocsp.py).
- Cost per request: one or two ledger reads (the revocation, the certificate). No vault call once
  the CA's keys are known.
- A name that is not a CA kvca answers for, whether it exists or not, gets `unauthorized` alike:
  the anonymous route does not tell which names exist in the vault.
"""

from __future__ import annotations

import logging

from cryptography import x509

from kvca_core import telemetry
from kvca_core.errors import InvalidRequest, KvcaError, NotFound, NotManaged, PolicyViolation
from kvca_core.signing import ocsp as ocsp_mod
from kvca_core.signing.crl import RevokedEntry
from kvca_core.vocabulary import name_problem

logger = logging.getLogger(__name__)

MALFORMED = x509.ocsp.OCSPResponseStatus.MALFORMED_REQUEST
UNAUTHORIZED = x509.ocsp.OCSPResponseStatus.UNAUTHORIZED
TRY_LATER = x509.ocsp.OCSPResponseStatus.TRY_LATER


def _answers(ctx) -> ocsp_mod.ResponseCache:
    """The context's signed answers (a warm instance keeps one context)."""
    return ctx.__dict__.setdefault("_kvca_ocsp_answers", ocsp_mod.ResponseCache())


async def _key_for(ctx, ca: str, request):
    """The CA key version the request's CertID names, reading the keys again once when none does."""
    for refresh in (False, True):
        for key in await ctx.authority.keys(ca, refresh=refresh):
            if ocsp_mod.asks_about(request, key.issuing.certificate):
                return key
    return None


async def _status(ctx, ca: str, key, serial: int) -> tuple[str, RevokedEntry | None]:
    revoked = await ctx.ledger.revocation(ca, serial)
    record = await ctx.ledger.certificate(ca, serial)
    # Issued by this key: a serial of the same CA's other key version is not this key's to vouch for.
    if record is None or record.ca_version.lower() not in ((key.version or "").lower(), "unknown"):
        return ocsp_mod.UNKNOWN, None
    if revoked is not None:
        return ocsp_mod.REVOKED, RevokedEntry(serial, revoked.revoked_at, revoked.reason)
    return ocsp_mod.GOOD, None


async def answer_ocsp(ctx, ca: str, der: bytes) -> bytes:
    """The DER OCSPResponse for `der` about a certificate of CA `ca`: malformedRequest, unauthorized or
    tryLater unsigned (RFC 6960 4.2.1), else good, revoked or unknown signed by the issuing key."""
    try:
        request = ocsp_mod.parse_request(der)
    except InvalidRequest as exc:
        telemetry.record("ocsp", "malformed", ca=ca if not name_problem(ca) else None, reason=str(exc))
        return ocsp_mod.unsuccessful(MALFORMED)
    if name_problem(ca):
        return ocsp_mod.unsuccessful(UNAUTHORIZED)
    try:
        key = await _key_for(ctx, ca, request)
        if key is None:
            telemetry.record("ocsp", "unauthorized", ca=ca, serial=format(request.serial_number, "x"),
                             reason="no key of this CA is named by the request")
            return ocsp_mod.unsuccessful(UNAUTHORIZED)
        status, entry = await _status(ctx, ca, key, request.serial_number)

        async def sign(now) -> bytes:
            builder = ocsp_mod.response_builder(request, entry=entry, now=now, status=status)
            return await ocsp_mod.sign_response(key.issuing.signer, builder, key.issuing.certificate)

        answer = await _answers(ctx).answer(ocsp_mod.AnswerKey.of(key.version or "", request, status), sign)
    except (NotFound, NotManaged, PolicyViolation, InvalidRequest) as exc:
        # Not a CA kvca answers for (absent, a leaf, a root, disabled): the same answer whatever the reason.
        telemetry.record("ocsp", "unauthorized", ca=ca, kind=exc.kind)
        return ocsp_mod.unsuccessful(UNAUTHORIZED)
    except KvcaError as exc:  # the vault or the ledger is unreachable or throttled: the client retries
        telemetry.record("ocsp", "try-later", level=logging.WARNING, ca=ca, kind=exc.kind, reason=str(exc))
        return ocsp_mod.unsuccessful(TRY_LATER)
    # One record per answer, at DEBUG for the everyday ones: a responder answers many per second.
    telemetry.record("ocsp", status, level=logging.INFO if status == ocsp_mod.REVOKED else logging.DEBUG,
                     ca=ca, version=key.version, serial=format(request.serial_number, "x"))
    return answer
