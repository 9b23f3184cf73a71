"""Who calls the HTTP API, and what KVCA_ACCESS_RULES let them do. Pure: no I/O, no azure imports.

Two kinds of caller reach the HTTP triggers (auth level FUNCTION, so every one
of them presented a function key to the Functions host first):

- an Entra ID caller: App Service authentication (Easy Auth) validated its
  token and put its claims in the `X-MS-CLIENT-PRINCIPAL` header (base64 JSON
  `{"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}`;
  learn.microsoft.com/azure/app-service/configure-authentication-user-identities).
  App Service strips client-sent `X-MS-*` headers only while authentication is
  on, so the header is believed only when KVCA_TRUST_EASY_AUTH says so (the
  Bicep sets it together with authsettingsV2);
- a function-key caller: no (believed) principal.

Rules (KVCA_ACCESS_RULES, JSON):

    {"roles":        {"<app role value>": RULE, ...},
     "callers":      {"<Entra object id>": RULE, ...},
     "function_key": RULE}
    RULE = {"actions": ["issue", "renew", "force_renew", "sign", "cancel", "inventory", "revoke", "enroll"],
            "cas": ["corp-ca", ...] or ["*"],
            "dns_suffixes": ["web.corp.internal", ...] or ["*"]}

A caller may do what ONE of its rules allows as a whole: the action, the CA
and every name (a CA from one rule and a suffix from another never combine).
An Entra caller's rules are its roles', its own object id's and the
function-key rule (it holds a function key too, so it could always drop its
token and be a function-key caller). No rules configured: every caller may do
everything (kvca's behaviour before rules existed), which /api/health reports
as a warning. Rules configured but none for function keys: a caller without an
identity may do nothing.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from kvca_core import jsontext
from kvca_core.errors import Forbidden, KvcaError
from kvca_core.vocabulary import NAME_RE, tagged_names

ISSUE, RENEW, FORCE_RENEW, SIGN, CANCEL, INVENTORY = "issue", "renew", "force_renew", "sign", "cancel", "inventory"
REVOKE = "revoke"
ENROLL = "enroll"  # sign a CSR from outside the vault (POST /api/cas/{ca}/sign-csr, EST enrollment)
ACTIONS = (ISSUE, RENEW, FORCE_RENEW, SIGN, CANCEL, INVENTORY, REVOKE, ENROLL)
ANY = "*"
FUNCTION_KEY = "function-key"
ENTRA = "entra"

PRINCIPAL_HEADER = "x-ms-client-principal"
MAX_PRINCIPAL_BYTES = 16 * 1024  # a principal with a few hundred claims; App Service caps headers well below 64 KB
# Claim types as Easy Auth writes them: its default claim mapping turns `oid` and `roles`
# into the long WS-Federation URIs (the page above: "claims go through default claim mapping").
OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
NAME_CLAIMS = ("name", "preferred_username", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
               "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "appid", "azp")
# Fields of an issue request that carry no name a rule must cover; any other field that is
# set makes a name-restricted rule refuse (fail closed when a new name field appears).
_NAMELESS_FIELDS = {"name", "ca", "profile", "key", "validity_months", "content_type"}


@dataclass(frozen=True)
class Caller:
    kind: str  # ENTRA | FUNCTION_KEY
    object_id: str = ""
    name: str = ""
    roles: tuple[str, ...] = ()

    def describe(self) -> str:
        """For log lines: the object id and name, never a token (kvca never reads the token headers)."""
        if self.kind == FUNCTION_KEY:
            return "caller=function-key"
        return f"caller=entra oid={self.object_id} name={self.name!r} roles={','.join(self.roles) or '-'}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "object_id": self.object_id, "name": self.name, "roles": list(self.roles)}

    def actor(self) -> str:
        """Who, as the ledger records it: the Entra object id (stable; a name can change), or
        "function-key" for a caller with no identity."""
        return f"entra:{self.object_id}" if self.kind == ENTRA and self.object_id else FUNCTION_KEY


@dataclass(frozen=True)
class Rule:
    source: str  # "role:<value>", "caller:<oid>", "function_key"
    actions: frozenset[str]
    cas: tuple[str, ...]
    dns_suffixes: tuple[str, ...]

    def covers_ca(self, ca: str) -> bool:
        return ANY in self.cas or ca in self.cas

    @property
    def any_name(self) -> bool:
        return ANY in self.dns_suffixes

    def covers_name(self, name: str) -> bool:
        """A DNS name (or a wildcard, by its base) at or below one suffix. Anything that is
        not a DNS name (an IP address, free text in a CN) only under "*"."""
        if self.any_name:
            return True
        dns = _dns_or_none(name)
        if dns is None:
            return False
        base = dns[2:] if dns.startswith("*.") else dns
        return any(base == s or base.endswith("." + s) for s in self.dns_suffixes)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # the rule that allowed it, or "" when refused
    reason: str


@dataclass(frozen=True)
class AccessRules:
    roles: Mapping[str, Rule] = field(default_factory=dict)
    callers: Mapping[str, Rule] = field(default_factory=dict)
    function_key: Rule | None = None
    configured: bool = False

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None) -> "AccessRules":
        """Raises ValueError naming every problem (the settings check reports them at start)."""
        if not data:
            return cls()
        problems: list[str] = []
        unknown = sorted(set(data) - {"roles", "callers", "function_key"})
        if unknown:
            problems.append(f"unknown key(s) {', '.join(map(repr, unknown))} (known: roles, callers, function_key)")
        parsed: dict[str, dict[str, Rule]] = {"roles": {}, "callers": {}}
        for section in ("roles", "callers"):
            entries = data.get(section, {})
            if not isinstance(entries, Mapping):
                problems.append(f"{section!r} must be an object of rules")
                continue
            for key, raw in entries.items():
                where = f"{section}[{key!r}]"
                if section == "callers" and not _is_object_id(key):
                    problems.append(f"{where}: a caller is named by its Entra object id (a GUID)")
                    continue
                rule = _rule(where, f"{'role' if section == 'roles' else 'caller'}:{key}", raw, problems)
                if rule is not None:
                    parsed[section][key if section == "roles" else key.lower()] = rule
        function_key = None
        if "function_key" in data:
            function_key = _rule("function_key", "function_key", data["function_key"], problems)
        if problems:
            raise ValueError("KVCA_ACCESS_RULES: " + "; ".join(problems))
        return cls(parsed["roles"], parsed["callers"], function_key, configured=True)

    def rules_for(self, caller: Caller) -> list[Rule]:
        rules = [self.function_key] if self.function_key is not None else []
        if caller.kind == ENTRA:
            rules += [self.roles[r] for r in caller.roles if r in self.roles]
            if caller.object_id.lower() in self.callers:
                rules.append(self.callers[caller.object_id.lower()])
        return rules

    def summary(self) -> dict[str, Any]:
        """What /api/health reports: the shape of the rules, no object ids."""
        return {
            "configured": self.configured,
            "roles": sorted(self.roles),
            "callers": len(self.callers),
            "function_key": sorted(self.function_key.actions) if self.function_key else [],
        }


def _is_object_id(text: Any) -> bool:
    if not isinstance(text, str) or len(text) != 36:
        return False
    try:
        int(text.replace("-", ""), 16)
    except ValueError:
        return False
    return [len(p) for p in text.split("-")] == [8, 4, 4, 4, 12]


def _dns_or_none(name: str) -> str | None:
    from kvca_core.signing.names import normalize_dns_name  # pure; late: signing imports errors only

    try:
        return normalize_dns_name(name)
    except KvcaError:
        return None


def _rule(where: str, source: str, raw: Any, problems: list[str]) -> Rule | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{where} must be an object with actions, cas and dns_suffixes")
        return None
    before = len(problems)
    unknown = sorted(set(raw) - {"actions", "cas", "dns_suffixes"})
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: actions, cas, dns_suffixes)")

    def strings(key: str) -> list[str]:
        value = raw.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            problems.append(f"{where}: {key!r} must be a non-empty list of strings")
            return []
        return value

    actions = strings("actions")
    bad = [a for a in actions if a not in ACTIONS]
    if bad:
        problems.append(f"{where}: unknown action(s) {', '.join(map(repr, bad))} (known: {', '.join(ACTIONS)})")
    cas = strings("cas")
    bad = [c for c in cas if c != ANY and not NAME_RE.match(c)]
    if bad:
        problems.append(f"{where}: {', '.join(map(repr, bad))} is not a CA name or '*'")
    suffixes = []
    for suffix in strings("dns_suffixes"):
        if suffix == ANY:
            suffixes.append(ANY)
            continue
        dns = _dns_or_none(suffix)
        if dns is None or dns.startswith("*."):
            problems.append(f"{where}: dns suffix {suffix!r} is not a DNS name (e.g. web.corp.internal) or '*'")
        else:
            suffixes.append(dns)
    if len(problems) > before:
        return None
    return Rule(source, frozenset(actions), tuple(cas), tuple(suffixes))


# --- the caller ----------------------------------------------------------------------------------
def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def caller_from_headers(headers: Mapping[str, str], *, trust_easy_auth: bool) -> tuple[Caller, str]:
    """(the caller, a note for the log). An untrusted principal header is ignored, not believed;
    a trusted one that cannot be read is refused (Easy Auth never writes such a header)."""
    raw = _header(headers, PRINCIPAL_HEADER)
    if raw is None:
        return Caller(FUNCTION_KEY), ""
    if not trust_easy_auth:
        return Caller(FUNCTION_KEY), (f"ignored an {PRINCIPAL_HEADER} header: KVCA_TRUST_EASY_AUTH is false, "
                                      f"so App Service authentication is not known to have written it")
    return parse_principal(raw), ""


def parse_principal(raw: str) -> Caller:
    def refuse(why: str) -> Forbidden:
        return Forbidden(f"the {PRINCIPAL_HEADER} header {why}", subject="request")

    if len(raw) > MAX_PRINCIPAL_BYTES:
        raise refuse(f"is {len(raw)} bytes (at most {MAX_PRINCIPAL_BYTES})")
    try:
        text = base64.b64decode(raw.strip() + "=" * (-len(raw.strip()) % 4), validate=True)
        data = jsontext.loads(text, what="the principal", limit=8)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise refuse("is not base64 of JSON") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("claims"), list):
        raise refuse("has no claims list")
    if data.get("auth_typ") != "aad":
        raise refuse(f"names identity provider {str(data.get('auth_typ'))[:40]!r}; only Entra ID ('aad') is accepted")
    claims: dict[str, list[str]] = {}
    for claim in data["claims"]:
        if isinstance(claim, Mapping) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str):
            claims.setdefault(claim["typ"], []).append(claim["val"])
    role_types = list(ROLE_CLAIMS)
    if isinstance(data.get("role_typ"), str):
        role_types.insert(0, data["role_typ"])
    object_id = next((v for t in OBJECT_ID_CLAIMS for v in claims.get(t, ())), "")
    if not _is_object_id(object_id):
        raise refuse("carries no Entra object id (oid claim)")
    roles = tuple(dict.fromkeys(v for t in role_types for v in claims.get(t, ()) if 0 < len(v) <= 120))
    name_types = ([data["name_typ"]] if isinstance(data.get("name_typ"), str) else []) + list(NAME_CLAIMS)
    name = next((v for t in name_types for v in claims.get(t, ())), "")
    return Caller(ENTRA, object_id.lower(), name[:120], roles)


# --- decisions -----------------------------------------------------------------------------------
def _decide(caller: Caller, rules: AccessRules, action: str, ca: str | None,
            names: Sequence[str] | None, unchecked: Sequence[str] = ()) -> Decision:
    """`names` None: not asked yet (`may_attempt`); empty: the certificate names nothing a
    name-restricted rule can cover, so only a rule for every name ("*") allows it."""
    if not rules.configured:
        return Decision(True, "no-rules", "no KVCA_ACCESS_RULES: every function-key holder may do everything")
    candidates = [r for r in rules.rules_for(caller) if action in r.actions]
    if not candidates:
        return Decision(False, "", f"no rule lets this caller {action}")
    reasons = []
    for rule in candidates:
        if ca is not None and not rule.covers_ca(ca):
            reasons.append(f"{rule.source}: CA {ca!r} is not one of {', '.join(rule.cas)}")
            continue
        if unchecked and not rule.any_name:
            reasons.append(f"{rule.source}: field(s) {', '.join(unchecked)} carry names this rule cannot check")
            continue
        if names is not None and not names and not rule.any_name:
            reasons.append(f"{rule.source}: the certificate names no host this rule covers "
                           f"({', '.join(rule.dns_suffixes)})")
            continue
        outside = [n for n in names or () if not rule.covers_name(n)]
        if outside:
            reasons.append(f"{rule.source}: {outside[0][:80]!r} is outside {', '.join(rule.dns_suffixes)}")
            continue
        return Decision(True, rule.source, f"allowed by {rule.source}")
    return Decision(False, "", "; ".join(reasons))


def _subject_cns(subject: str | None) -> list[str]:
    if not subject:
        return []
    from kvca_core.signing.names import parse_subject  # pure

    try:
        name = parse_subject(subject)
    except KvcaError:
        return [subject]  # unreadable: checked as a name, so only "*" covers it
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def decide_issue(caller: Caller, rules: AccessRules, request: Any) -> Decision:
    """`request`: an operations.IssueRequest. Every DNS name and the subject's CN must be covered."""
    names = list(getattr(request, "dns_names", ())) + _subject_cns(getattr(request, "subject", None))
    unchecked = []
    for f in fields(request):
        if f.name in _NAMELESS_FIELDS or f.name in ("dns_names", "subject"):
            continue
        if getattr(request, f.name) != f.default:
            unchecked.append(f.name)
    return _decide(caller, rules, ISSUE, request.ca, names, unchecked)


