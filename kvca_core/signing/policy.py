"""The issuance policy of a CA and the certificate profiles it may issue.

A policy is a small declarative object, loaded from JSON (the app setting
KVCA_ISSUANCE_POLICY) or a mapping. Every CA that signs needs one (its own
entry or "*"); a CA without one is refused. A policy's field defaults keep the
manual recipe working: DNS names only, no IP/email/URI SANs, at most 398 days,
wildcards allowed (the recipe issues them) unless turned off. Whatever a policy
says, the CA certificate's own name constraints are enforced as well
(see names.check_name_constraints).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kvca_core.errors import ConfigurationError, PolicyViolation
from kvca_core.signing.names import LDH_LABEL

# The setting a policy comes from, for error messages.
SETTING = "KVCA_ISSUANCE_POLICY"


class Profile(str, enum.Enum):
    """What a leaf is for; decides its extendedKeyUsage."""

    SERVER = "server"  # serverAuth: TLS servers
    CLIENT = "client"  # clientAuth: mTLS clients, MQTT clients of Event Grid namespaces
    SERVER_CLIENT = "server-client"  # both (Key Vault's default policy asks for both)

    def __str__(self) -> str:  # "server", not "Profile.SERVER", in messages
        return self.value

    @property
    def ekus(self) -> tuple[x509.ObjectIdentifier, ...]:
        return {
            Profile.SERVER: (ExtendedKeyUsageOID.SERVER_AUTH,),
            Profile.CLIENT: (ExtendedKeyUsageOID.CLIENT_AUTH,),
            Profile.SERVER_CLIENT: (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        }[self]

    @classmethod
    def parse(cls, value: "str | Profile") -> "Profile":
        if isinstance(value, Profile):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise PolicyViolation(f"profile {value!r} is not one of {', '.join(p.value for p in cls)}",
                                  step="check-names") from None


# The profiles an issuance policy may allow: every one. No profile holds OCSPSigning: kvca's OCSP
# answers are signed by the CA itself (kvca_core/revocation/responder.py), and a leaf holding it
# would speak for the CA about every certificate.
LEAF_PROFILES = tuple(Profile)

_EKU_NAMES = {
    "serverauth": ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
    "clientauth": ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,
}
_EKU_LABELS = {
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING.dotted_string: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string: "anyExtendedKeyUsage",
}


def _dotted(eku: str | x509.ObjectIdentifier) -> str:
    dotted = eku.dotted_string if isinstance(eku, x509.ObjectIdentifier) else str(eku).strip()
    return _EKU_NAMES.get(dotted.lower(), dotted)


# Key Vault's own EKUs: a policy created without any reads back serverAuth + clientAuth, even
# when it gives a key usage (Python SDK recording test_merge_certificate, API 7.3; .NET session
# DownloadECDsaCertificateSignRemoteVerifyLocal, API 7.2), and its CSR asks for both. A portal
# request for a "server" certificate therefore asks for exactly this pair: the pair is what
# Key Vault filled in, not a choice the requester made.
KEY_VAULT_DEFAULT_EKUS = frozenset({ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
                                    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string})


def is_key_vault_default(ekus: Iterable[str | x509.ObjectIdentifier]) -> bool:
    """Whether `ekus` are exactly Key Vault's default pair (in either order, each once)."""
    dotted = [_dotted(e) for e in ekus]
    return len(dotted) == len(KEY_VAULT_DEFAULT_EKUS) and set(dotted) == KEY_VAULT_DEFAULT_EKUS


