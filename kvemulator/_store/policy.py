"""A certificate policy as the service stores it: checked, with its defaults filled in."""

from __future__ import annotations

import copy
from typing import Any

from cryptography.x509.oid import ObjectIdentifier

from kvemulator import _crypto as kc
from kvemulator._errors import bad_parameter
from kvemulator._store.model import PEM, PKCS12, drop_none, is_int, obj, str_list

_CONTENT_TYPES = (PKCS12, PEM)
_ACTIONS = ("EmailContacts", "AutoRenew")

# What the service adds to the policy of a create. A policy sent with only a subject and
# issuer Unknown reads back EKUs serverAuth + clientAuth, key usage digitalSignature +
# keyEncipherment and basic_constraints {ca: false} (Python SDK recording
# test_merge_certificate, API 7.3; .NET session DownloadECDsaCertificateSignRemoteVerifyLocal,
# API 7.2; the Self create of the Python recording test_get_pending_certificate_signing_request,
# API 7.3, reads back the same). The EKU pair is added even when key usage is given, not when
# EKUs are; basic_constraints reads {ca: false} even with keyCertSign in the key usage.
DEFAULT_EKUS = ("1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2")
DEFAULT_KEY_USAGE = ("digitalSignature", "keyEncipherment")
# An EC policy reads back its curve's key_size too (.NET session
# DownloadECDsaCertificateSignRemoteVerifyLocal: P-256 -> 256).
_CURVE_SIZES = {"P-256": 256, "P-256K": 256, "P-384": 384, "P-521": 521}


def created_policy(raw: Any) -> dict[str, Any]:
    """The policy a create stores: `raw` checked, with the service's defaults filled in."""
    policy = normalize_policy(raw)
    x509_props = policy["x509_props"]
    x509_props.setdefault("ekus", list(DEFAULT_EKUS))
    x509_props.setdefault("key_usage", list(DEFAULT_KEY_USAGE))
    x509_props.setdefault("basic_constraints", {"ca": False})
    return policy


def normalize_policy(raw: Any, *, default_issuer: str | None = None,
                     default_content_type: str = PKCS12) -> dict[str, Any]:
    """Validate a policy body and fill in the service's defaults (no id/attributes)."""
    policy = drop_none(obj(raw, "policy"))
    key_props = _key_props(obj(policy.get("key_props"), "policy.key_props"))
    sp = obj(policy.get("secret_props"), "policy.secret_props")
    content_type = sp.get("contentType") or default_content_type
    if content_type not in _CONTENT_TYPES:
        raise bad_parameter(f"Invalid content type '{content_type}' in policy.secret_props "
                            f"({PKCS12} or {PEM}).")
    x509_props = _x509_props(obj(policy.get("x509_props"), "policy.x509_props"))
    issuer = _issuer(obj(policy.get("issuer"), "policy.issuer"), default_issuer)
    actions = _lifetime_actions(policy.get("lifetime_actions"), issuer["name"])
    return {"key_props": key_props, "secret_props": {"contentType": content_type},
            "x509_props": x509_props, "lifetime_actions": actions, "issuer": issuer}


def _key_props(kp: dict[str, Any]) -> dict[str, Any]:
    kty = kp.get("kty") or "RSA"
    if kty not in ("RSA", "RSA-HSM", "EC", "EC-HSM"):
        raise bad_parameter(f"Invalid key type '{kty}' in policy.key_props.kty "
                            "(RSA, RSA-HSM, EC or EC-HSM).")
    hsm = kty.endswith("-HSM")
    key_props: dict[str, Any] = {"kty": kty}
    exportable = kp.get("exportable")
    if exportable is None:
        exportable = not hsm
    if not isinstance(exportable, bool):
        raise bad_parameter("Property policy.key_props.exportable must be a boolean.")
    if hsm and exportable:
        raise bad_parameter("Exportable keys are not supported for HSM key types.")
    key_props["exportable"] = exportable
    size = kp.get("key_size")
    if size is not None and not is_int(size):  # 2048.0 would pass `in RSA_SIZES` and break keygen
        raise bad_parameter(f"Property policy.key_props.key_size must be an integer, not {size!r}.")
    if kty.startswith("RSA"):
        size = size or 2048
        if size not in kc.RSA_SIZES:
            raise bad_parameter(f"Invalid key size {size!r} for RSA keys (2048, 3072 or 4096).")
        key_props["key_size"] = size
    else:
        crv = kp.get("crv")
        if crv is None and size is not None:
            crv = kc.CURVE_BY_SIZE.get(size)
            if crv is None:
                raise bad_parameter(f"Invalid key size {size!r} for EC keys.")
        crv = crv or "P-256"
        if not isinstance(crv, str) or crv not in kc.CURVES:
            raise bad_parameter(f"Invalid curve name '{crv}' (P-256, P-384, P-521 or P-256K).")
        key_props["crv"] = crv
        key_props["key_size"] = _CURVE_SIZES[crv]
    reuse = kp.get("reuse_key", False)
    if not isinstance(reuse, bool):
        raise bad_parameter("Property policy.key_props.reuse_key must be a boolean.")
    key_props["reuse_key"] = reuse
    return key_props