def certificate_names(*, subject: str | None, dns_names: Iterable[str] = (), ip_addresses: Iterable[str] = (),
                      emails: Iterable[str] = (), uris: Iterable[str] = ()) -> list[str]:
    """Every name a certificate carries, as rules check them: its subject's CNs, DNS names, IP
    addresses (only "*" covers one), email and UPN addresses by their domain, URIs by their host. The
    subject's other attributes (O, OU, ...) name no host: a certificate named only by them names
    nothing a suffix rule covers."""
    addresses = [a.rpartition("@")[2] or a for a in emails]
    hosts = [(urlsplit(u).hostname or u) if "://" in u else u for u in uris]
    return list(dns_names) + list(ip_addresses) + addresses + hosts + _subject_cns(subject)


def scope_names(certificate: x509.Certificate | None = None, *, tags: Mapping[str, str] | None = None,
                policy: Any = None) -> list[str]:
    """Every name the rules check for an existing certificate: what its `certificate` carries (subject
    CNs and every SAN), the URIs and IP addresses its `tags` add (vocabulary.tagged_names) and what its
    Key Vault `policy` names (the next version's subject, DNS names, emails and UPNs), each when given.
    A rule covers the certificate only when it covers all of them; a SAN of a kind no rule can read
    (otherName, directoryName, ...) is kept as a name only "*" covers."""
    from kvca_core.ledger.records import san_strings  # pure

    names: list[str] = []
    if certificate is not None:
        names += certificate_names(subject=certificate.subject.rfc4514_string(),
                                   **san_names(san_strings(certificate)))
        names += [f"({type(n).__name__})" for n in _sans_of(certificate) if not isinstance(n, _READABLE_SANS)]
    uris, ips = tagged_names(tags or {})
    names += certificate_names(subject=None, uris=uris, ip_addresses=ips)
    if policy is not None:
        names += certificate_names(subject=policy.subject, dns_names=policy.dns_names,
                                   emails=list(policy.emails) + list(policy.upns))
    return list(dict.fromkeys(names))


