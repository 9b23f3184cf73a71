"""Name rules: Key Vault's subject spelling, DNS name syntax, wildcards, the
policy's allowed names, and the CA certificates' name constraints.

Every function here takes untrusted text and either returns a normalised value
or raises an errors.py kind naming the value and the rule.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from typing import TYPE_CHECKING, Iterable, Sequence
from urllib.parse import urlsplit

import idna
from cryptography import x509
from cryptography.x509.oid import NameOID
from publicsuffixlist import PublicSuffixList

from kvca_core.errors import InvalidRequest, PolicyViolation

if TYPE_CHECKING:  # policy.py imports LDH_LABEL from here; the policy is only an argument type
    from kvca_core.signing.policy import IssuancePolicy

STEP = "check-names"

# Key Vault writes subjects the .NET X500DistinguishedName way: "CN=a, O=b, S=WA".
_ATTRIBUTE_NAMES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "DC": NameOID.DOMAIN_COMPONENT,
    "E": NameOID.EMAIL_ADDRESS,
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "STREET": NameOID.STREET_ADDRESS,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
}
# What a leaf's subject may carry. emailAddress in a subject is deprecated
# (RFC 5280 4.1.2.6: use an rfc822Name SAN), and anything else is data the CA
# would assert without having checked it.
LEAF_SUBJECT_ATTRIBUTES: dict[x509.ObjectIdentifier, str] = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.COUNTRY_NAME: "C",
    NameOID.DOMAIN_COMPONENT: "DC",
}
# RFC 5280 Appendix A upper bounds (ub-common-name 64, ub-organization-name 64, ...).
_UPPER_BOUNDS = {NameOID.COMMON_NAME: 64, NameOID.ORGANIZATION_NAME: 64,
                 NameOID.ORGANIZATIONAL_UNIT_NAME: 64, NameOID.LOCALITY_NAME: 128,
                 NameOID.STATE_OR_PROVINCE_NAME: 128, NameOID.COUNTRY_NAME: 2,
                 NameOID.DOMAIN_COMPONENT: 63}
# cryptography writes these attributes as IA5String / PrintableString (its
# _NAMEOID_DEFAULT_TYPE) and encodes whatever text it is given, so a value
# outside the string type's alphabet would become an invalid string in a signed
# certificate (X.680 41.4 / 43.3). Checked here instead.
_IA5_ATTRIBUTES = {NameOID.DOMAIN_COMPONENT, NameOID.EMAIL_ADDRESS}
_PRINTABLE_ATTRIBUTES = {NameOID.SERIAL_NUMBER}
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")
# Unicode general categories that never show: Cf (format: the bidi embeddings,
# overrides and isolates U+202A-202E/2066-2069, LRM/RLM/ALM, zero-width space,
# joiners, word joiner, BOM, tag characters) and the line/paragraph separators
# Zl/Zp. In a subject they let a name read as another one (Unicode TR 36 3.1,
# the "Trojan Source" bidi attack CVE-2021-42574).
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Zl", "Zp"})
# A subject's DER size bound. RFC 5280 bounds each attribute (Appendix A, ub-*)
# but not how many a name holds: a 42 KB subject of repeated OUs passed each
# attribute's bound. 1 KiB is far above what a leaf needs (the bounded
# attributes kvca issues, CN 64 + O 64 + OU 64 + L 128 + ST 128 + C 2 plus a few
# DC labels, encode in well under 600 bytes) and keeps certificates small for
# the constrained TLS stacks RFC 7925 (IoT profile) has in mind.
MAX_SUBJECT_DER = 1024


def subject_size_problem(subject: x509.Name) -> str | None:
    """Why the subject is too large to issue, or None."""
    size = len(subject.public_bytes())
    if size > MAX_SUBJECT_DER:
        return f"is {size} bytes of DER (at most {MAX_SUBJECT_DER})"
    return None


def _name_key(name: x509.Name) -> tuple:
    """A name as RFC 5280 7.1 compares it: per attribute, case folded and inner spaces
    collapsed (RFC 4518 caseIgnoreMatch, insignificant space handling)."""
    return tuple(tuple(sorted((a.oid.dotted_string, " ".join(str(a.value).casefold().split())) for a in rdn))
                 for rdn in name.rdns)


def check_not_issuer_subject(subject: x509.Name, ca_certificates: Iterable[x509.Certificate]) -> None:
    """A leaf never repeats the subject of a CA above it.

    Such a leaf is "self-issued" (RFC 5280 3.2: issuer and subject match), and
    path validation skips self-issued certificates in name constraint checks
    (RFC 5280 6.1.3 (b), (c)) and path lengths (6.1.4 (l)); a client that looks
    up the issuer by subject may also take the leaf for its own CA."""
    if len(subject) == 0:
        return
    key = _name_key(subject)
    for ca in ca_certificates:
        if _name_key(ca.subject) == key:
            raise PolicyViolation(f"subject {subject.rfc4514_string()!r} repeats the subject of CA "
                                  f"{ca.subject.rfc4514_string()!r}; a leaf must be named apart from its "
                                  f"issuers (RFC 5280 6.1.3)", step=STEP)


def attribute_problem(oid: x509.ObjectIdentifier, value: str) -> str | None:
    """Why `value` cannot be written for `oid`, or None.

    Lengths are counted in UTF-8 bytes: RFC 5280's upper bounds count
    characters, but cryptography refuses a CN over 64 bytes, and bytes are
    never fewer than characters, so this is the stricter reading.
    """
    if oid == NameOID.COUNTRY_NAME and not re.fullmatch(r"[A-Za-z]{2}", value):
        return "is not a two-letter country code (ISO 3166)"
    bound = _UPPER_BOUNDS.get(oid)
    size = len(value.encode("utf-8", "surrogatepass"))
    if bound and size > bound:
        return f"is {size} bytes long (RFC 5280 allows at most {bound})"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000 for c in value):
        return "contains control characters"
    invisible = next((c for c in value if unicodedata.category(c) in _INVISIBLE_CATEGORIES), None)
    if invisible is not None:
        return (f"contains the invisible character U+{ord(invisible):04X} ({unicodedata.name(invisible, 'unnamed')}): "
                f"bidi controls, zero-width and other format characters make a name display as another "
                f"(Unicode TR 36 / CVE-2021-42574)")
    if oid in _IA5_ATTRIBUTES and not value.isascii():
        return "is not ASCII (it is written as an IA5String)"
    if oid in _PRINTABLE_ATTRIBUTES and not _PRINTABLE.fullmatch(value):
        return "has characters outside PrintableString (letters, digits, space and '()+,-./:=?)"
    return None


def domain_components_problem(name: x509.Name) -> str | None:
    """Why the name's DC attributes do not spell a DNS name, or None.

    RFC 4519 2.4: each DC is one label of a domain name. pkilint's RFC 5280
    linter joins them, most specific first, and refuses the certificate when
    the result is no domain name (pkix.name_domain_components_invalid_domain_name).
    """
    components = [attribute.value for attribute in name.get_attributes_for_oid(NameOID.DOMAIN_COMPONENT)]
    if not components:
        return None
    joined = ".".join(reversed(components))
    if "*" in joined:
        return f"DC components {joined!r} contain a wildcard"
    try:
        normalize_dns_name(joined)
    except InvalidRequest as exc:
        return f"DC components {joined!r} do not form a DNS name ({exc.message})"
    return None


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped or quoted:
        raise InvalidRequest(f"subject {text!r} has an unfinished escape or quote", subject="subject")
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


def parse_subject(text: str) -> x509.Name:
    """`"CN=a, O=b"` (Key Vault's spelling) -> x509.Name.

    As in RFC 4514 and .NET, the first attribute written is the most specific
    one, i.e. the *last* RDN of the encoded name; "CN=a, O=b" encodes as O=b, CN=a.
    Separators ',' and ';' are both accepted (.NET writes either); multi-valued
    RDNs ('+') are refused: nothing kvca issues needs them.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("subject is empty (write it as 'CN=name, O=org')", subject="subject")
    if len(text) > 1024:
        raise InvalidRequest(f"subject is {len(text)} characters long (at most 1024)", subject="subject")
    separator = ";" if ";" in text and "," not in text else ","
    attributes = []
    for part in _split_unescaped(text, separator):
        if not part.strip():
            raise InvalidRequest(f"subject {text!r} has an empty attribute", subject="subject")
        if len(_split_unescaped(part, "+")) > 1:
            raise InvalidRequest(f"subject {text!r}: multi-valued attributes ('+') are not supported",
                                 subject="subject")
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidRequest(f"subject {text!r}: {part.strip()!r} is not NAME=value", subject="subject")
        oid = _ATTRIBUTE_NAMES.get(key.strip().upper())
        if oid is None:
            raise InvalidRequest(f"subject {text!r}: attribute {key.strip()!r} is not one of "
                                 f"{', '.join(sorted(set(_ATTRIBUTE_NAMES)))}", subject="subject")
        value = _unescape(value)
        if not value:
            raise InvalidRequest(f"subject {text!r}: {key.strip()} is empty", subject="subject")
        problem = attribute_problem(oid, value)
        if problem:
            raise InvalidRequest(f"subject {text!r}: {key.strip()} {problem}", subject="subject")
        attributes.append(x509.NameAttribute(oid, value.upper() if oid == NameOID.COUNTRY_NAME else value))
    name = x509.Name([x509.RelativeDistinguishedName([a]) for a in reversed(attributes)])
    problem = domain_components_problem(name) or subject_size_problem(name)
    if problem:
        raise InvalidRequest(f"subject {text!r}: {problem}", subject="subject")
    return name


def names_subject(text: str, subject: x509.Name) -> bool:
    """Whether `text` (Key Vault's spelling of a subject, e.g. from a certificate policy the vault
    returned: untrusted) names `subject`. Text that does not parse names nothing."""
    try:
        return parse_subject(text) == subject
    except InvalidRequest:
        return False


# ---------------------------------------------------------------- DNS names

# RFC 1035 2.3.1 "preferred name syntax" as RFC 5280 4.2.1.6 requires for
# dNSName; RFC 1123 2.1 lets a label start with a digit. IDNs arrive as
# A-labels (xn--...). Underscores are refused: RFC 5280 forbids them and
# CA/B Forum ballot SC-063 ended them in public certificates.
LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")



def normalize_dns_name(name: str, *, single_label: bool = False) -> str:
    """Lower-case, syntax-checked DNS name; a wildcard only as the whole leftmost label.

    `single_label`: accept a name of one label (`localhost`, an intranet host) as a SAN; whether a
    CA issues it is the policy's (`check_dns_name_policy`: only when `allowed_names` lists it)."""
    if not isinstance(name, str):
        raise InvalidRequest(f"DNS name {name!r} is not text", step=STEP)
    shown = name if len(name) <= 80 else name[:77] + "..."
    if not name:
        raise InvalidRequest("DNS name is empty", step=STEP)
    if not name.isascii():
        raise InvalidRequest(f"DNS name {shown!r} is not ASCII (write IDNs as A-labels, xn--...)", step=STEP)
    lowered = name.lower()
    if len(lowered) > 253:
        raise InvalidRequest(f"DNS name {shown!r} is {len(name)} characters (at most 253, RFC 1035)", step=STEP)
    if lowered.endswith("."):
        raise InvalidRequest(f"DNS name {shown!r} ends with a dot (write it without the root label)", step=STEP)
    labels = lowered.split(".")
    for index, label in enumerate(labels):
        if "*" in label:
            if label != "*":
                raise InvalidRequest(f"DNS name {shown!r}: partial wildcard {label!r} is not allowed "
                                     f"(only '*' as the whole leftmost label, RFC 6125 6.4.3)", step=STEP)
            if index != 0:
                raise InvalidRequest(f"DNS name {shown!r}: a wildcard may only be the leftmost label "
                                     f"(RFC 6125 6.4.3)", step=STEP)
            continue
        if not label:
            raise InvalidRequest(f"DNS name {shown!r} has an empty label", step=STEP)
        if len(label) > 63:
            raise InvalidRequest(f"DNS name {shown!r}: label of {len(label)} characters (at most 63, RFC 1035)",
                                 step=STEP)
        if not LDH_LABEL.match(label):
            raise InvalidRequest(f"DNS name {shown!r}: label {label!r} is not letters, digits and inner "
                                 f"hyphens (RFC 1035 2.3.1)", step=STEP)
        if label.startswith("xn--"):
            problem = a_label_problem(label)
            if problem:
                raise InvalidRequest(f"DNS name {shown!r}: label {label!r} is not a valid IDNA A-label "
                                     f"({problem})", step=STEP)
    if len(labels) < 2 and (not single_label or labels[0] == "*"):
        raise InvalidRequest(f"DNS name {shown!r} is a single label (write the fully qualified name)", step=STEP)
    if all(label.isdigit() for label in labels):
        raise InvalidRequest(f"DNS name {shown!r} looks like an IP address (use an IP SAN)", step=STEP)
    # The top-level label ends with a letter and has at least two characters:
    # TLDs are never all-numeric (RFC 3696 2), and this is the syntax pkilint's
    # RFC 5280 linter checks dNSNames against (python-validators' domain()).
    if len(labels[-1]) < 2 or not labels[-1][-1].isalpha():
        raise InvalidRequest(f"DNS name {shown!r}: top-level label {labels[-1]!r} must be at least two "
                             f"characters and end with a letter", step=STEP)
    return lowered


def a_label_problem(label: str) -> str | None:
    """Why an 'xn--' label is no A-label, or None.

    RFC 5891 5.4: the label must decode as Punycode to a U-label that is valid
    under IDNA 2008 (RFC 5892 code points, RFC 5893 bidi, the hyphen and
    CONTEXTJ/CONTEXTO rules: the `idna` package implements them), and encode back
    to exactly the same label (one canonical A-label per U-label)."""
    try:
        ulabel = idna.ulabel(label)
        if idna.alabel(ulabel).decode("ascii") != label:
            return f"it is not the canonical encoding of {ulabel!r}"
    except (idna.IDNAError, UnicodeError) as exc:
        return str(exc)[:120]
    return None


@functools.lru_cache(maxsize=1)
def _public_suffixes() -> PublicSuffixList:
    # The list ships inside the package (publicsuffixlist's bundled
    # public_suffix_list.dat): no network at run time; updates come as releases.
    # Both sections count, ICANN and private (azurewebsites.net, github.io): each
    # entry is a boundary below which names belong to different registrants.
    return PublicSuffixList()


def is_public_suffix(domain: str) -> bool:
    """`domain` (normalised) is an entry of the Public Suffix List: co.uk, com, azurewebsites.net."""
    return bool(_public_suffixes().is_public(domain))


def is_wildcard(name: str) -> bool:
    return name.startswith("*.")


def within_domain(name: str, domain: str) -> bool:
    """`name` equals `domain` or lies below it, compared label by label."""
    return name == domain or name.endswith("." + domain)


def check_dns_name_policy(name: str, policy: IssuancePolicy) -> None:
    """`name` is already normalised. Raises PolicyViolation with the rule."""
    if is_wildcard(name):
        if not policy.allow_wildcards:
            raise PolicyViolation(f"wildcard DNS name {name!r} is not allowed by this CA's policy "
                                  f"(allow_wildcards is false)", step=STEP)
        # '*.com' or '*.local' would cover a whole top-level domain.
        if name.count(".") < 2:
            raise PolicyViolation(f"wildcard DNS name {name!r} covers a whole top-level domain "
                                  f"(a wildcard needs at least two labels after '*')", step=STEP)
        # '*.co.uk' covers every registrant under a public suffix, whatever the CA's
        # constraints: CA/B Forum Baseline Requirements 3.2.2.6 refuse such wildcards
        # ("a registry-controlled or public suffix"), and so do browsers (RFC 6125 7.2).
        if is_public_suffix(name[2:]):
            raise PolicyViolation(f"wildcard DNS name {name!r} covers the public suffix {name[2:]!r} "
                                  f"(Public Suffix List): it would match names of every registrant there",
                                  step=STEP)
    if name in policy.allowed_names:
        return
    if "." not in name:
        # A single label names a different host on every network: a CA issues one only by name.
        raise PolicyViolation(f"DNS name {name!r} is a single label, which this CA's policy issues only when "
                              f"its allowed_names list it", step=STEP)
    if not policy.allowed_domains and not policy.allowed_names:
        return
    base = name[2:] if is_wildcard(name) else name
    if any(within_domain(base, domain) for domain in policy.allowed_domains):
        return
    allowed = [f"*.{d}" for d in policy.allowed_domains] + list(policy.allowed_names)
    raise PolicyViolation(f"DNS name {name!r} is outside the allowed domains ({', '.join(allowed)})", step=STEP)


def check_host_policy(host: str, policy: IssuancePolicy, what: str) -> None:
    """The allowed domains for the host of a URI SAN or the domain of an email SAN, as for a DNS
    name: with `allowed_domains` set, `spiffe://evil.example/x` or `a@evil.example` must not pass
    where `evil.example` would not. `host` is normalised (lower case); `what` names the
    SAN in messages."""
    if is_wildcard(host):
        raise InvalidRequest(f"{what}: a wildcard is not a host (RFC 6125 wildcards are for DNS names)", step=STEP)
    if not policy.allowed_domains and not policy.allowed_names:
        return
    if not _is_ip(host) and (host in policy.allowed_names
                             or any(within_domain(host, domain) for domain in policy.allowed_domains)):
        return
    allowed = [f"*.{d}" for d in policy.allowed_domains] + list(policy.allowed_names)
    raise PolicyViolation(f"{what}: host {host!r} is outside the allowed domains ({', '.join(allowed)})",
                          step=STEP)


def uri_host(uri: str) -> str:
    """The host of a URI that normalize_uri accepted, lower case (IPv6 without brackets)."""
    return (urlsplit(uri).hostname or "").lower()


# A device ID as a client certificate's CN: letters, digits and '-', '_', '.', ':' inside,
# starting and ending with a letter or digit, at most 64 characters (ub-common-name, RFC 5280
# Appendix A). What fleets use as MQTT client IDs (e.g. "device-001", "sensor_17").
DEVICE_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,62}[A-Za-z0-9])?")


