"""Issuing: the pipeline that turns a CSR into a leaf, and the CA certificates.

    parse -> verify-signature -> check-key -> check-names -> decide-validity
          -> build -> sign -> re-verify

Each failure is an errors.py kind whose `step` is one of STEPS and whose
message names the value and the rule.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from kvca_core import clock
from kvca_core.errors import InvalidRequest, KvcaError, PolicyViolation, UpstreamError
from kvca_core.signing import csr as csr_mod
from kvca_core.signing import namecheck, names
from kvca_core.signing.builder import IssuanceUrls, Role, build
from kvca_core.signing.certs import is_self_signed, issued_by, same_public_key
from kvca_core.signing.policy import IssuancePolicy, Profile, bare_domain, is_key_vault_default, profile_from_ekus
from kvca_core.signing.signers import Signer, verify_signature

log = logging.getLogger(__name__)

STEPS = ("parse", "verify-signature", "check-key", "check-names", "decide-validity", "build", "sign", "re-verify")

# Backdate notBefore 5 minutes: clock skew between the vault, this host and
# clients (a certificate "not yet valid" by a few seconds fails a handshake).
# Five minutes is the skew Microsoft's identity libraries tolerate by default
# (TokenValidationParameters.DefaultClockSkew, 300 s), the same clouds' clocks.
BACKDATE = dt.timedelta(minutes=5)
MAX_CA_YEARS = 50
MAX_VALIDITY_MONTHS = 1200  # Key Vault's validity_months is a plain integer; refuse nonsense early
_DEFAULT_POLICY = IssuancePolicy()  # frozen: built once, not per issuance


def _describe_ca(certificate: x509.Certificate) -> str:
    try:
        text = certificate.subject.rfc4514_string()
    except ValueError:  # a malformed subject; load-ca refuses it, this only names it
        text = ""
    return text or f"serial {certificate.serial_number:x}"


@dataclass(frozen=True)
class IssuingCA:
    """The CA that signs: its certificate, the certificates above it (to the
    root, in order; the root may be left out), and the signer of its key."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    signer: Signer
    # Derived once here, not per issuance.
    _root: x509.Certificate | None = field(init=False, repr=False, compare=False, default=None)
    _ski: x509.SubjectKeyIdentifier | None = field(init=False, repr=False, compare=False, default=None)
    _label: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        """Refuses (step "load-ca") a certificate that is no CA, a signer for another
        key, or a chain that does not go upwards: CA material comes from the vault,
        which is outside input too."""
        object.__setattr__(self, "chain", tuple(self.chain))
        name = _describe_ca(self.certificate)
        for certificate in self.certificates:
            try:
                # Decode once: a malformed name, key or extension is refused here, not at issuance.
                certificate.subject, certificate.issuer, certificate.extensions
                certificate.public_key()
            except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension,
                    x509.UnsupportedGeneralNameType) as exc:
                which = ("its certificate" if certificate is self.certificate
                         else f"chain certificate {_describe_ca(certificate)!r}")
                raise InvalidRequest(f"CA {name!r}: {which} has a malformed name, key or extension "
                                     f"({str(exc)[:120]})", step="load-ca") from None
        try:
            constraints = self.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise InvalidRequest(f"certificate {name!r} is not a CA (basicConstraints CA:TRUE missing)",
                                 step="load-ca")
        try:
            usage = self.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
            if not usage.key_cert_sign:
                raise InvalidRequest(f"CA {name!r} may not sign certificates (keyUsage lacks keyCertSign)",
                                     step="load-ca")
        except x509.ExtensionNotFound:
            pass
        if not same_public_key(self.certificate.public_key(), self.signer.public_key):
            raise InvalidRequest(f"CA {name!r}: the signer's key is not the certificate's key", step="load-ca")
        try:
            # The key rules a leaf must meet, for the CA too: a CA imported by hand with an
            # RSA-1024 key or a small exponent must not go on issuing.
            csr_mod.check_key(self.certificate.public_key(), _DEFAULT_POLICY)
        except PolicyViolation as exc:
            raise PolicyViolation(f"CA {name!r}: {exc.message}", step="load-ca") from None
        below = self.certificate
        for above in self.chain:
            if not issued_by(below, above):
                raise InvalidRequest(f"CA {name!r}: chain certificate {_describe_ca(above)!r} did not issue "
                                     f"{_describe_ca(below)!r} (the chain must go upwards, in order)",
                                     step="load-ca")
            below = above
        # Checked once here rather than per leaf: one signature verification less per issuance.
        top = self.certificates[-1]
        object.__setattr__(self, "_root", top if is_self_signed(top) else None)
        object.__setattr__(self, "_ski", _ski_of(self.certificate))
        object.__setattr__(self, "_label", name)

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """This CA and every certificate above it."""
        return (self.certificate, *self.chain)

    @property
    def root(self) -> x509.Certificate | None:
        """The self-signed certificate at the top, when the chain reaches it."""
        return self._root

    @property
    def ski(self) -> x509.SubjectKeyIdentifier | None:
        """The CA certificate's SKI: the authorityKeyIdentifier of what it issues."""
        return self._ski

    @property
    def label(self) -> str:
        """The CA's subject (or serial) for messages and log lines."""
        return self._label

    @property
    def not_after(self) -> dt.datetime:
        return min(c.not_valid_after_utc for c in self.certificates)