_READABLE_SANS = (x509.DNSName, x509.IPAddress, x509.RFC822Name, x509.UniformResourceIdentifier)


def _sans_of(certificate: x509.Certificate) -> list[Any]:
    try:
        return list(certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def san_names(sans: Iterable[str]) -> dict[str, list[str]]:
    """The ledger's "DNS:..", "IP:..", "URI:..", "email:.." SANs sorted into certificate_names' keywords."""
    kinds = {"DNS:": "dns_names", "IP:": "ip_addresses", "URI:": "uris", "email:": "emails"}
    out: dict[str, list[str]] = {v: [] for v in kinds.values()}
    for san in sans:
        for prefix, key in kinds.items():
            if san.startswith(prefix):
                out[key].append(san[len(prefix):])
    return out


def decide_certificate(caller: Caller, rules: AccessRules, action: str, *, ca: str, names: Sequence[str]) -> Decision:
    """An action on an existing certificate: its CA (tag kvca-ca) and the names it carries."""
    return _decide(caller, rules, action, ca or "(no kvca-ca tag)", names)


def may_attempt(caller: Caller, rules: AccessRules, action: str) -> Decision:
    """Before reading anything from the vault: does any rule grant the action at all?"""
    return _decide(caller, rules, action, None, None)


def visible(caller: Caller, rules: AccessRules, *, ca: str, names: Sequence[str]) -> bool:
    """Whether an inventory item is shown to the caller: an inventory rule covers its CA and every name
    in `names` (scope_names of the item)."""
    return _decide(caller, rules, INVENTORY, ca, names).allowed


def refuse(caller: Caller, action: str, decision: Decision, subject: str) -> Forbidden:
    return Forbidden(f"{action} is not allowed for this caller ({decision.reason})", subject=subject,
                     hint="KVCA_ACCESS_RULES decides; GET /api/health shows who you are to kvca")


__all__ = ["ACTIONS", "AccessRules", "Caller", "Decision", "Rule", "caller_from_headers", "decide_certificate",
           "decide_issue", "may_attempt", "parse_principal", "scope_names", "refuse", "visible", "certificate_names",
           "san_names"]
