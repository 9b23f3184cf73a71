"""Device enrollment over HTTP: a CSR from outside the vault, signed by a CA whose policy allows it.

    POST /api/cas/{ca}/sign-csr        {"csr": PEM, "name"?, "profile"?, "validity_days"?}   (FUNCTION)
                                       -> 201 signed_csr; authorized by the access action `enroll`,
                                       scoped by the CA and the CSR's names
"""

from __future__ import annotations

from typing import Any

import azure.functions as func
from cryptography.x509.oid import NameOID

from blueprints import authz
from blueprints.respond import answers, json_body, json_response, known_fields
from kvca_core import access, context, jsonshape, operations
from kvca_core.errors import InvalidRequest
from kvca_core.operations.external import CsrRequest, read_csr
from kvca_core.signing.names import uri_host
from kvca_core.vocabulary import check_name

bp = func.Blueprint()

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
@bp.route(route="cas/{ca}/sign-csr", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
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