def profile_from_ekus(ekus: Iterable[str | x509.ObjectIdentifier]) -> Profile:
    """The profile that the EKUs a Key Vault policy (or CSR) requested ask for.

    Accepts dotted OIDs as Key Vault stores them ("1.3.6.1.5.5.7.3.1"), the
    names serverAuth/clientAuth, or ObjectIdentifiers. No EKUs at all: `server`
    (least privilege; Key Vault's default policy always lists both). Any other
    EKU (codeSigning, anyExtendedKeyUsage, ...) is refused rather than dropped,
    so nobody receives a certificate that silently lacks what they asked for.
    """
    wanted: set[str] = set()
    for eku in ekus:
        dotted = _dotted(eku)
        if dotted not in (ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
                          ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string):
            label = _EKU_LABELS.get(dotted, dotted)
            raise PolicyViolation(f"extended key usage {label!r} is not issued by kvca "
                                  f"(profiles: server, client, server-client)", step="check-names")
        wanted.add(dotted)
    server = ExtendedKeyUsageOID.SERVER_AUTH.dotted_string in wanted
    client = ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string in wanted
    if server and client:
        return Profile.SERVER_CLIENT
    if client:
        return Profile.CLIENT
    return Profile.SERVER


# The policy fields that are lists of strings (normalised to lower-case tuples).
_LIST_FIELDS = ("allowed_domains", "allowed_names", "key_types", "profiles", "cn_forms", "external_profiles")

# Key kinds a policy can allow. RSA size is checked separately (min_rsa_bits).
# P-256K (secp256k1), which Key Vault also offers, is left out on purpose: TLS 1.3
# defines no signature scheme for it (RFC 8446 4.2.3) and RFC 8422 dropped it
# from TLS 1.2, so OpenSSL TLS clients cannot use a certificate on that curve.
KEY_TYPES = ("rsa", "ec-p256", "ec-p384", "ec-p521")

# What a leaf's CN may be. "device-id": a plain device ID such as "device-001", for client
# certificates only: Event Grid's MQTT broker can name a client by its subject (docs/keyvault-behaviour.md,
# "What consumers need"), and such a CN is no DNS name, so it is not repeated as a SAN.
# Off by default: a single-label CN is more often a typo for a host name.
CN_FORMS = ("dns-name", "ip-address", "device-id")

# The CA/B Forum's 398-day cap (Baseline Requirements 6.3.2) is what Apple,
# Chrome and Mozilla enforce for TLS servers: the default maximum follows it.
DEFAULT_MAX_VALIDITY_DAYS = 398
DEFAULT_VALIDITY_DAYS = 365
# Upper bound for the day counts: 100 years, as issue.MAX_VALIDITY_MONTHS. A larger
# value would overflow datetime arithmetic at issuance instead of being refused here.
MAX_DAYS = 36525


