"""HTTP triggers (auth level FUNCTION; JSON in and out).

    POST /api/certificates/{name}/sign    sign the pending request
    POST /api/certificates/{name}/renew   renew now ({"if_due": true}: only when due; {"force": true}: even
                                          if a renewal completed moments ago, which is otherwise a 409)
    POST /api/certificates/{name}/cancel  withdraw the pending request
    POST /api/certificates                issue ({"name", "ca", "dns_names", ...}; "sign": false to only request)
    POST /api/certificates/batch          issue many ({"certificates": [...], "sign": true}), one outcome each
    GET  /api/certificates                inventory (?expiring_within_days=N) and the CAs nearing expiry
    GET  /api/cas/{ca}/policy             the CA's issuance policy and its source (as `kvca ca policy show --json`)
    GET  /api/health                      liveness, configuration check (the sweep schedule too), who you are to kvca,
                                          CAs nearing expiry (a bounded, cached listing of the vault)

Every call is authorized first (blueprints/authz.py, kvca_core/access.py): the
caller's Entra identity (App Service authentication) or a bare function key,
against KVCA_ACCESS_RULES.

Every body is a document of kvca's JSON contract (kvca_core/jsonshape.py, schemas/kvca-v1.schema.json),
the same the CLI's --json prints for the same data. Statuses: 400 bad JSON or fields, 403 not allowed by the access rules, 404 unknown certificate or CA, 409 not
managed or conflicting state, 422 policy violation, 503 throttled (with
Retry-After), 502 other Key Vault failures.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import azure.functions as func

from blueprints import authz
from blueprints.respond import answers, json_body, json_flag, json_response, known_fields
from kvca_core import access, capolicy, context, jsonshape, operations
from kvca_core.errors import InvalidRequest
from kvca_core.request import parse_request, parse_requests
from kvca_core.settings import Settings

bp = func.Blueprint()
AUTH = func.AuthLevel.FUNCTION


@bp.function_name("kvca_sign")
@bp.route(route="api/certificates/{name}/sign", methods=["POST"], auth_level=AUTH)
@answers("sign")
async def kvca_sign(req: func.HttpRequest) -> func.HttpResponse:
    return await _on_named(req, operations.sign_pending, access.SIGN)


async def _on_named(req: func.HttpRequest, operation, action: str) -> func.HttpResponse:
    """An operation on the certificate the route names, taking no fields (any field is refused: a
    caller who sends one means something this route does not do), once the access rules allow
    `action` on that certificate."""
    known_fields(json_body(req, optional=True), ())
    ctx = await context.shared()
    name = req.route_params.get("name", "")
    await authz.authorize_certificate(req, ctx, action, name)
    outcome = await operation(ctx, name)
    return json_response(jsonshape.of(outcome))


@bp.function_name("kvca_renew")
@bp.route(route="api/certificates/{name}/renew", methods=["POST"], auth_level=AUTH)
@answers("renew")
async def kvca_renew(req: func.HttpRequest) -> func.HttpResponse:
    data = known_fields(json_body(req, optional=True), ("if_due", "force", "version"))
    version = data.get("version")
    if version is not None and not isinstance(version, str):
        raise InvalidRequest("field 'version' must be a string", subject="request")
    if_due, force = json_flag(data, "if_due", False), json_flag(data, "force", False)
    operations.check_renew_options(if_due=if_due, force=force)
    ctx = await context.shared()
    name = req.route_params.get("name", "")
    # A new version now, unless {"if_due": true}; a renewal completed moments ago is a 409
    # (Conflict) unless {"force": true}. Renewing on demand makes a version the sweep would
    # not make yet: the access rules call it force_renew, and it is rate-limited (min_age).
    await authz.authorize_certificate(req, ctx, access.RENEW if if_due else access.FORCE_RENEW, name)
    outcome = await operations.renew(
        ctx, name, now=not if_due, force=force, version=version,
        min_age=None if if_due else dt.timedelta(minutes=ctx.settings.force_renew_min_age_minutes))
    return json_response(jsonshape.of(outcome))


@bp.function_name("kvca_issue")
@bp.route(route="api/certificates", methods=["POST"], auth_level=AUTH)
@answers("issue")
async def kvca_issue(req: func.HttpRequest) -> func.HttpResponse:
    data = json_body(req, optional=False)
    sign = json_flag(data, "sign", True)
    request = parse_request({k: v for k, v in data.items() if k != "sign"})
    ctx = await context.shared()
    authz.authorize_issue(req, ctx.settings, request)
    outcome = await operations.issue(ctx, request, sign=sign)
    return json_response(jsonshape.of(outcome), 201 if outcome.action in ("issued", "requested") else 200)


@bp.function_name("kvca_cancel")
@bp.route(route="api/certificates/{name}/cancel", methods=["POST"], auth_level=AUTH)
@answers("cancel")
async def kvca_cancel(req: func.HttpRequest) -> func.HttpResponse:
    return await _on_named(req, operations.cancel, access.CANCEL)


@bp.function_name("kvca_issue_batch")
@bp.route(route="api/certificates/batch", methods=["POST"], auth_level=AUTH)
@answers("issue_batch")
async def kvca_issue_batch(req: func.HttpRequest) -> func.HttpResponse:
    """Every item is checked before anything is created, by the same reader as a single request and a
    fleet file (kvca_core/request.py) and against its CA's policy: a malformed item refuses the whole
    batch (400, naming the item), and so does one the CA would refuse (422), so a batch never
    half-runs. Vault failures are per item (`failed` outcomes); the status is 200 when every item
    issued or was already issued, else 207 (Multi-Status, RFC 4918 11.1)."""
    data = known_fields(json_body(req, optional=False), ("certificates", "sign"))
    items = data.get("certificates")
    if not isinstance(items, list) or not items or len(items) > operations.MAX_BATCH:
        raise InvalidRequest(f"field 'certificates' must be a list of 1 to {operations.MAX_BATCH} requests",
                             subject="request")
    labels = [f"certificates[{index}]" for index in range(len(items))]
    for label, item in zip(labels, items):
        if isinstance(item, dict) and "sign" in item:
            raise InvalidRequest("'sign' is set once for the batch", subject=label)
    requests = parse_requests(zip(labels, items))
    ctx = await context.shared()
    for request in requests:  # every item is authorized before anything is created
        authz.authorize_issue(req, ctx.settings, request)
    outcomes = await operations.issue_many(ctx, requests, sign=json_flag(data, "sign", True), labels=labels)
    return json_response(jsonshape.document("batch", {"outcomes": [o.to_dict() for o in outcomes]}),
                         200 if operations.batch_done(outcomes) else 207)


@bp.function_name("kvca_inventory")
@bp.route(route="api/certificates", methods=["GET"], auth_level=AUTH)
@answers("inventory")
async def kvca_inventory(req: func.HttpRequest) -> func.HttpResponse:
    raw = req.params.get("expiring_within_days")
    days = None
    if raw is not None:
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:  # "²".isdigit() is True
            raise InvalidRequest(f"expiring_within_days={raw[:20]!r} must be a whole number of days",
                                 subject="request")
        days = int(raw)
    ctx = await context.shared()
    caller, rules = authz.authorize_inventory(req, ctx.settings)
    report = await operations.inventory_report(ctx, expiring_within_days=days)
    # The caller's part of the inventory, in the shape `kvca list --json` prints.
    shown = replace(report, certificates=tuple(
        i for i in report.certificates if access.visible(caller, rules, ca=i.ca, names=i.scope)),
        ca_warnings=tuple(authz.visible_ca_warnings(caller, rules, report.ca_warnings)))
    return json_response(jsonshape.of(shown))


@bp.function_name("kvca_ca_policy")
@bp.route(route="api/cas/{ca}/policy", methods=["GET"], auth_level=AUTH)
@answers("ca_policy")
async def kvca_ca_policy(req: func.HttpRequest) -> func.HttpResponse:
    # Read-only, and readable by whoever may read the inventory: a policy names rules, no secrets.
    ctx = await context.shared()
    authz.authorize_inventory(req, ctx.settings)
    effective = await capolicy.show_policy(ctx, req.route_params.get("ca", ""))
    return json_response(jsonshape.of(effective))


@bp.function_name("kvca_health")
@bp.route(route="api/health", methods=["GET"], auth_level=AUTH)
@answers("health")
async def kvca_health(req: func.HttpRequest) -> func.HttpResponse:
    # Every missing or malformed setting at once; host=True: the timer's schedule must be an
    # app setting, since the binding reads it itself (a broken one silently disables the sweep).
    settings = Settings.from_env(host=True)
    ctx = await context.shared()
    return json_response(jsonshape.document("health", {
        "status": "ok", "vault": settings.vault_name, "sweep_schedule": settings.sweep_schedule,
        "crl_schedule": settings.crl_schedule, "access": authz.health(req, settings),
        **await authz.health_ca_warnings(req, ctx)}))