def _x509_props(xp: dict[str, Any]) -> dict[str, Any]:
    x509_props: dict[str, Any] = {}
    subject = xp.get("subject")
    sans_in = obj(xp.get("sans"), "policy.x509_props.sans")
    sans: dict[str, list[str]] = {}
    for field in ("dns_names", "emails", "upns", "uris", "ipAddresses"):
        values = str_list(sans_in.get(field), f"policy.x509_props.sans.{field}")
        if values:
            sans[field] = values
    if subject is not None and not isinstance(subject, str):
        raise bad_parameter("Property policy.x509_props.subject must be a string.")
    if not subject and not sans:
        raise bad_parameter("Property policy.x509_props must have a subject or subject "
                            "alternative names.")
    if subject:
        kc.parse_subject(subject)
    x509_props["subject"] = subject or ""
    if sans:
        x509_props["sans"] = sans
    ekus = str_list(xp.get("ekus"), "policy.x509_props.ekus")
    for oid in ekus:
        try:
            ObjectIdentifier(oid)
        except ValueError as exc:
            raise bad_parameter(f"Invalid EKU '{oid}' in policy.x509_props.ekus.") from exc
    if ekus:
        x509_props["ekus"] = ekus
    usages = str_list(xp.get("key_usage"), "policy.x509_props.key_usage")
    for usage in usages:
        if usage not in kc.KEY_USAGES:
            raise bad_parameter(f"Invalid key usage '{usage}' in policy.x509_props.key_usage.")
    if usages:
        x509_props["key_usage"] = usages
    try:  # DNS names, URIs and the like that X.509 cannot carry: refuse now, not at signing
        kc.build_extensions(x509_props, None)
    except ValueError as exc:
        raise bad_parameter(f"Invalid subject alternative name in policy.x509_props.sans: {exc}") from None
    constraints = obj(xp.get("basic_constraints"), "policy.x509_props.basic_constraints")
    if "basic_constraints" in xp:
        ca = constraints.get("ca", False)
        if not isinstance(ca, bool):
            raise bad_parameter("Property policy.x509_props.basic_constraints.ca must be a boolean.")
        x509_props["basic_constraints"] = {"ca": ca}
    months = xp.get("validity_months", 12)
    if not is_int(months) or not 1 <= months <= 1200:
        raise bad_parameter(f"Invalid validity_months {months!r} (1 to 1200).")
    x509_props["validity_months"] = months
    return x509_props


def _issuer(issuer_in: dict[str, Any], default_issuer: str | None) -> dict[str, Any]:
    issuer_name = issuer_in.get("name") or default_issuer
    if not issuer_name or not isinstance(issuer_name, str):
        raise bad_parameter("Property policy.issuer.name is required and must be a string.")
    if issuer_name.lower() not in ("self", "unknown"):
        raise bad_parameter(f"Issuer '{issuer_name}' is not supported by this emulator "
                            "(only Self and Unknown).")
    issuer: dict[str, Any] = {"name": "Self" if issuer_name.lower() == "self" else "Unknown",
                              "cert_transparency": bool(issuer_in.get("cert_transparency", False))}
    if issuer_in.get("cty"):
        issuer["cty"] = str(issuer_in["cty"])
    return issuer


def _lifetime_actions(actions_in: Any, issuer_name: str) -> list[dict[str, Any]]:
    if actions_in is None:
        # The service's defaults: AutoRenew at 80 % for Self, EmailContacts at 80 % otherwise.
        default = "AutoRenew" if issuer_name == "Self" else "EmailContacts"
        return [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": default}}]
    if not isinstance(actions_in, list):
        raise bad_parameter("Property policy.lifetime_actions must be an array.")
    actions = []
    for item in actions_in:
        item = obj(item, "policy.lifetime_actions[]")
        trigger = obj(item.get("trigger"), "policy.lifetime_actions[].trigger")
        action = obj(item.get("action"), "policy.lifetime_actions[].action")
        if action.get("action_type") not in _ACTIONS:
            raise bad_parameter(f"Invalid lifetime action '{action.get('action_type')}' "
                                "(EmailContacts or AutoRenew).")
        clean_trigger = {k: trigger[k] for k in ("lifetime_percentage", "days_before_expiry")
                         if trigger.get(k) is not None}
        if len(clean_trigger) != 1 or not all(is_int(v) and v > 0 for v in clean_trigger.values()):
            raise bad_parameter("Each lifetime action needs exactly one positive trigger: "
                                "lifetime_percentage or days_before_expiry.")
        actions.append({"trigger": clean_trigger, "action": {"action_type": action["action_type"]}})
    return actions


def merge_policy(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` over `old`, section by section (PATCH /certificates/{name}/policy)."""
    merged = copy.deepcopy(old)
    patch = drop_none(patch)
    for section in ("key_props", "secret_props", "x509_props", "issuer"):
        if section in patch and patch[section] is not None:
            given = obj(patch[section], f"policy.{section}")
            base = merged.get(section, {})
            if section == "key_props" and ({"crv", "key_size"} & set(given)
                                           or given.get("kty", base.get("kty")) != base.get("kty")):
                # A new key type, curve or size: the old curve and size go with it (an EC
                # policy stores both, and RSA's key_size is no curve's).
                base = {k: v for k, v in base.items() if k not in ("crv", "key_size")}
            merged[section] = {**base, **given}
    if patch.get("lifetime_actions") is not None:
        merged["lifetime_actions"] = patch["lifetime_actions"]
    return merged
