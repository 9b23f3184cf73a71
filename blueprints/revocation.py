"""Revocation triggers.

    POST /api/certificates/{name}/revoke   {"reason": "keyCompromise", "version"?: V, "serial"?: S}  (FUNCTION)
    POST /api/cas/{ca}/revoke              {"reason": ..., "serial": S}: any certificate in the CA's ledger (FUNCTION)
    GET  /api/crl/{ca}.crl                 the CA's current key's CRL, DER, application/pkix-crl     (ANONYMOUS)
    GET  /api/crl/{ca}/{version}.crl       one key version's CRL (what a leaf's CDP names)            (ANONYMOUS)
    POST /api/ocsp/{ca}                    OCSP, body application/ocsp-request (RFC 6960 A.1)       (ANONYMOUS)
    GET  /api/ocsp/{ca}/{base64 request}   OCSP, the request base64 then URL-encoded (A.1)           (ANONYMOUS)
    timer kvca_publish_crls                every CA's CRL re-signed and uploaded, on KVCA_CRL_SCHEDULE

The CRL and OCSP routes are anonymous on purpose: a relying party fetching a CRL has no
key to send (RFC 5280 4.2.1.13 distribution points are plain URLs), and the
answers are signed, public data.

The timer's binding reads `%KVCA_CRL_SCHEDULE%` from the app settings itself (as the sweep's
does, blueprints/timer.py): the Bicep and local.settings.sample.json set it, and /api/health
reports it missing or malformed.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

import azure.functions as func

from blueprints import authz
from blueprints.respond import answers, json_body, json_response, known_fields
from blueprints.timer import timer_function
from kvca_core import access, context, jsonshape, revocation
from kvca_core.errors import InvalidRequest, NotFound, NotManaged, PolicyViolation

bp = func.Blueprint()

_REVOKE_FIELDS = ("reason", "version", "serial")


@bp.function_name("kvca_revoke")
@bp.route(route="api/certificates/{name}/revoke", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@answers("revoke")
async def kvca_revoke(req: func.HttpRequest) -> func.HttpResponse:
    data = known_fields(json_body(req, optional=False), _REVOKE_FIELDS)
    for key in _REVOKE_FIELDS:
        if key in data and not isinstance(data[key], str):
            raise InvalidRequest(f"field {key!r} must be a string", subject="request")
    if "reason" not in data:
        raise InvalidRequest("field 'reason' is required (an RFC 5280 reason, e.g. keyCompromise)",
                             subject="request")
    ctx = await context.shared()
    name = req.route_params.get("name", "")
    await authz.authorize_certificate(req, ctx, access.REVOKE, name)
    result = await revocation.revoke(ctx, name, reason=data["reason"],
                                     version=data.get("version"), serial=data.get("serial"))
    return json_response(jsonshape.of(result))


@bp.function_name("kvca_revoke_serial")
@bp.route(route="api/cas/{ca}/revoke", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@answers("revoke")
async def kvca_revoke_serial(req: func.HttpRequest) -> func.HttpResponse:
    """A certificate the CA signed, found in its ledger by serial: one the vault no longer holds, or a
    device's, whose key never was in the vault."""
    data = known_fields(json_body(req, optional=False), ("reason", "serial"))
    for key in ("reason", "serial"):
        if not isinstance(data.get(key), str):
            raise InvalidRequest(f"field {key!r} is required (a string)", subject="request")
    ctx = await context.shared()
    ca = req.route_params.get("ca", "")
    await authz.authorize_serial(req, ctx, access.REVOKE, ca, data["serial"])
    result = await revocation.revoke(ctx, reason=data["reason"], ca=ca, serial=data["serial"])
    return json_response(jsonshape.of(result))


async def _crl_answer(ca: str, version: str | None) -> func.HttpResponse:
    ctx = await context.shared()
    try:
        crl = await revocation.publish_crl(ctx, ca, version)
    except (NotFound, NotManaged, PolicyViolation, InvalidRequest):
        # The same answer for a name the vault does not hold and for one that is no CA kvca
        # answers for: the anonymous route does not tell which names exist.
        raise NotFound("no CRL of this name", subject="CRL") from None
    # Clients and proxies may cache it until this instance would sign a fresh one.
    max_age = int(revocation.CRL_CACHE.total_seconds())
    return func.HttpResponse(revocation.crl_der(crl), status_code=200, mimetype="application/pkix-crl",
                             headers={"Cache-Control": f"public, max-age={max_age}"})


@bp.function_name("kvca_crl")
@bp.route(route="api/crl/{ca}.crl", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@answers("crl")
async def kvca_crl(req: func.HttpRequest) -> func.HttpResponse:
    return await _crl_answer(req.route_params.get("ca", ""), None)


@bp.function_name("kvca_crl_version")
@bp.route(route="api/crl/{ca}/{version}.crl", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@answers("crl")
async def kvca_crl_version(req: func.HttpRequest) -> func.HttpResponse:
    return await _crl_answer(req.route_params.get("ca", ""), req.route_params.get("version", ""))


def _ocsp_answer(der: bytes) -> func.HttpResponse:
    # Every OCSP answer is 200 with a DER OCSPResponse, errors included (RFC 6960 A.1 / 2.3).
    return func.HttpResponse(der, status_code=200, mimetype="application/ocsp-response")


@bp.function_name("kvca_ocsp_post")
@bp.route(route="api/ocsp/{ca}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@answers("ocsp")
async def kvca_ocsp_post(req: func.HttpRequest) -> func.HttpResponse:
    ctx = await context.shared()
    return _ocsp_answer(await revocation.answer_ocsp(ctx, req.route_params.get("ca", ""), req.get_body() or b""))


@bp.function_name("kvca_ocsp_get")
@bp.route(route="api/ocsp/{ca}/{*request}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@answers("ocsp")
async def kvca_ocsp_get(req: func.HttpRequest) -> func.HttpResponse:
    encoded = unquote(req.route_params.get("request", ""))
    try:
        der = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        der = b""  # answered malformedRequest by the operation
    ctx = await context.shared()
    return _ocsp_answer(await revocation.answer_ocsp(ctx, req.route_params.get("ca", ""), der))


# Every CA's CRL re-signed and uploaded; a CA not published raises, so the run shows as failed.
kvca_publish_crls = timer_function(bp, "kvca_publish_crls", "KVCA_CRL_SCHEDULE", revocation.publish_crls)