@dataclass(frozen=True)
class IssuancePolicy:
    """What one CA may issue. Every field has a safe default."""

    # DNS names: a name is allowed when it equals one of allowed_names, or is
    # (or is under) one of allowed_domains. Both empty: any syntactically valid name.
    allowed_domains: tuple[str, ...] = ()
    allowed_names: tuple[str, ...] = ()
    allow_wildcards: bool = True
    allow_ip: bool = False
    allow_email: bool = False
    allow_uri: bool = False
    max_sans: int = 100
    max_validity_days: int = DEFAULT_MAX_VALIDITY_DAYS
    # Used when the request names no lifetime (Key Vault's policies always do: validity_months).
    # None: 365 days, or max_validity_days when that is shorter.
    default_validity_days: int | None = None
    key_types: tuple[str, ...] = KEY_TYPES
    min_rsa_bits: int = 2048
    profiles: tuple[str, ...] = tuple(p.value for p in LEAF_PROFILES)
    cn_forms: tuple[str, ...] = ("dns-name", "ip-address")
    # CSRs from outside the vault (`kvca sign-csr`, POST /api/cas/{ca}/sign-csr, EST enrollment):
    # a device's or service's own key, which never enters Key Vault. Off by default: such a
    # certificate exists only in the ledger and with its holder, so a CA signs them only when
    # someone decided it should. Every rule above applies to them as to a vault request.
    external_csrs: bool = False
    # The profiles an external CSR may be signed as, each also one of `profiles`; the first is
    # the one a request that names none gets. `client` alone by default: a device authenticates
    # to a broker or an API, and a server certificate for a key kvca never saw is a larger grant.
    external_profiles: tuple[str, ...] = (Profile.CLIENT.value,)

    def __post_init__(self) -> None:
        if self.default_validity_days is None:
            maximum = self.max_validity_days if isinstance(self.max_validity_days, int) else DEFAULT_VALIDITY_DAYS
            object.__setattr__(self, "default_validity_days", min(DEFAULT_VALIDITY_DAYS, maximum))
        # Normalised here, whichever way the policy was made: lower case, tuples, bare domains.
        for name in _LIST_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigurationError(f"{name} must be a list of strings, not {value!r}", subject=SETTING)
            value = tuple(v.strip().lower() for v in value)
            if name == "allowed_domains":
                value = tuple(bare_domain(v) for v in value)
            object.__setattr__(self, name, value)
        problems = []
        for name in ("allowed_domains", "allowed_names"):
            for entry in getattr(self, name):
                bare = entry[2:] if name == "allowed_names" and entry.startswith("*.") else entry
                if not bare or len(bare) > 253 or not all(LDH_LABEL.match(label) for label in bare.split(".")):
                    problems.append(f"{name} entry {entry!r} is not a DNS name")
        for name in ("max_sans", "max_validity_days", "default_validity_days", "min_rsa_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r} must be a whole number of at least 1")
            elif name.endswith("_days") and value > MAX_DAYS:
                problems.append(f"{name}={value} is more than {MAX_DAYS} days (100 years)")
        if not problems and self.default_validity_days > self.max_validity_days:
            problems.append(f"default_validity_days={self.default_validity_days} is more than "
                            f"max_validity_days={self.max_validity_days}: every certificate without a lifetime "
                            f"of its own would be cut short")
        # A policy that allows no key type or no profile issues nothing: a mistake, not a way to stop a CA
        # (disable the CA's version in the vault for that).
        for name in ("key_types", "profiles"):
            if not getattr(self, name):
                problems.append(f"{name} is empty, so the CA would issue nothing")
        if isinstance(self.min_rsa_bits, int) and self.min_rsa_bits < 2048:
            problems.append(f"min_rsa_bits={self.min_rsa_bits} is below 2048, which kvca never issues for")
        for kind in self.key_types:
            if kind not in KEY_TYPES:
                problems.append(f"key type {kind!r} is not one of {', '.join(KEY_TYPES)}")
        for profile in self.profiles:
            if profile not in {p.value for p in LEAF_PROFILES}:
                problems.append(f"profile {profile!r} is not one of {', '.join(p.value for p in LEAF_PROFILES)}")
        for form in self.cn_forms:
            if form not in CN_FORMS:
                problems.append(f"CN form {form!r} is not one of {', '.join(CN_FORMS)}")
        for name in ("allow_wildcards", "allow_ip", "allow_email", "allow_uri", "external_csrs"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name}={getattr(self, name)!r} must be true or false")
        problems.extend(self._external_problems())
        if problems:
            raise ConfigurationError("; ".join(problems), subject=SETTING)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "IssuancePolicy":
        """Build from a JSON-like mapping; unknown fields are an error (typos must not loosen a policy)."""
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"an issuance policy must be a JSON object, not {type(data).__name__}",
                                     subject=SETTING)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(f"unknown issuance policy field(s) {', '.join(map(repr, unknown))}",
                                     subject=SETTING, hint=f"known fields: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in _LIST_FIELDS and not isinstance(value, (list, tuple)):
                raise ConfigurationError(f"{key} must be a list of strings, not {value!r}", subject=SETTING)
            values[key] = value
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "IssuancePolicy":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"not valid JSON ({exc.msg} at position {exc.pos})", subject=SETTING) from None
        return cls.from_mapping(data)

    def to_mapping(self) -> dict[str, Any]:
        """Every field, as JSON values (what `kvca ca policy show` prints)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    def to_stored(self) -> dict[str, Any]:
        """`to_mapping` without a default_validity_days that is only derived from max_validity_days, so
        that a stored policy whose maximum is changed later (`kvca ca policy set --set`) derives it
        again rather than keeping a default above the new maximum."""
        mapping = self.to_mapping()
        if self.default_validity_days == min(DEFAULT_VALIDITY_DAYS, self.max_validity_days):
            del mapping["default_validity_days"]
        return mapping

    def allows_profile(self, profile: Profile) -> bool:
        return profile.value in self.profiles

    def _external_problems(self) -> list[str]:
        problems = []
        if not self.external_profiles:
            problems.append("external_profiles is empty, so the CA would sign no external CSR")
        for profile in self.external_profiles:
            if profile not in {p.value for p in LEAF_PROFILES}:
                problems.append(f"external_profiles entry {profile!r} is not one of "
                                f"{', '.join(p.value for p in LEAF_PROFILES)}")
            elif self.external_csrs and profile not in self.profiles:
                # Checked only while external CSRs are on: the default ("client") must not make a
                # server-only policy invalid.
                problems.append(f"external_profiles entry {profile!r} is not one of profiles "
                                f"({', '.join(self.profiles)})")
        return problems

    def external_profile(self, requested: "str | Profile | None") -> Profile:
        """The profile an external CSR is signed as: `requested`, else the first of
        external_profiles. The one place that decides whether a CA signs external CSRs at all;
        a refusal names the field."""
        if not self.external_csrs:
            raise PolicyViolation("this CA's policy does not sign CSRs from outside the vault "
                                  "(external_csrs is false)",
                                  hint="kvca ca policy set CA --set external_csrs=true")
        profile = Profile.parse(requested) if requested is not None else Profile(self.external_profiles[0])
        if profile.value not in self.external_profiles:
            raise PolicyViolation(f"profile {profile.value!r} is not allowed for external CSRs by this CA's "
                                  f"policy (external_profiles: {', '.join(self.external_profiles)})",
                                  step="check-names")
        return profile


def bare_domain(value: str) -> str:
    """'*.example.com', '.example.com' and 'example.com' all mean: example.com and below."""
    value = value.strip().lower().rstrip(".")
    if value.startswith("*."):
        value = value[2:]
    return value.lstrip(".")


def _policy_hint(ca_name: str) -> str:
    """How to give a CA a policy, for the refusal below (docs/signing.md, "Issuance policy")."""
    return (f'set {SETTING} to {{"{ca_name}": {{"allowed_domains": ["example.internal"]}}}} '
            f'(or a "*" entry for every CA); an empty object {{}} takes the field defaults; '
            f'or store one with the CA: kvca ca policy set {ca_name} --policy FILE')


def policy_for_ca(setting: Mapping[str, Any] | None, ca_name: str, *,
                  stored: Mapping[str, Any] | None = None) -> IssuancePolicy:
    """The policy for `ca_name`: the one stored with the CA, else KVCA_ISSUANCE_POLICY's.

    `stored` is a policy kept with the CA itself (kvca_core/capolicy.py reads it from
    the vault, and calls this only for CAs that have none); when given it wins over
    the setting. The setting's parsed value is
    either one policy for every CA (its keys are policy fields), or a map
    {"<ca name>": {...}, "*": {...}}: the CA's own entry, else "*". An entry is
    complete on its own (missing fields take the defaults, not the "*" entry's
    values), so reading one entry tells the whole policy.

    A CA with no policy at all is refused (PolicyViolation), not given the
    defaults: the defaults allow any DNS name, so an unlisted CA (a root, a
    forgotten test CA) would otherwise sign anything.
    """
    if stored is not None:
        return IssuancePolicy.from_mapping(stored)
    known = {f.name for f in fields(IssuancePolicy)}
    if setting and set(setting) <= known:
        return IssuancePolicy.from_mapping(setting)
    entry = setting.get(ca_name, setting.get("*")) if setting else None
    if entry is None:
        raise PolicyViolation(f"CA '{ca_name}' has no issuance policy, so it issues nothing",
                              hint=_policy_hint(ca_name))
    try:
        return IssuancePolicy.from_mapping(entry)
    except ConfigurationError as exc:
        key = ca_name if ca_name in setting else "*"
        raise ConfigurationError(exc.message, subject=f"{SETTING}[{key!r}]", hint=exc.hint) from None