def cn_form(common_name: str) -> str | None:
    """What a CN is: "ip-address", "dns-name", "device-id" (policy.CN_FORMS), or None."""
    if _is_ip(common_name):
        return "ip-address"
    try:
        normalize_dns_name(common_name)
        return "dns-name"
    except InvalidRequest:
        pass
    return "device-id" if DEVICE_ID.fullmatch(common_name) else None


def _has_control_or_space(text: str) -> bool:
    # C0 controls, space and DEL: never part of a URI (RFC 3986 2).
    return any(ord(c) <= 0x20 or ord(c) == 0x7F for c in text)


# RFC 5321 4.1.2 Dot-string: atext runs joined by single dots. Quoted local parts
# ("a b"@x) are left out: no client of kvca needs them, and cryptography's
# RFC822Name (email.utils.parseaddr) refuses RFC 5322 specials such as '(' or ','.
_DOT_STRING = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")


def normalize_email(address: str) -> str:
    local, sep, domain = address.rpartition("@")
    if not sep or not _DOT_STRING.fullmatch(local):
        raise InvalidRequest(f"email address {address!r} is not local@domain with an unquoted ASCII local part "
                             f"(RFC 5321 4.1.2 Dot-string)", step=STEP)
    return f"{local}@{normalize_dns_name(domain)}"


