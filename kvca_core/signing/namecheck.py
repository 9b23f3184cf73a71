"""The check-names step of issuing: what a leaf may name (its subject, its SANs) and how its CN
relates to them, against the CA's issuance policy. Pure: no I/O, no clock."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.x509.oid import NameOID

from kvca_core.errors import InvalidRequest, PolicyViolation
from kvca_core.signing import csr as csr_mod
from kvca_core.signing import names
from kvca_core.signing.policy import IssuancePolicy, Profile


def check_subject(subject: x509.Name) -> tuple[x509.Name, str | None]:
    """Only the attributes a leaf may carry, rebuilt as plain strings; and the CN."""
    step = "check-names"
    rebuilt: list[x509.RelativeDistinguishedName] = []
    common_name = None
    for rdn in subject.rdns:
        if len(rdn) != 1:
            raise InvalidRequest("subject has a multi-valued RDN; kvca issues single-valued names only", step=step)
        attribute = next(iter(rdn))
        label = names.LEAF_SUBJECT_ATTRIBUTES.get(attribute.oid)
        if label is None:
            shown = attribute.oid._name if attribute.oid._name != "Unknown OID" else attribute.oid.dotted_string
            hint = "put addresses in an email SAN" if attribute.oid == NameOID.EMAIL_ADDRESS else None
            raise PolicyViolation(f"subject attribute {shown!r} is not issued by kvca (allowed: "
                                  f"{', '.join(names.LEAF_SUBJECT_ATTRIBUTES.values())})", step=step, hint=hint)
        value = attribute.value
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"subject {label} is empty or not text", step=step)
        problem = names.attribute_problem(attribute.oid, value)
        if problem:
            raise InvalidRequest(f"subject {label}={value[:70]!r} {problem}", step=step)
        if attribute.oid == NameOID.COMMON_NAME:
            if common_name is not None:
                raise InvalidRequest("subject has more than one CN", step=step)
            common_name = value
        rebuilt.append(x509.RelativeDistinguishedName([x509.NameAttribute(attribute.oid, value)]))
    name = x509.Name(rebuilt)
    problem = names.domain_components_problem(name)
    if problem:
        raise InvalidRequest(f"subject {problem}", step=step)
    problem = names.subject_size_problem(name)
    if problem:
        raise InvalidRequest(f"subject {problem}", step=step)
    return name, common_name


def _device_id_cn(common_name: str | None, policy: IssuancePolicy, profile: Profile) -> bool:
    """A CN that is a plain device ID ("device-001"), which the policy allows for client
    certificates: it names the client by itself and repeats no SAN."""
    if common_name is None or names.cn_form(common_name) != "device-id":
        return False
    if "device-id" not in policy.cn_forms or profile is not Profile.CLIENT:
        return False
    return True


def _check_cn_form(common_name: str | None, policy: IssuancePolicy) -> None:
    """A CN that is a DNS name or an IP address only where the policy's cn_forms allow it."""
    form = names.cn_form(common_name) if common_name is not None else None
    if form in ("dns-name", "ip-address") and form not in policy.cn_forms:
        raise PolicyViolation(f"subject CN {common_name!r} is a {form.replace('-', ' ')}, which this CA's policy "
                              f"does not allow as a CN (cn_forms: {', '.join(policy.cn_forms)})", step="check-names")


def check_sans(request: csr_mod.InsecureRequest, common_name: str | None,
                policy: IssuancePolicy, profile: Profile = Profile.SERVER) -> list[x509.GeneralName]:
    """The SANs the certificate gets: the CSR's, normalised and checked against the CA's policy
    (or its CN as the one SAN when it has none); the CN, unless a device ID, repeats one of them."""
    _check_cn_form(common_name, policy)
    device_cn = _device_id_cn(common_name, policy, profile)
    dns, ips, emails, uris = _san_values(request, common_name, device_cn)
    _check_san_policy(dns, ips, emails, uris, policy)
    general: list[x509.GeneralName] = []
    seen: set[tuple[str, str]] = set()
    for kind, values in (("dns", dns), ("ip", ips), ("email", emails), ("uri", uris)):
        for value in values:
            key = (kind, str(value))  # already normalised: DNS names and email domains lower case
            if key in seen:
                continue
            seen.add(key)
            general.append({"dns": x509.DNSName, "ip": x509.IPAddress, "email": x509.RFC822Name,
                            "uri": x509.UniformResourceIdentifier}[kind](value))
    if len(general) > policy.max_sans:
        raise PolicyViolation(f"the CSR asks for {len(general)} SANs (at most {policy.max_sans})", step="check-names")
    if common_name is not None and not device_cn:
        _check_cn_repeats_san(common_name, {k[1].lower() for k in seen}, ips)
    return general


