"""A CA's issuance policy, stored in the vault with the CA.

A CA's rules must be the same whoever signs: the Functions app, the HTTP API or
a CLI run on a laptop. So the policy lives in the vault next to the CA:

- the secret `<CA>-policy` (vocabulary.policy_name), content type application/json,
  holds `{"version": 1, "ca": "<CA>", "policy": {...IssuancePolicy fields...}}`;
- the CA's current version carries the tag `kvca-policy` (model.POLICY_TAG) naming
  the secret's version that is in force. A tag holds at most 256 characters
  (docs/keyvault-behaviour.md), too little for a policy, but enough for a version id.

Resolution, for every signer (`resolve`):

- tag present: that stored policy, and KVCA_ISSUANCE_POLICY is ignored for the CA.
  A tag whose secret version is missing, unreadable or invalid refuses signing; it
  never falls back to the (possibly looser) setting;
- no tag: KVCA_ISSUANCE_POLICY's entry for the CA, or "*" (signing/policy.py), as
  before: the setting is only a default for CAs that have no policy of their own.

A secret version never changes, so a signer caches the parsed policy by (CA, secret
version) (`PolicyCache`). The signer reads the CA's current version on every load
anyway (authority.py), so in steady state the policy costs no vault call; a
`kvca ca policy set` re-tags the CA and takes effect at the next signing.

`set_policy` writes in the order that never leaves a CA pointing at nothing:
validate, write a new secret version, then re-tag the CA's current version (with
all its other tags: Key Vault's PATCH replaces the whole tag set).
"""

from __future__ import annotations

import json

from kvca_core import jsontext
import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from cryptography import x509

from kvca_core.errors import ConfigurationError, InvalidRequest, NotFound, PolicyViolation
from kvca_core.ports import Vault
from kvca_core.vocabulary import CA_TAG, POLICY_TAG, ROOT, check_name, policy_name, role_of
from kvca_core.signing.names import within_domain
from kvca_core.signing.policy import SETTING, IssuancePolicy, bare_domain, policy_for_ca

logger = logging.getLogger(__name__)

FORMAT = 1  # the "version" field of the stored JSON
CONTENT_TYPE = "application/json"
# A policy is a few hundred bytes; Key Vault takes secrets up to 25 KB. Anything far larger
# in the vault is not kvca's and is refused before parsing.
MAX_CHARS = 16 * 1024
# Key Vault's object versions are 32 hex digits; a tag value is vault data (untrusted), checked
# before it becomes part of a URL.
_VERSION_RE = re.compile(r"^[0-9a-fA-F]{32}$")
# JSON's "source": the policy kept with the CA, the setting's default, or none at all.
STORED, DEFAULT, NONE = "stored", "default", "none"
_SOURCE_TEXT = {STORED: "stored", DEFAULT: f"default ({SETTING})", NONE: "none"}


secret_name = policy_name  # `<CA>-policy` (vocabulary.py)


def _ca(ca: str) -> str:
    return f"CA '{ca}'"


def _check_ca_name(ca: Any) -> str:
    return check_name(ca, "CA")


def _set_hint(ca: str) -> str:
    return f"store one: kvca ca policy set {ca} --policy policy.json"


@dataclass(frozen=True)
class EffectivePolicy:
    """The policy a CA signs under now, and where it comes from (JSON: `ca_policy`)."""

    OBJECT = "ca_policy"

    ca: str
    source: str  # STORED | DEFAULT | NONE
    secret_version: str | None
    policy: IssuancePolicy | None
    notes: tuple[str, ...] = ()

    @property
    def source_text(self) -> str:
        text = _SOURCE_TEXT[self.source]
        return f"{text} (secret {secret_name(self.ca)}, version {self.secret_version})" \
            if self.source == STORED else text

    def to_dict(self) -> dict[str, Any]:
        return {"ca": self.ca, "source": self.source, "secret_version": self.secret_version,
                "policy": self.policy.to_mapping() if self.policy is not None else None}