def normalize_uri(uri: str) -> str:
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # raises ValueError for a port that is not a number from 0 to 65535
        if parts.netloc.endswith(":"):
            host = None  # an empty port
    except ValueError:
        host = None
    if not uri.isascii() or not host or _has_control_or_space(uri):
        raise InvalidRequest(f"URI {uri!r} needs a scheme and a host (and a port from 0 to 65535, if any), in "
                             f"ASCII without spaces or control characters (RFC 5280 4.2.1.6)", step=STEP)
    if not _is_ip(host):
        normalize_dns_name(host)
    return uri


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- name constraints

def _dns_constraint_matches(name: str, constraint: str) -> bool:
    """RFC 5280 4.2.1.10: 'example.com' matches it and every subdomain;
    '.example.com' (a common extension, honoured by OpenSSL) only subdomains."""
    constraint = constraint.lower().rstrip(".")
    if not constraint:
        return True  # an empty dNSName constraint matches every name
    if constraint.startswith("."):
        return name.endswith(constraint)
    # A wildcard stands for every name one label below its base: it is inside
    # the subtree only when its base is.
    base = name[2:] if is_wildcard(name) else name
    return within_domain(base, constraint)


def _wildcard_reaches_excluded(name: str, constraint: str) -> bool:
    """A wildcard `*.base` matches every name one label below `base`; an excluded
    subtree at that depth (`secret.corp.internal` for `*.corp.internal`) lies within
    what it matches, so the wildcard must be refused although its base is outside the
    subtree (OpenSSL's -verify_hostname accepts it for the excluded name)."""
    if not is_wildcard(name):
        return False
    base = name[2:]
    constraint = constraint.lower().rstrip(".")
    if constraint.startswith("."):
        # '.x.base' excludes only names below x.base: the wildcard's one label cannot reach them.
        return False
    return constraint.endswith("." + base) and constraint.count(".") == base.count(".") + 1


