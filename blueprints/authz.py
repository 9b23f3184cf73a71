"""The HTTP triggers' authorization step: who is calling (kvca_core.access) and whether
KVCA_ACCESS_RULES let them. Every decision is one log line with the caller's object id and
name (never a token: kvca reads only X-MS-CLIENT-PRINCIPAL, never the X-MS-TOKEN-* headers)."""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from kvca_core import access, cawatch, operations, telemetry
from kvca_core.access import AccessRules, Caller, Decision
from kvca_core.settings import Settings
from kvca_core.ledger import serial_text
from kvca_core.operations.common import tagged_names
from kvca_core.vocabulary import ROOT, ca_of_root, check_name

logger = logging.getLogger(__name__)


def rules_of(settings: Settings) -> AccessRules:
    return AccessRules.parse(settings.access_rules)  # validated at start; cheap to rebuild


def caller_of(req: func.HttpRequest, settings: Settings) -> Caller:
    caller, note = access.caller_from_headers(dict(req.headers), trust_easy_auth=settings.trust_easy_auth)
    if note:
        logger.warning("kvca authz %s", note)
    telemetry.set_actor(caller.actor())  # who asked, in the ledger's records of what this call does
    return caller


def _record(op: str, target: str, caller: Caller, decision: Decision) -> None:
    if decision.allowed:
        logger.info("kvca authz op=%s target=%s %s decision=allowed rule=%s",
                    op, target, caller.describe(), decision.rule)
    else:
        logger.warning("kvca authz op=%s target=%s %s decision=refused reason=%s",
                       op, target, caller.describe(), decision.reason)


def require(op: str, target: str, caller: Caller, decision: Decision) -> None:
    _record(op, target, caller, decision)
    if not decision.allowed:
        raise access.refuse(caller, op, decision, target)


def authorize_issue(req: func.HttpRequest, settings: Settings, request: Any) -> Caller:
    caller = caller_of(req, settings)
    require(access.ISSUE, f"certificate '{request.name}'", caller,
            access.decide_issue(caller, rules_of(settings), request))
    return caller


async def authorize_certificate(req: func.HttpRequest, ctx, action: str, name: str) -> Caller:
    """sign, renew, force_renew, cancel on one certificate: the rules must cover its CA and the
    names of its policy (what the next version will carry). A caller no rule grants the action
    is refused before anything is read from the vault."""
    settings = ctx.settings
    caller = caller_of(req, settings)
    rules = rules_of(settings)
    target = f"certificate '{name}'"
    first = access.may_attempt(caller, rules, action)
    if not rules.configured or not first.allowed:
        require(action, target, caller, first)
        return caller
    ca, policy, tags = await operations.certificate_scope(ctx, name)
    uris, ips = tagged_names(tags)
    names = access.policy_names(policy.dns_names, policy.emails, policy.upns, policy.subject, uris, ips)
    require(action, target, caller, access.decide_certificate(caller, rules, action, ca=ca, names=names))
    return caller


async def authorize_serial(req: func.HttpRequest, ctx, action: str, ca: str, serial: str) -> Caller:
    """An action on a certificate found in CA `ca`'s ledger by serial: the rules must cover the CA and
    every name the recorded certificate carries."""
    settings = ctx.settings
    caller, rules = caller_of(req, settings), rules_of(settings)
    target = f"CA '{ca}' serial {serial[:48]}"
    first = access.may_attempt(caller, rules, action)
    if not rules.configured or not first.allowed:
        require(action, target, caller, first)
        return caller
    record = await ctx.ledger.certificate(check_name(ca, "CA"), serial_text(serial))
    names = [] if record is None else \
        access.certificate_names(subject=record.subject, **access.san_names(record.sans))
    require(action, target, caller, access.decide_certificate(caller, rules, action, ca=ca, names=names))
    return caller


def authorize_inventory(req: func.HttpRequest, settings: Settings) -> tuple[Caller, AccessRules]:
    caller = caller_of(req, settings)
    rules = rules_of(settings)
    require(access.INVENTORY, "inventory", caller, access.may_attempt(caller, rules, access.INVENTORY))
    return caller, rules


def health(req: func.HttpRequest, settings: Settings) -> dict[str, Any]:
    """What /api/health says about access: the rules' shape, this caller, and the warnings."""
    rules = rules_of(settings)
    warnings = []
    if not rules.configured:
        warnings.append("KVCA_ACCESS_RULES is empty: every function-key holder may issue for any CA, "
                        "force-renew any certificate and read the whole inventory")
    if not settings.trust_easy_auth:
        warnings.append("KVCA_TRUST_EASY_AUTH is false: Entra ID identities are not used, every caller "
                        "is a function-key caller")
    return {"rules": rules.summary(), "trust_easy_auth": settings.trust_easy_auth,
            "force_renew_min_age_minutes": settings.force_renew_min_age_minutes,
            "caller": caller_of(req, settings).to_dict(), "warnings": warnings}


def visible_ca_warnings(caller: Caller, rules: AccessRules, warnings) -> list:
    """The CA warnings a caller sees: those of the CAs its inventory rule covers (a root
    `NAME-root` counts as CA NAME's, since a rule names the CA, not its root)."""
    def ca_of(warning) -> str:
        return (ca_of_root(warning.ca) if warning.role == ROOT else None) or warning.ca

    return [w for w in warnings if access.visible(caller, rules, ca=ca_of(w), sans=(), subject="")]


async def health_ca_warnings(req: func.HttpRequest, ctx) -> dict[str, Any]:
    """/api/health's CA warnings: a listing of the vault, bounded in time and cached per instance
    (cawatch.cached_ca_warnings), so that a probe every minute neither lists a large vault each
    time nor answers 500 when the vault cannot be reached (that is reported, as `ca_warnings_error`)."""
    caller, rules = caller_of(req, ctx.settings), rules_of(ctx.settings)
    if not access.may_attempt(caller, rules, access.INVENTORY).allowed:
        return {}
    warnings, error = await cawatch.cached_ca_warnings(ctx)
    body: dict[str, Any] = {"ca_warnings": [w.to_dict() for w in visible_ca_warnings(caller, rules, warnings)]}
    if error:
        body["ca_warnings_error"] = error
    return body