@dataclass(frozen=True)
class IssuedCertificate:
    """A signed leaf and what to ship with it."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # leaf, intermediate, ... (no root)
    root: x509.Certificate | None
    profile: Profile
    warnings: tuple[str, ...] = ()

    def certificates(self, include_root: bool = False) -> list[x509.Certificate]:
        certs = list(self.chain)
        if include_root and self.root is not None:
            certs.append(self.root)
        return certs

    def chain_der(self, include_root: bool = False) -> list[bytes]:
        """DER, leaf first: what Key Vault's merge takes (as x5c)."""
        return [c.public_bytes(Encoding.DER) for c in self.certificates(include_root)]

    def pem(self, include_root: bool = False) -> str:
        return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in self.certificates(include_root))

    @property
    def serial(self) -> int:
        return self.leaf.serial_number

    @property
    def serial_hex(self) -> str:
        return format(self.leaf.serial_number, "x")

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc


# ---------------------------------------------------------------- validity

def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """Calendar months, as Key Vault counts validity_months; the day is clamped
    to the month's end (Jan 31 + 1 month = Feb 28/29)."""
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _now(now: dt.datetime | None) -> dt.datetime:
    moment = now if now is not None else clock.now()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    # X.509 times carry whole seconds (RFC 5280 4.1.2.5).
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0)


def decide_validity(*, now: dt.datetime | None, validity_months: int | None, policy: IssuancePolicy,
                    ca_certificates: Sequence[x509.Certificate]) -> tuple[dt.datetime, dt.datetime, list[str]]:
    step = "decide-validity"
    moment = _now(now)
    warnings: list[str] = []
    if validity_months is None:
        not_after = moment + dt.timedelta(days=policy.default_validity_days)
    else:
        if isinstance(validity_months, bool) or not isinstance(validity_months, int) \
                or not 1 <= validity_months <= MAX_VALIDITY_MONTHS:
            raise InvalidRequest(f"validity of {validity_months!r} months is not a whole number from 1 to "
                                 f"{MAX_VALIDITY_MONTHS}", step=step)
        not_after = add_months(moment, validity_months)
    not_before = moment - BACKDATE
    ca_not_before = max(c.not_valid_before_utc for c in ca_certificates)
    ca_not_after = min(c.not_valid_after_utc for c in ca_certificates)
    if ca_not_after <= moment:
        raise PolicyViolation(f"the CA expired on {ca_not_after:%Y-%m-%d %H:%M:%S}Z; renew the CA first", step=step)
    if ca_not_before > moment:
        raise PolicyViolation(f"the CA is not valid before {ca_not_before:%Y-%m-%d %H:%M:%S}Z", step=step)
    not_before = max(not_before, ca_not_before)
    # The maximum counts from notBefore and includes the last second (CA/B BR 6.3.2).
    policy_cap = not_before + dt.timedelta(days=policy.max_validity_days) - dt.timedelta(seconds=1)
    if not_after > policy_cap:
        warnings.append(f"validity capped at the policy's maximum of {policy.max_validity_days} days "
                        f"({policy_cap:%Y-%m-%d})")
        not_after = policy_cap
    if not_after > ca_not_after:
        # A certificate cannot outlive its issuer in any client that checks the chain.
        warnings.append(f"validity capped at the CA's notAfter ({ca_not_after:%Y-%m-%d %H:%M:%S}Z)")
        not_after = ca_not_after
    return not_before, not_after, warnings


# What Key Vault's default EKU pair (policy.KEY_VAULT_DEFAULT_EKUS) becomes: what it asks for
# when the CA's policy allows it, else the narrowest profile the policy allows. A portal request
# (subject and issuer only) asks for both EKUs because Key Vault adds them, not because its
# requester chose them, so a CA that allows only `server` signs it as `server` instead of
# refusing every portal request (Python SDK recording test_merge_certificate, API 7.3).
_FOR_THE_DEFAULT_PAIR = (Profile.SERVER_CLIENT, Profile.SERVER, Profile.CLIENT)


