"""kvca's words in the vault: the tags it reads and writes, the roles of CA certificates, the names
it derives from a CA's name, and the one rule for an object name. Pure: no I/O.

Every module that reads a tag, a role or a derived name takes it from here, so that "is a CA",
"`<CA>-root`" or "a valid certificate name" mean one thing everywhere.

A CA named NAME is two Key Vault certificates (docs/design.md, "A CA in the vault"):

- `NAME-root` (ROOT_SUFFIX): the self-signed root, tag kvca-role=root, made only by `kvca ca create`;
- `NAME`: the intermediate that signs leaves, tag kvca-role=intermediate;

and next to them the secret `NAME-policy` (POLICY_SUFFIX) holding its issuance policy. Leaves carry
the tag kvca-ca=NAME.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from kvca_core.errors import InvalidRequest

# --- tags ----------------------------------------------------------------------------------------
# The tag that makes a certificate kvca's: its value names the issuing CA's certificate in the
# same vault.
CA_TAG = "kvca-ca"
# Tag on CA certificates themselves (ROOT or INTERMEDIATE); kvca never renews a CA by itself.
ROLE_TAG = "kvca-role"
# Tag on the objects `kvca ca create` is still building; its value is the role they will get.
CREATING_TAG = "kvca-creating"
# A revoked version's mirror of its ledger record (kvca_core/revocation/revoke.py): the RFC 5280 reason,
# when (ISO 8601 UTC) and the serial (hex). The version is also disabled.
REVOKED_TAG = "kvca-revoked"
REVOKED_AT_TAG = "kvca-revoked-at"
REVOKED_SERIAL_TAG = "kvca-revoked-serial"
# The record belongs to the revoked version alone: a new version (a renewal, the replacement of a
# revoked certificate) never takes these over from the version before it.
REVOCATION_TAGS = (REVOKED_TAG, REVOKED_AT_TAG, REVOKED_SERIAL_TAG)
# Tag on a leaf: whether its merged chain ends with the root ("with-root") or stops at the last
# intermediate ("without-root"). A tag because Key Vault's policy has no field for it, and tags
# travel with every version kvca makes (renewals pass them on), so the choice made at issue time
# holds across renewals. Absent: the profile's default (operations/common.py).
CHAIN_TAG = "kvca-chain"
CHAIN_WITH_ROOT, CHAIN_WITHOUT_ROOT = "with-root", "without-root"
# Tags on a leaf: the URI and IP address SANs kvca adds when it signs, separated by spaces (a URI
# holds no space, RFC 3986 2; an address none either). Tags because Key Vault's policy cannot carry
# them: x509_props.sans has dns_names, emails and upns only (docs/keyvault-behaviour.md,
# "Certificate policy"), so the vault's CSR never asks for them. Like CHAIN_TAG they are passed on
# to every new version, so renewals keep them; the signer checks them exactly as CSR names
# (allow_uri / allow_ip, allowed domains, the CA's name constraints). Key Vault allows 15 tags per
# object with values of at most 256 characters, hence TAG_VALUE_MAX.
URIS_TAG = "kvca-uris"
IPS_TAG = "kvca-ips"
TAG_VALUE_MAX = 256
MAX_TAGS = 15
# On a CA's current version: the version of the secret `<CA>-policy` that holds the CA's issuance
# policy. A version id rather than the policy itself: a tag value holds 256 characters at most,
# and a secret version never changes, so every signer reads it once per version and caches it.
POLICY_TAG = "kvca-policy"
# On a CA version kvca warned about (kvca_core/notify.py): "<UTC date> <expiring|expired>", the day
# a webhook was last told, so that the sweeps of one day (and every instance) tell it once.
NOTIFIED_TAG = "kvca-notified"
# On a leaf version kvca signed: the version of the CA certificate whose key signed it, written at
# the merge. After `kvca ca rotate` the sweep moves every leaf whose tag names another version than
# the CA's current one (lifecycle.moved). 32 hex characters: well inside 256 per tag value.
CA_VERSION_TAG = "kvca-ca-version"
# On a CA version made by `kvca ca rotate`: when it was rotated (ISO 8601 UTC, seconds). The sweep's
# window for moving leaves starts here; a CA version without it was not rotated.
ROTATED_TAG = "kvca-rotated"

# --- roles ---------------------------------------------------------------------------------------
ROOT, INTERMEDIATE = "root", "intermediate"
ROLES = (ROOT, INTERMEDIATE)


def role_of(tags: Mapping[str, str] | None) -> str | None:
    """The role a version's ROLE_TAG gives it: ROOT, INTERMEDIATE, or None when it has no role tag.
    A role tag with any other value (vault data kvca did not write) is still a CA object that kvca
    never renews, and is reported as its raw value so that messages can name it."""
    value = (tags or {}).get(ROLE_TAG)
    return value if value else None


def is_ca_object(tags: Mapping[str, str] | None) -> bool:
    """Whether kvca treats the version as a CA certificate (any role tag): it is never renewed,
    listed or revoked as a leaf. CA warnings and CRLs concern only the roles kvca writes (ROLES)."""
    return role_of(tags) is not None


# --- derived names -------------------------------------------------------------------------------
ROOT_SUFFIX = "-root"
POLICY_SUFFIX = "-policy"
UNKNOWN_ISSUER = "Unknown"  # Key Vault's non-integrated CA: what every kvca-managed policy names


def root_name(ca: str) -> str:
    return f"{ca}{ROOT_SUFFIX}"


def policy_name(ca: str) -> str:
    return f"{ca}{POLICY_SUFFIX}"


def ca_of_root(name: str) -> str | None:
    """CA NAME for its root `NAME-root`, else None."""
    return name[: -len(ROOT_SUFFIX)] if name.lower().endswith(ROOT_SUFFIX) and len(name) > len(ROOT_SUFFIX) else None


# --- the name rule -------------------------------------------------------------------------------
# Key Vault object names: 1-127 of [0-9a-zA-Z-] (REST API specification, the certificate-name and
# secret-name patterns). Names are case-insensitive in the vault: `Api` and `api` are one object.
NAME_RE = re.compile(r"^[0-9A-Za-z-]{1,127}$")
MAX_NAME = 127


def name_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not NAME_RE.match(value):
        return "is not a Key Vault object name (1-127 letters, digits and hyphens)"
    return None


def check_name(value: Any, what: str = "certificate") -> str:
    """`value` as a Key Vault object name, or InvalidRequest in one wording for every caller:
    "certificate name 'a b' is not a Key Vault object name (...)". `what`: certificate, CA."""
    problem = name_problem(value)
    if problem:
        raise InvalidRequest(f"{what} name {str(value)[:130]!r} {problem}", subject=what)
    return value


def check_free(name: str, what: str = "certificate") -> str:
    """A certificate or CA may not be named like a CA's policy secret: a certificate owns the secret
    of its own name, so `<CA>-policy` could then never be written (or would shadow it). A CA's
    derived names must fit Key Vault's 127 characters too."""
    check_name(name, what)
    if name.lower().endswith(POLICY_SUFFIX):
        raise InvalidRequest(f"{what} name {name!r} ends in {POLICY_SUFFIX!r}, which kvca reserves for the "
                             f"secrets holding CAs' issuance policies", subject=f"{what} '{name}'",
                             hint="choose another name")
    if what == "CA":
        longest = max((root_name(name), policy_name(name)), key=len)
        if len(longest) > MAX_NAME:
            raise InvalidRequest(f"CA name {name!r} is too long: '{longest}' must fit in {MAX_NAME} characters",
                                 subject=f"CA '{name}'")
    return name


def same_name(a: str, b: str) -> bool:
    """Key Vault names are case-insensitive."""
    return a.lower() == b.lower()


def tagged_names(tags: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(URI SANs, IP address SANs) a certificate asks for through URIS_TAG and IPS_TAG (see above
    why tags). Untrusted: the signer checks each like a name from the CSR."""
    return tuple((tags.get(URIS_TAG) or "").split()), tuple((tags.get(IPS_TAG) or "").split())