def _email_constraint_matches(address: str, constraint: str) -> bool:
    # RFC 5280 4.2.1.10: a mailbox, a host (all mailboxes there) or '.domain' (any host below).
    domain = address.rpartition("@")[2]
    constraint = constraint.lower()
    if "@" in constraint:
        return address.lower() == constraint
    if constraint.startswith("."):
        return domain.endswith(constraint)
    return domain == constraint


def _uri_constraint_matches(uri: str, constraint: str) -> bool:
    host = (urlsplit(uri).hostname or "").lower()
    constraint = constraint.lower()
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint


def _dirname_matches(subject: x509.Name, constraint: x509.Name) -> bool:
    """The subject lies within the directory subtree: its RDNs start with the constraint's."""
    subject_rdns, constraint_rdns = list(subject.rdns), list(constraint.rdns)
    return subject_rdns[: len(constraint_rdns)] == constraint_rdns


def _matches(general_name: x509.GeneralName, constraint: x509.GeneralName) -> bool | None:
    """True/False when the constraint is of the name's type, None when it does not apply."""
    if type(general_name) is not type(constraint):
        return None
    if isinstance(general_name, x509.DNSName):
        return _dns_constraint_matches(general_name.value, constraint.value)
    if isinstance(general_name, x509.IPAddress):
        if not isinstance(constraint.value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            return False
        return general_name.value.version == constraint.value.version and general_name.value in constraint.value
    if isinstance(general_name, x509.RFC822Name):
        return _email_constraint_matches(general_name.value, constraint.value)
    if isinstance(general_name, x509.UniformResourceIdentifier):
        return _uri_constraint_matches(general_name.value, constraint.value)
    if isinstance(general_name, x509.DirectoryName):
        return _dirname_matches(general_name.value, constraint.value)
    return False


_SUPPORTED_CONSTRAINTS = (x509.DNSName, x509.IPAddress, x509.RFC822Name, x509.UniformResourceIdentifier,
                          x509.DirectoryName)


def _describe(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS name {name.value!r}"
    if isinstance(name, x509.IPAddress):
        return f"IP address {str(name.value)!r}"
    if isinstance(name, x509.RFC822Name):
        return f"email address {name.value!r}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI {name.value!r}"
    if isinstance(name, x509.DirectoryName):
        return f"subject {name.value.rfc4514_string()!r}"
    return repr(name)


def _constraint_text(constraint: x509.GeneralName) -> str:
    if isinstance(constraint, x509.DirectoryName):
        return constraint.value.rfc4514_string()
    return str(constraint.value)


def check_name_constraints(names: Sequence[x509.GeneralName], subject: x509.Name,
                           ca_certificates: Iterable[x509.Certificate]) -> None:
    """Every name of the new certificate against every CA's nameConstraints.

    Enforced whatever the policy says: a leaf outside its CA's constraints
    would be rejected by every RFC 5280 client anyway, and issuing it would
    mean the CA signs something it was told not to. Constraint types kvca
    cannot evaluate (otherName, x400Address, ...) make the issuance fail
    closed rather than be ignored. The subject must also not repeat a CA's
    (check_not_issuer_subject), so every caller of this check gets that rule.
    """
    ca_certificates = list(ca_certificates)
    check_not_issuer_subject(subject, ca_certificates)
    candidates = list(names)
    if len(subject) > 0:
        candidates.append(x509.DirectoryName(subject))
    for ca in ca_certificates:
        try:
            nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            continue
        ca_name = ca.subject.rfc4514_string()
        for constraint in list(nc.permitted_subtrees or ()) + list(nc.excluded_subtrees or ()):
            if not isinstance(constraint, _SUPPORTED_CONSTRAINTS):
                raise PolicyViolation(f"CA {ca_name!r} has a {type(constraint).__name__} name constraint that "
                                      f"kvca cannot evaluate; refusing to issue under it", step=STEP)
        for name in candidates:
            for constraint in nc.excluded_subtrees or ():
                if _matches(name, constraint) or (isinstance(name, x509.DNSName)
                                                  and isinstance(constraint, x509.DNSName)
                                                  and _wildcard_reaches_excluded(name.value, constraint.value)):
                    raise PolicyViolation(f"{_describe(name)} is excluded by the name constraints of CA "
                                          f"{ca_name!r} ({_constraint_text(constraint)})", step=STEP)
            permitted = [c for c in (nc.permitted_subtrees or ()) if type(c) is type(name)]
            if permitted and not any(_matches(name, c) for c in permitted):
                allowed = ", ".join(_constraint_text(c) for c in permitted)
                raise PolicyViolation(f"{_describe(name)} is outside the name constraints of CA "
                                      f"{ca_name!r} (permitted: {allowed})", step=STEP)