def _decide_profile(profile: Profile | str | None, requested_ekus: Iterable[str],
                    request: csr_mod.InsecureRequest, policy: IssuancePolicy) -> Profile:
    """An explicit profile; else the profile the Key Vault policy's EKUs ask for; else the CSR's
    (Key Vault's CSR mirrors its policy); else `server`. Key Vault's default pair alone is no
    explicit choice: see _FOR_THE_DEFAULT_PAIR."""
    asked = tuple(requested_ekus) or tuple(request.ekus)
    if profile is not None:
        chosen = Profile.parse(profile)
    elif is_key_vault_default(asked):
        chosen = next((p for p in _FOR_THE_DEFAULT_PAIR if policy.allows_profile(p)), Profile.SERVER_CLIENT)
    else:
        chosen = profile_from_ekus(asked)
    if not policy.allows_profile(chosen):
        raise PolicyViolation(f"profile {chosen.value!r} is not allowed by this CA's policy "
                              f"(allowed: {', '.join(policy.profiles)})", step="check-names")
    return chosen


@dataclass(frozen=True)
class CheckedRequest:
    """What `precheck` decided: the profile, the subject and SANs to issue, the validity."""

    profile: Profile
    subject: x509.Name
    sans: tuple[x509.GeneralName, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    warnings: tuple[str, ...]


def precheck(request: csr_mod.InsecureRequest, *, ca_certificates: Sequence[x509.Certificate],
             policy: IssuancePolicy | None = None, profile: Profile | str | None = None,
             requested_ekus: Iterable[str] = (), validity_months: int | None = None,
             now: dt.datetime | None = None, key_kind: str | None = None,
             rsa_bits: int | None = None) -> CheckedRequest:
    """Every rule of steps check-names and decide-validity, on what a request asks for.

    The signer runs it on the CSR (`issue_leaf`); `operations.issue` runs it on the request
    before anything is created in the vault, so a refusal never leaves a pending certificate
    behind. One function for both: a rule added here applies to both. `key_kind`/`rsa_bits`
    ("ec-p256", "rsa" + bits) check a key that does not exist yet against the policy, as
    csr.check_key does for the CSR's key.
    """
    policy = policy or _DEFAULT_POLICY
    if key_kind is not None:
        csr_mod.check_key_kind(key_kind, rsa_bits, policy)
    if request.asks_ca:
        raise PolicyViolation("the CSR asks for CA powers (basicConstraints CA:TRUE); kvca signs only leaves "
                              "from a CSR", step="check-names", hint="create CAs with `kvca ca create`")
    if request.asks_cert_sign:
        raise PolicyViolation(f"the CSR asks for key usage {', '.join(request.asks_cert_sign)}, which only a CA "
                              f"may hold", step="check-names")
    chosen_profile = _decide_profile(profile, requested_ekus, request, policy)
    subject, common_name = namecheck.check_subject(request.subject)
    # Before the SAN rules, so a repeated issuer subject is named as such (check_name_constraints checks it too).
    names.check_not_issuer_subject(subject, ca_certificates)
    sans = namecheck.check_sans(request, common_name, policy, chosen_profile)
    names.check_name_constraints(sans, subject, ca_certificates)
    not_before, not_after, warnings = decide_validity(now=now, validity_months=validity_months, policy=policy,
                                                      ca_certificates=ca_certificates)
    return CheckedRequest(profile=chosen_profile, subject=subject, sans=tuple(sans), not_before=not_before,
                          not_after=not_after, warnings=tuple(warnings))


# ---------------------------------------------------------------- signing

async def _sign(signer: Signer, builder: x509.CertificateBuilder) -> x509.Certificate:
    try:
        return await signer.sign_certificate(builder)
    except KvcaError:
        raise
    except Exception as exc:  # the remote signer is outside code: never a traceback to the caller
        log.warning("signing failed: signer=%r error=%s", signer, type(exc).__name__)
        raise UpstreamError(f"the CA key could not sign ({type(exc).__name__})", step="sign") from exc


def _reverify(certificate: x509.Certificate, issuer: x509.Certificate, public_key) -> None:
    """Parse the result again and check it against the issuer before anyone sees it."""
    step = "re-verify"
    reparsed = x509.load_der_x509_certificate(certificate.public_bytes(Encoding.DER))
    if reparsed.issuer != issuer.subject:
        raise UpstreamError("the signed certificate's issuer is not the CA's subject", step=step)
    try:
        verify_signature(reparsed, issuer.public_key())
    except (InvalidSignature, ValueError, TypeError):
        raise UpstreamError("the signed certificate does not verify with the CA's public key", step=step) from None
    if not same_public_key(reparsed.public_key(), public_key):
        raise UpstreamError("the signed certificate does not carry the requested public key", step=step)


async def issue_leaf(csr, *, ca: IssuingCA, policy: IssuancePolicy | None = None,
                     profile: Profile | str | None = None, requested_ekus: Iterable[str] = (),
                     validity_months: int | None = None, now: dt.datetime | None = None,
                     urls: IssuanceUrls = IssuanceUrls(), uris: Sequence[str] = (),
                     ips: Sequence[str] = ()) -> IssuedCertificate:
    """Sign `csr` (PEM, DER, base64 DER or a parsed CSR) as a leaf of `ca` under `policy`.

    `profile` wins; else the `requested_ekus` (Key Vault policy's x509_props.ekus);
    else the EKUs the CSR requests; else `server`. `validity_months` is Key
    Vault's; None uses the policy's default. `uris` and `ips`: URI and IP address SANs asked for
    besides the CSR's (Key Vault's CSR cannot carry them; kvca keeps them in tags), checked exactly
    as the CSR's own. Errors name their step; the caller says which certificate they are about
    (`errors.about`). Raises InvalidRequest or PolicyViolation with `step` set; UpstreamError
    when the CA key fails to sign.
    """
    return await _issue_leaf(csr, ca=ca, policy=policy or _DEFAULT_POLICY, profile=profile,
                             requested_ekus=requested_ekus, validity_months=validity_months, now=now, urls=urls,
                             uris=tuple(uris), ips=tuple(ips))


async def _issue_leaf(csr, *, ca: IssuingCA, policy: IssuancePolicy, profile: Profile | str | None,
                      requested_ekus: Iterable[str], validity_months: int | None, now: dt.datetime | None,
                      urls: IssuanceUrls, uris: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> IssuedCertificate:
    # 1. parse
    request_csr = csr_mod.parse_csr(csr)
    # 2. verify-signature
    public_key = csr_mod.verify_csr_signature(request_csr)
    # 3. check-key
    csr_mod.check_key(public_key, policy)
    # 4. check-names (and what else the request asks for)
    request = csr_mod.read_request(request_csr)
    if uris or ips:
        request = dataclasses.replace(request, uris=request.uris + uris,
                                      ip_addresses=request.ip_addresses + _addresses(ips))
    # 4. check-names and 5. decide-validity: the steps that need no key, shared with `precheck`
    checked = precheck(request, ca_certificates=ca.certificates, policy=policy, profile=profile,
                       requested_ekus=requested_ekus, validity_months=validity_months, now=now)
    chosen_profile, subject, sans = checked.profile, checked.subject, list(checked.sans)
    not_before, not_after, warnings = checked.not_before, checked.not_after, list(checked.warnings)
    # 6. build: from policy; the CSR gives its key and the names checked above, nothing else
    try:
        builder = build(role=Role.LEAF, subject=subject, issuer=ca.certificate.subject, public_key=public_key,
                        issuer_public_key=ca.signer.public_key, issuer_ski=ca.ski,
                        not_before=not_before, not_after=not_after, profile=chosen_profile, sans=sans, urls=urls)
    except ValueError as exc:
        raise InvalidRequest(f"the certificate cannot be built ({exc})", step="build") from None
    # 7. sign
    leaf = await _sign(ca.signer, builder)
    # 8. re-verify
    _reverify(leaf, ca.certificate, public_key)
    for warning in warnings:
        log.warning("issued with a warning: serial=%x ca=%s warning=%s", leaf.serial_number, ca.label, warning)
    log.info("issued leaf: serial=%x ca=%s profile=%s not_after=%s", leaf.serial_number,
             ca.label, chosen_profile.value, leaf.not_valid_after_utc.isoformat())
    root = ca.root
    chain = (leaf, *(c for c in ca.certificates if c is not root))
    return IssuedCertificate(leaf=leaf, chain=tuple(chain), root=root, profile=chosen_profile,
                             warnings=tuple(warnings))


def _addresses(texts: Sequence[str]) -> tuple:
    """IP address SANs from a tag (vault data): each one address, or InvalidRequest naming it."""
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_address(text))
        except ValueError:
            raise InvalidRequest(f"IP address SAN {text[:60]!r} is not an IPv4 or IPv6 address",
                                 step="check-names") from None
    return tuple(out)


def _ski_of(certificate: x509.Certificate) -> x509.SubjectKeyIdentifier | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None


# ---------------------------------------------------------------- CA certificates

def _ca_subject(subject: str | x509.Name) -> x509.Name:
    name = names.parse_subject(subject) if isinstance(subject, str) else subject
    if not isinstance(name, x509.Name) or len(name) == 0:
        raise InvalidRequest("a CA needs a non-empty subject, e.g. 'CN=Contoso Issuing CA'", subject="subject")
    return name


def _ca_years(years: int) -> int:
    if isinstance(years, bool) or not isinstance(years, int) or not 1 <= years <= MAX_CA_YEARS:
        raise InvalidRequest(f"CA validity of {years!r} years is not a whole number from 1 to {MAX_CA_YEARS}",
                             step="decide-validity")
    return years


def _ca_key(public_key) -> None:
    if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise PolicyViolation(f"a CA key must be RSA or EC, not {type(public_key).__name__}", step="check-key")
    csr_mod.check_key(public_key, _DEFAULT_POLICY)


async def create_root(subject: str | x509.Name, signer: Signer, *, years: int,
                      now: dt.datetime | None = None) -> x509.Certificate:
    """A self-signed root: pathLen 1 (one intermediate below it), keyCertSign + cRLSign."""
    name = _ca_subject(subject)
    _ca_key(signer.public_key)
    moment = _now(now)
    builder = build(role=Role.ROOT, subject=name, issuer=name, public_key=signer.public_key,
                    issuer_public_key=signer.public_key, issuer_ski=None, not_before=moment - BACKDATE,
                    not_after=add_months(moment, 12 * _ca_years(years)), path_length=1)
    root = await _sign(signer, builder)
    _reverify(root, root, signer.public_key)
    log.info("created root: serial=%x subject=%s", root.serial_number, name.rfc4514_string())
    return root


async def create_intermediate(subject: str | x509.Name, public_key, issuer: IssuingCA, *, years: int,
                              permitted_dns: Sequence[str] = (), now: dt.datetime | None = None) -> x509.Certificate:
    """An intermediate signed by `issuer` (usually the root): pathLen 0, and
    critical nameConstraints with `permitted_dns` when given. Its validity is
    capped at the issuer's notAfter (logged)."""
    name = _ca_subject(subject)
    _ca_key(public_key)
    try:
        constraints = issuer.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.path_length == 0:
            raise PolicyViolation(f"CA {issuer.label!r} has pathLen 0 and cannot issue a CA",
                                  step="check-names")
    except x509.ExtensionNotFound:
        pass
    if isinstance(permitted_dns, str) or not all(isinstance(entry, str) for entry in permitted_dns):
        raise InvalidRequest(f"permitted DNS subtrees must be a list of names, not {permitted_dns!r}",
                             step="check-names")
    subtrees = []
    for entry in permitted_dns:
        domain = bare_domain(entry)  # the same spellings a policy's allowed_domains accepts
        subtrees.append(names.normalize_dns_name(domain))
        if "*" in domain:
            raise InvalidRequest(f"permitted DNS subtree {entry!r} may not contain a wildcard", step="check-names")
    subtrees = list(dict.fromkeys(subtrees))
    names.check_name_constraints([x509.DNSName(d) for d in subtrees], x509.Name([]), issuer.certificates)
    moment = _now(now)
    not_before = max(moment - BACKDATE, max(c.not_valid_before_utc for c in issuer.certificates))
    not_after = add_months(moment, 12 * _ca_years(years))
    if not_after > issuer.not_after:
        log.warning("intermediate capped at the issuer's notAfter: issuer=%s not_after=%s",
                    issuer.label, issuer.not_after.isoformat())
        not_after = issuer.not_after
    if not_after <= moment:
        raise PolicyViolation(f"the issuing CA expired on {issuer.not_after:%Y-%m-%d}", step="decide-validity")
    builder = build(role=Role.INTERMEDIATE, subject=name, issuer=issuer.certificate.subject, public_key=public_key,
                    issuer_public_key=issuer.signer.public_key, issuer_ski=issuer.ski,
                    not_before=not_before, not_after=not_after, path_length=0, permitted_dns=subtrees)
    intermediate = await _sign(issuer.signer, builder)
    _reverify(intermediate, issuer.certificate, public_key)
    log.info("created intermediate: serial=%x subject=%s issuer=%s", intermediate.serial_number,
             name.rfc4514_string(), issuer.label)
    return intermediate