def _san_values(request: csr_mod.InsecureRequest, common_name: str | None, device_cn: bool) -> tuple[list, ...]:
    """The CSR's DNS names, IP addresses, emails and URIs, normalised; a CSR without any gets its
    CN as the one SAN (what step and mkcert do), so clients that ignore the CN (RFC 6125, every
    browser) still see it, and it then passes every rule a DNS or IP SAN passes."""
    step = "check-names"
    if request.other_names:
        raise PolicyViolation(f"SAN of kind {request.other_names[0]} is not issued by kvca (DNS, IP, email, URI only)",
                              step=step)
    dns = [names.normalize_dns_name(n, single_label=True) for n in request.dns_names]
    ips = list(request.ip_addresses)
    for ip in ips:
        # cryptography reads an 8- or 32-octet iPAddress as a network: that form exists only
        # in nameConstraints; a SAN holds one address of 4 or 16 octets (RFC 5280 4.2.1.6).
        if not isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            raise InvalidRequest(f"IP address SAN {str(ip)!r} is an address range, not an address "
                                 f"(RFC 5280 4.2.1.6)", step=step)
    emails = [names.normalize_email(e) for e in request.emails]
    uris = [names.normalize_uri(u) for u in request.uris]
    if dns or ips or emails or uris or device_cn:
        return dns, ips, emails, uris
    if common_name is None:
        raise InvalidRequest("the CSR names nothing: its subject has no CN and it has no SANs", step=step)
    try:
        return [], [ipaddress.ip_address(common_name)], [], []
    except ValueError:
        pass
    try:
        return [names.normalize_dns_name(common_name)], [], [], []
    except InvalidRequest as exc:
        hint = None
        if names.cn_form(common_name) == "device-id":
            hint = "a device ID as CN needs the client profile and \"device-id\" in the CA policy's cn_forms"
        raise InvalidRequest(f"subject CN {common_name!r} is not a DNS name or IP address and the CSR "
                             f"has no SANs ({exc.message})", step=step, hint=hint) from None


def _check_san_policy(dns: list, ips: list, emails: list, uris: list, policy: IssuancePolicy) -> None:
    """Each SAN kind the policy allows, each name within its allowed names."""
    step = "check-names"
    for name in dns:
        names.check_dns_name_policy(name, policy)
    if ips and not policy.allow_ip:
        raise PolicyViolation(f"IP address SAN {str(ips[0])!r} is not allowed by this CA's policy "
                              f"(allow_ip is false)", step=step)
    if emails and not policy.allow_email:
        raise PolicyViolation(f"email SAN {emails[0]!r} is not allowed by this CA's policy (allow_email is false)",
                              step=step)
    if uris and not policy.allow_uri:
        raise PolicyViolation(f"URI SAN {uris[0]!r} is not allowed by this CA's policy (allow_uri is false)",
                              step=step)
    for email in emails:
        names.check_host_policy(email.rpartition("@")[2], policy, f"email SAN {email!r}")
    for uri in uris:
        names.check_host_policy(names.uri_host(uri), policy, f"URI SAN {uri!r}")


def _check_cn_repeats_san(common_name: str, sans: set[str], ips: list) -> None:
    """A CN must repeat a SAN (RFC 6125 6.4.4): as text, or as the same IP address."""
    try:
        cn_ips = {ipaddress.ip_address(common_name)}
    except ValueError:
        cn_ips = set()
    if common_name.lower() not in sans and not (cn_ips & set(ips)):
        raise PolicyViolation(f"subject CN {common_name!r} is not one of the SANs ({', '.join(sorted(sans))})",
                              step="check-names", hint="a CN must repeat a SAN (RFC 6125 6.4.4) or be left out")
