"""Device enrollment over HTTP: a CSR from outside the vault, signed by a CA whose policy allows it.

    POST /api/cas/{ca}/sign-csr               {"csr": PEM, "name"?, "profile"?, "validity_days"?}   (FUNCTION)
                                              -> 201 signed_csr; the access action `enroll`, scoped by
                                              the CA and the CSR's names
    GET  /.well-known/est/{ca}/cacerts        the CA's chain up to its root, certs-only       (ANONYMOUS)
    GET  /.well-known/est/{ca}/csrattrs       what the CSR should be signed with               (ANONYMOUS)
    POST /.well-known/est/{ca}/simpleenroll   a device's first certificate: HTTP Basic with its ID and
                                              one-time code, or an Entra caller allowed to `enroll`
    POST /.well-known/est/{ca}/simplereenroll the next one, authorized by its current certificate
                                              (X-ARR-ClientCert, when KVCA_TRUST_CLIENT_CERT_HEADER)

EST is RFC 7030 with the CA's name as the label (3.2.2: /.well-known/est/<label>/<operation>). Its
path is fixed, outside the Functions host's default `api` prefix: host.json sets
extensions.http.routePrefix to "" ("Use an empty string to remove the default prefix",
learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook#hostjson-settings) and every
other route spells its `api/` itself, so all the other URLs stay what they were.

The EST routes are anonymous at the host (an EST client has no function key); each authenticates its
caller itself. Their answers are EST's (kvca_core/est.py): base64 bodies of the RFC's media types,
and every refusal one text/plain line with the status an EST client acts on: 400 malformed, 401
with a Basic challenge (no usable enrollment code), 403 refused, 404 unknown CA, 415 wrong media
type, 501 re-enrollment switched off, 503 with Retry-After when the vault is busy or failing.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import azure.functions as func
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from blueprints import authz
from blueprints.respond import DEFAULT_RETRY_AFTER, answers, json_body, json_response, known_fields
from kvca_core import access, context, enrollment, est, jsonshape, operations, telemetry
from kvca_core.errors import (
    ConfigurationError,
    Forbidden,
    InvalidRequest,
    KvcaError,
    NotFound,
    PolicyViolation,
    Throttled,
    UpstreamError,
)
from kvca_core.operations.external import CsrRequest, current_ca, read_csr
from kvca_core.signing.names import uri_host
from kvca_core.vocabulary import check_name

logger = logging.getLogger(__name__)
bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS
EST = ".well-known/est/{ca}"
CLIENT_CERT_HEADER = "X-ARR-ClientCert"
REALM = 'Basic realm="kvca EST", charset="UTF-8"'  # RFC 7617 2.1

_SIGN_FIELDS = ("csr", "name", "profile", "validity_days")


def csr_names(request: CsrRequest) -> list[str]:
    """The names a CSR asks for, as the access rules check them: its DNS names and CN, email
    addresses and URIs by their host, IP addresses as they are (only a rule's "*" covers those)."""
    insecure = request.insecure
    names = list(insecure.dns_names)
    names += [email.rpartition("@")[2] for email in insecure.emails]
    for uri in insecure.uris:
        try:
            names.append(uri_host(uri) or uri)
        except ValueError:
            names.append(uri)
    names += [str(ip) for ip in insecure.ip_addresses]
    names += [str(a.value) for a in insecure.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return names


def authorize_enroll(req: func.HttpRequest, settings, ca: str, request: CsrRequest, *,
                     key_holders: bool = True) -> access.Caller:
    """The access action `enroll` for CA `ca` and every name the CSR asks for. `key_holders`: whether
    the caller presented a function key (auth level FUNCTION); on an anonymous route (EST) the
    function-key rule is no one's, and without rules nobody is allowed."""
    caller = authz.caller_of(req, settings)
    rules = authz.rules_of(settings)
    if not key_holders:
        rules = access.AccessRules(rules.roles, rules.callers, None, configured=rules.configured)
        if not rules.configured or caller.kind != access.ENTRA:
            decision = access.Decision(False, "", "an anonymous route takes an Entra caller the access rules "
                                                  "allow to enroll, or an enrollment code")
            authz.require(access.ENROLL, f"CA '{ca}'", caller, decision)
    authz.require(access.ENROLL, f"CA '{ca}'", caller,
                  access.decide_certificate(caller, rules, access.ENROLL, ca=ca, names=csr_names(request)))
    return caller


def _optional(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind) or (kind is str and not value.strip()):
        raise InvalidRequest(f"field {key!r} must be {'a non-empty string' if kind is str else 'a whole number'}, "
                             f"got {str(value)[:40]!r}", subject="request")
    return value


@bp.function_name("kvca_sign_csr")
@bp.route(route="api/cas/{ca}/sign-csr", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@answers("sign_csr")
async def kvca_sign_csr(req: func.HttpRequest) -> func.HttpResponse:
    data = known_fields(json_body(req, optional=False), _SIGN_FIELDS)
    csr = data.get("csr")
    if not isinstance(csr, str) or not csr.strip():
        raise InvalidRequest("field 'csr' is required: the PKCS#10 request, PEM", subject="request")
    name, profile = _optional(data, "name", str), _optional(data, "profile", str)
    validity_days = _optional(data, "validity_days", int)
    ca = check_name(req.route_params.get("ca", ""), "CA")
    request = read_csr(csr)  # parsed and its signature verified before anything is asked of the vault
    ctx = await context.shared()
    authorize_enroll(req, ctx.settings, ca, request)
    signed = await operations.sign_csr(ctx, ca, request, name=name, profile=profile, validity_days=validity_days)
    return json_response(jsonshape.of(signed), 201)


# --- EST ---------------------------------------------------------------------------------------------
class NotImplementedHere(KvcaError):
    """An EST operation this deployment does not offer (RFC 7030 4: 501 for an unsupported function)."""

    http_status = 501


class _WrongType(InvalidRequest):
    """A body of another media type than the operation takes (HTTP 415)."""

    http_status = 415


# The status an EST client acts on, by kind (the first that matches): no 409, 422 or 502 there.
_EST_STATUS: tuple[tuple[type[KvcaError], int], ...] = (
    (enrollment.NotAuthenticated, 401), (NotImplementedHere, 501), (_WrongType, 415), (Forbidden, 403),
    (PolicyViolation, 403), (InvalidRequest, 400), (NotFound, 404), (UpstreamError, 503),
    (ConfigurationError, 500), (KvcaError, 403))


def est_refusal(exc: BaseException, *, operation: str) -> func.HttpResponse:
    """One text/plain line (RFC 7030 4.2.3: human-readable errors are text/plain), never a trace."""
    if not isinstance(exc, KvcaError):
        logger.error("kvca est op=%s status=500 kind=%s", operation, type(exc).__name__, exc_info=exc)
        return func.HttpResponse(f"{operation}: unexpected error; see the function's log\n", status_code=500,
                                 mimetype="text/plain", charset="utf-8")
    status = next(code for kind, code in _EST_STATUS if isinstance(exc, kind))
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = REALM
    if isinstance(exc, (Throttled, UpstreamError)):
        retry = exc.retry_after if isinstance(exc, Throttled) and exc.retry_after else DEFAULT_RETRY_AFTER
        headers["Retry-After"] = str(math.ceil(retry))
    (logger.warning if status < 500 else logger.error)("kvca est op=%s status=%s kind=%s reason=%s", operation,
                                                        status, exc.kind, exc)
    return func.HttpResponse(" ".join(str(exc).split()) + "\n", status_code=status, mimetype="text/plain",
                             charset="utf-8", headers=headers)


def est_answers(operation: str):
    """`respond.answers` with `est_refusal` for every exception."""
    return answers(operation, est_refusal)


def _est_body(data: bytes, media_type: str) -> func.HttpResponse:
    # The media type as `mimetype`: azure.functions' HttpResponseConverter writes it as the Content-Type
    # (with a charset only for text/*), as the revocation routes' DER answers do.
    return func.HttpResponse(data, status_code=200, mimetype=media_type, headers=dict(est.TRANSFER_ENCODING))


def _pkcs10(req: func.HttpRequest) -> CsrRequest:
    """The request's CSR: `application/pkcs10`, base64 (RFC 7030 4.2.1)."""
    if est.media_type(req.headers.get("Content-Type")) != est.PKCS10:
        raise _WrongType(f"the body must be {est.PKCS10} (RFC 7030 4.2.1), not "
                         f"{est.media_type(req.headers.get('Content-Type')) or 'untyped'}", subject="request")
    return read_csr(est.read_pkcs10(req.get_body() or b""))


async def _loaded(req: func.HttpRequest):
    ca = check_name(req.route_params.get("ca", ""), "CA")
    ctx = await context.shared()
    return ctx, ca, await current_ca(ctx, ca)


@bp.function_name("kvca_est_cacerts")
@bp.route(route=f"{EST}/cacerts", methods=["GET"], auth_level=ANONYMOUS)
@est_answers("est_cacerts")
async def kvca_est_cacerts(req: func.HttpRequest) -> func.HttpResponse:
    # RFC 7030 4.1.3: the CA's certificates, the current root among them; public, so anonymous (4.1.1).
    _, _, loaded = await _loaded(req)
    return _est_body(est.certs_only(loaded.issuing.certificates), est.CERTS_ONLY)


@bp.function_name("kvca_est_csrattrs")
@bp.route(route=f"{EST}/csrattrs", methods=["GET"], auth_level=ANONYMOUS)
@est_answers("est_csrattrs")
async def kvca_est_csrattrs(req: func.HttpRequest) -> func.HttpResponse:
    """The signature algorithms a CSR of the CA's allowed key types is best signed with (RFC 7030 4.5.2
    lists such OIDs); kvca also takes SHA-384 and SHA-512. A CA that signs no external CSR says so."""
    ctx, _, loaded = await _loaded(req)
    policy = await ctx.authority.policy(loaded)
    policy.external_profile(None)
    oids = []
    if any(kind.startswith("ec-") for kind in policy.key_types):
        oids.append(SignatureAlgorithmOID.ECDSA_WITH_SHA256)
    if "rsa" in policy.key_types:
        oids.append(SignatureAlgorithmOID.RSA_WITH_SHA256)
    return _est_body(est.csr_attributes(oids), est.CSRATTRS)


@bp.function_name("kvca_est_simpleenroll")
@bp.route(route=f"{EST}/simpleenroll", methods=["POST"], auth_level=ANONYMOUS)
@est_answers("est_simpleenroll")
async def kvca_est_simpleenroll(req: func.HttpRequest) -> func.HttpResponse:
    """A device's first certificate (RFC 7030 4.2.1). Who: an enrollment code as HTTP Basic (3.2.3: the
    device ID and its code), checked before the body is read; or an Entra caller (App Service
    authentication) that the access rules allow to enroll for this CA and the CSR's names."""
    ctx, ca, loaded = await _loaded(req)
    credentials = est.basic_credentials(req.headers.get("Authorization"))
    gate, name = None, None
    if credentials is not None:
        device, code = credentials
        gate = await enrollment.code_gate(ctx, ca, device, code)
        name = device
        telemetry.set_actor(f"est:{device}")
    elif req.headers.get(access.PRINCIPAL_HEADER) is None:
        raise enrollment.NotAuthenticated("enrolling needs the device's one-time enrollment code (HTTP Basic: the "
                                          "device ID and the code), or an Entra caller allowed to enroll",
                                          subject="request", hint="kvca enroll-codes makes the codes")
    request = _pkcs10(req)
    if credentials is None:
        authorize_enroll(req, ctx.settings, ca, request, key_holders=False)
    signed = await operations.sign_csr(ctx, ca, request, name=name, gate=gate, loaded=loaded)
    # RFC 7030 4.2.3: certs-only holding only the certificate issued (cacerts gives the chain).
    return _est_body(est.certs_only([signed.leaf]), est.CERTS_ONLY)


@bp.function_name("kvca_est_simplereenroll")
@bp.route(route=f"{EST}/simplereenroll", methods=["POST"], auth_level=ANONYMOUS)
@est_answers("est_simplereenroll")
async def kvca_est_simplereenroll(req: func.HttpRequest) -> func.HttpResponse:
    """The next certificate of a device (RFC 7030 4.2.2), authorized by its current one over mutual TLS:
    App Service terminates TLS and passes the client certificate on in X-ARR-ClientCert, which is
    believed only while KVCA_TRUST_CLIENT_CERT_HEADER says the site's client-certificate mode is on
    (otherwise any client could send the header). The certificate must be one the ledger holds for
    this CA, not revoked and within its validity; the new CSR keeps its subject and names."""
    ctx, ca, loaded = await _loaded(req)
    if not ctx.settings.trust_client_cert_header:
        raise NotImplementedHere("re-enrollment by client certificate is off here: KVCA_TRUST_CLIENT_CERT_HEADER "
                                 "is false", subject="request",
                                 hint="turn on the app's client certificates (clientCertEnabled) and the setting")
    header = req.headers.get(CLIENT_CERT_HEADER)
    if not header:
        raise Forbidden("no client certificate came with the request: re-enrollment is authorized by the device's "
                        "current certificate over TLS", subject="request")
    current = await enrollment.current_certificate(ctx, ca, est.client_certificate(header))
    telemetry.set_actor(f"est:{current.name}:{current.serial}")
    request = _pkcs10(req)
    signed = await operations.sign_csr(ctx, ca, request, name=current.name, profile=current.profile,
                                       gate=enrollment.SameNames(current), loaded=loaded)
    return _est_body(est.certs_only([signed.leaf]), est.CERTS_ONLY)