# --- validating and encoding ---------------------------------------------------------------------
def policy_fields(mapping: Any) -> Any:
    """The policy's fields, also out of what `kvca ca policy show --json` prints (the `ca_policy`
    document, so a shown policy can be edited and set again) and out of the stored secret's
    envelope. Anything else is returned as it is, for parse_policy to judge."""
    if isinstance(mapping, Mapping) and isinstance(mapping.get("policy"), Mapping) \
            and set(mapping) <= {"ca", "source", "secret_version", "policy", "version", "schema_version", "object"}:
        return mapping["policy"]
    return mapping


def parse_policy(mapping: Any, *, what: str = "issuance policy") -> IssuancePolicy:
    """A policy a person gave (CLI, file): every field checked, unknown fields refused (a typo
    must not loosen a policy)."""
    mapping = policy_fields(mapping)
    try:
        return IssuancePolicy.from_mapping(mapping)
    except ConfigurationError as exc:
        raise InvalidRequest(exc.message, subject=what, hint=exc.hint) from None


def encode(ca: str, policy: IssuancePolicy) -> str:
    return json.dumps({"version": FORMAT, "ca": ca, "policy": policy.to_stored()}, sort_keys=True)


def decode(ca: str, version: str | None, content_type: str, text: str) -> IssuancePolicy:
    """The stored policy of `ca` (vault data: checked like any untrusted input)."""
    where = f"{_ca(ca)}: issuance policy secret '{secret_name(ca)}' version {version}"

    def refuse(problem: str) -> PolicyViolation:
        return PolicyViolation(f"{problem}; kvca refuses to sign rather than fall back to {SETTING}",
                               subject=where, hint=_set_hint(ca))

    if (content_type or "").split(";")[0].strip().lower() != CONTENT_TYPE:
        raise refuse(f"content type is {content_type or 'missing'!r}, not {CONTENT_TYPE}")
    if len(text) > MAX_CHARS:
        raise refuse(f"holds {len(text)} characters, more than the {MAX_CHARS} a policy takes")
    try:
        data = jsontext.loads(text, what="the stored policy")
    except json.JSONDecodeError as exc:
        raise refuse(f"is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except ValueError as exc:  # nested too deeply, or a key given twice
        raise refuse(str(exc)) from None
    if not isinstance(data, dict) or set(data) != {"version", "ca", "policy"}:
        raise refuse('is not a kvca policy (expected {"version", "ca", "policy"})')
    if data["version"] != FORMAT:
        raise refuse(f"has format version {str(data['version'])[:20]!r}; this kvca reads version {FORMAT}")
    if not isinstance(data["ca"], str) or data["ca"].lower() != ca.lower():
        raise refuse(f"belongs to CA {str(data['ca'])[:130]!r}")
    try:
        return IssuancePolicy.from_mapping(data["policy"])
    except ConfigurationError as exc:
        raise refuse(exc.message) from None


# --- reading (every signer) ----------------------------------------------------------------------
class PolicyCache:
    """Parsed stored policies by (CA, secret version): a version never changes, so an entry never
    goes stale. Failures are not cached: a fixed secret is read at the next signing."""

    LIMIT = 256  # versions kept; a process signs for a handful of CAs

    def __init__(self) -> None:
        self._policies: dict[tuple[str, str], IssuancePolicy] = {}

    async def read(self, vault: Vault, ca: str, version: str) -> IssuancePolicy:
        key = (ca.lower(), version.lower())
        found = self._policies.get(key)
        if found is not None:
            return found
        name = secret_name(ca)
        if not _VERSION_RE.match(version):
            raise PolicyViolation(f"its tag {POLICY_TAG}={version[:64]!r} is not a secret version id; kvca "
                                  f"refuses to sign rather than fall back to {SETTING}", subject=_ca(ca),
                                  hint=_set_hint(ca))
        try:
            secret = await vault.get_secret(name, version)
        except NotFound:
            raise NotFound(f"its tag {POLICY_TAG} names version {version} of the secret '{name}', which the vault "
                           f"does not hold; kvca refuses to sign rather than fall back to {SETTING}",
                           subject=_ca(ca), hint=_set_hint(ca)) from None
        policy = decode(ca, secret.version or version, secret.content_type, secret.value)
        if len(self._policies) >= self.LIMIT:
            self._policies.clear()
        self._policies[key] = policy
        logger.info("kvca read stored issuance policy ca=%s secret=%s version=%s", ca, name, version)
        return policy


async def policy_of(vault: Vault, cache: PolicyCache, setting: Mapping[str, Any] | None, ca: str,
                    tags: Mapping[str, str]) -> IssuancePolicy:
    """The policy `ca` signs under, given the tags of its current version (module docstring);
    PolicyViolation / NotFound when it has none or its stored one cannot be used."""
    version = tags.get(POLICY_TAG)
    if version is not None:
        return await cache.read(vault, ca, version)
    return policy_for_ca(setting, ca)


async def resolve(vault: Vault, cache: PolicyCache, setting: Mapping[str, Any] | None, ca: str,
                  tags: Mapping[str, str]) -> EffectivePolicy:
    """`policy_of` with its source, for `kvca ca policy show`; a CA without any policy is NONE."""
    version = tags.get(POLICY_TAG)
    try:
        policy = await policy_of(vault, cache, setting, ca, tags)
    except PolicyViolation:
        if version is not None:
            raise  # a broken stored policy is an error to show, not "none"
        return EffectivePolicy(ca, NONE, None, None)
    return EffectivePolicy(ca, STORED if version is not None else DEFAULT, version, policy)


# --- writing -------------------------------------------------------------------------------------
async def store(vault: Vault, ca: str, policy: IssuancePolicy) -> str:
    """The secret version holding `policy` for `ca`: the current one when it already holds exactly
    this policy (a re-run of `ca create` writes nothing new), otherwise a new version."""
    name = secret_name(ca)
    text = encode(ca, policy)
    try:
        current = await vault.get_secret(name)
    except NotFound:
        current = None
    if current is not None and current.version and current.content_type == CONTENT_TYPE and current.value == text:
        return current.version
    written = await vault.set_secret(name, text, content_type=CONTENT_TYPE, tags={CA_TAG: ca})
    logger.info("kvca stored issuance policy ca=%s secret=%s version=%s", ca, name, written.version)
    return written.version or ""


def constraint_problem(policy: IssuancePolicy, cert: x509.Certificate) -> str | None:
    """Whether the CA certificate's permitted DNS subtrees leave the policy nothing to allow:
    every allowed domain and name lies outside all of them (a policy that issues nothing)."""
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    permitted = [bare_domain(g.value) for g in (nc.permitted_subtrees or ()) if isinstance(g, x509.DNSName)]
    entries = [bare_domain(e) for e in (*policy.allowed_domains, *policy.allowed_names)]
    if not permitted or not entries:
        return None
    if any(within_domain(e, p) or within_domain(p, e) for e in entries for p in permitted):
        return None
    return (f"no allowed domain or name ({', '.join(entries)}) lies within the CA's name constraints "
            f"(permitted: {', '.join(permitted)}), so the CA could issue nothing")


async def _ca_version(vault: Vault, ca: str):
    """The CA's current version, with its certificate; refused unless it is a CA that may sign
    leaves (a leaf, a root or a half-made CA has no issuance policy)."""
    from kvca_core.authority import read_certificate  # authority.py imports this module
    from kvca_core.signing.certs import is_ca_certificate, is_self_signed

    try:
        current = await vault.get_certificate(ca)
    except NotFound:
        raise NotFound("no CA certificate of this name in the vault", subject=_ca(ca),
                       hint="create it with `kvca ca create` or import it with `kvca ca import`") from None
    cert = read_certificate(current.cer, _ca(ca)) if current.cer else None
    if cert is None or role_of(current.tags) == ROOT or not is_ca_certificate(cert) \
            or is_self_signed(cert):
        raise InvalidRequest("is not an issuing CA (a leaf, a root, or no completed version): only a CA "
                             "that signs leaves has an issuance policy", subject=_ca(ca))
    return current, cert


async def show_policy(ctx, ca: str) -> EffectivePolicy:
    """The policy `ca` signs under now, and its source (`kvca ca policy show`)."""
    _check_ca_name(ca)
    current, _ = await _ca_version(ctx.vault, ca)
    return await resolve(ctx.vault, ctx.authority.policies, ctx.settings.issuance_policy, ca, current.tags)


async def set_policy(ctx, ca: str, mapping: Any) -> EffectivePolicy:
    """Validate `mapping`, store it as a new version of `<CA>-policy` and point the CA at it
    (`kvca ca policy set`). Nothing is written unless the policy is valid."""
    _check_ca_name(ca)
    policy = parse_policy(mapping, what=f"{_ca(ca)}: issuance policy")
    current, cert = await _ca_version(ctx.vault, ca)
    problem = constraint_problem(policy, cert)
    if problem:
        raise PolicyViolation(problem, subject=_ca(ca), hint="allow names inside the CA's permitted DNS subtrees")
    version = await store(ctx.vault, ca, policy)
    for _ in range(3):
        tags = {**current.tags, POLICY_TAG: version}
        if tags != dict(current.tags):
            # The whole tag set goes back: Key Vault's PATCH replaces tags, it does not merge them.
            await ctx.vault.update_properties(ca, current.version, tags=tags)
        # A new CA version made meanwhile (a rotation copies the tags it read) would sign under
        # the old policy: read the current version again and tag that one too.
        latest, _ = await _ca_version(ctx.vault, ca)
        if latest.version == current.version or latest.tags.get(POLICY_TAG) == version:
            break
        current = latest
    logger.info("kvca set issuance policy ca=%s ca_version=%s secret_version=%s", ca, current.version, version)
    return EffectivePolicy(ca, STORED, version, policy)


# --- a new CA's policy (`ca create`, `ca import`) ------------------------------------------------
def policy_for_new_ca(setting: Mapping[str, Any] | None, ca: str, given: Any,
                      permitted_dns: Sequence[str] = ()) -> tuple[IssuancePolicy | None, str]:
    """What `ca create` / `ca import` store when the CA is complete, and a note saying so. Checked
    before the first vault write. Without --policy: the setting's default for this CA when it
    has one (what signers used so far), else the name constraints as allowed domains, else none
    (the CA issues nothing until `kvca ca policy set`, unless a signer's setting has an entry)."""
    if given is not None:
        return parse_policy(given, what=f"{_ca(ca)}: issuance policy"), "issuance policy stored with the CA"
    try:
        return policy_for_ca(setting, ca), f"no --policy: stored {SETTING}'s policy for this CA with the CA"
    except PolicyViolation:
        pass
    if permitted_dns:
        domains = tuple(bare_domain(d) for d in permitted_dns)
        return IssuancePolicy(allowed_domains=domains), \
            f"no --policy: stored a policy allowing {', '.join(domains)} (the name constraints), other fields default"
    return None, (f"no issuance policy stored: the CA issues nothing until `kvca ca policy set {ca}` "
                  f"(or a signer's {SETTING} has an entry for it)")


__all__ = ["CONTENT_TYPE", "DEFAULT", "EffectivePolicy", "FORMAT", "NONE", "PolicyCache", "STORED",
           "constraint_problem", "decode", "encode", "parse_policy", "policy_fields", "policy_for_new_ca",
           "policy_of", "resolve", "secret_name", "set_policy", "show_policy", "store"]
