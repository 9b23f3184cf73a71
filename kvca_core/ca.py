"""CA operations: create a CA inside Key Vault, adopt an existing one, inspect it, export its trust.

A CA named NAME is two Key Vault certificates (CONTRACTS.md):
- `NAME-root`: the self-signed root (tag kvca-role=root), made only by `create_ca`;
- `NAME`: the intermediate that signs leaves (tag kvca-role=intermediate); its
  secret holds its chain up to the root.
Leaves carry the tag kvca-ca=NAME.

`create_ca` keeps both private keys inside the vault. Key Vault cannot sign a
certificate's own CSR, and a pending certificate's key is not usable for
signing until it is merged (keyvault-facts.md, "The secret and the key behind
a certificate"), so the root is made the way a public .NET library keeping CA
keys in Key Vault does it: a temporary self-signed version (issuer Self) makes
the key; a second version with issuer Unknown and `reuse_key: true` asks for a
CSR over the same key; the root certificate is signed through the keys API
with the temporary version's key and merged; the temporary version is disabled.
The intermediate is an ordinary pending certificate whose CSR gives its public
key; the root's key signs it.

Half-made CAs are never used: every object carries the tag kvca-creating until
it is complete, and only the last step of each gives it its kvca-role tag (what
`ca list`, `ca show` and `export-chain` key on, and what keeps the sweep from
renewing a CA). Until the intermediate is merged it has no completed version,
so nothing can sign with it. A re-run resumes from what the vault holds, and
refuses anything it did not make itself, before its first write.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from kvca_core import capolicy, clock
from kvca_core.authority import build_chain, parse_secret, read_certificate
from kvca_core.errors import Conflict, InvalidRequest, KvcaError, NotFound, NotManaged
from kvca_core.events import NAME_RE
from kvca_core.model import CA_ROLE_TAG, CA_TAG, CREATING_TAG, POLICY_TAG, CertificatePolicy, CertificateVersion, KeySpec, PendingRequest
from kvca_core.signing import (
    IssuancePolicy,
    IssuingCA,
    RemoteSigner,
    check_key,
    create_intermediate,
    create_root,
    names_subject,
    normalize_dns_name,
    parse_csr,
    parse_subject,
)
from kvca_core.signing.certs import is_ca_certificate, is_self_signed, issued_by, same_public_key
from kvca_core.signing.csr import verify_csr_signature
from kvca_core.signing.issue import BACKDATE, MAX_CA_YEARS, add_months

log = logging.getLogger(__name__)

ROOT_SUFFIX = "-root"
_PEM_KEY_MARKERS = (b"PRIVATE KEY-----",)
# Certificates that secrets hold: PEM for the CAs made here (readable, and a
# non-exportable certificate's secret then holds just the chain).
_PEM = "application/x-pem-file"
_PFX = "application/x-pkcs12"
_MAX_INPUT = 1024 * 1024  # a CA's PFX or PEM is a few KB; refuse anything absurd before parsing


# ---------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class CAInfo:
    """What `kvca ca show` prints about one CA (no key material, ever; JSON: `ca`)."""

    OBJECT = "ca"

    name: str
    version: str | None
    subject: str
    issuer: str
    key: str  # "EC P-256", "RSA 3072"
    key_exportable: bool | None  # from the vault's policy; None when unknown
    origin: str  # "created in Key Vault" or "imported"
    not_before: dt.datetime
    not_after: dt.datetime
    path_length: int | None
    permitted_dns: tuple[str, ...]
    excluded_dns: tuple[str, ...]
    serial: str
    sha256: str
    chain: tuple[str, ...]  # subjects above the CA, nearest first
    root_subject: str | None
    root_not_after: dt.datetime | None
    issued_valid: int  # certificates tagged kvca-ca=NAME that are enabled and not expired
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def when(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "name": self.name, "version": self.version, "subject": self.subject, "issuer": self.issuer,
            "key": self.key, "key_exportable": self.key_exportable, "origin": self.origin,
            "not_before": when(self.not_before), "not_after": when(self.not_after),
            "path_length": self.path_length, "permitted_dns": list(self.permitted_dns),
            "excluded_dns": list(self.excluded_dns), "serial": self.serial, "sha256": self.sha256,
            "chain": list(self.chain), "root_subject": self.root_subject,
            "root_not_after": when(self.root_not_after), "issued_valid": self.issued_valid,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------
# Small helpers (pure)


def _ca(name: str) -> str:
    return f"CA '{name}'"


def _cert(name: str) -> str:
    return f"certificate '{name}'"


def _check_name(name: str, what: str = "CA name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest(f"{what} {str(name)[:130]!r} is not a Key Vault object name "
                             "(1-127 letters, digits and hyphens)")
    return name


@contextmanager
def _naming(who: str):
    """The signing engine's errors say which step refused, not which object: add it."""
    try:
        yield
    except KvcaError as exc:
        exc.subject = exc.subject or who
        raise


def _describe_key(public_key) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"EC {curves.get(public_key.curve.name, public_key.curve.name)}"
    return type(public_key).__name__


def _key_matches_spec(public_key, spec: KeySpec) -> bool:
    if spec.kty.upper().startswith("RSA"):
        return isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == spec.size
    return _describe_key(public_key) == f"EC {spec.curve}"


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _name_constraints(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return (), ()
    permitted = tuple(g.value for g in (nc.permitted_subtrees or ()) if isinstance(g, x509.DNSName))
    excluded = tuple(g.value for g in (nc.excluded_subtrees or ()) if isinstance(g, x509.DNSName))
    return permitted, excluded


def _cert_label(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def order_chain(leaf: x509.Certificate, others: Iterable[x509.Certificate], who: str) -> list[x509.Certificate]:
    """[leaf, its issuer, ...] from an unordered bundle (authority.build_chain: every link's
    signature checked), refusing links that are no CA and certificates off the path: a trust
    bundle with strangers in it is a mistake worth hearing about."""
    pool = [c for c in others if c != leaf]
    chain = [leaf, *build_chain(leaf, pool)]
    for parent in chain[1:]:
        if not is_ca_certificate(parent):
            raise InvalidRequest(f"chain certificate {_cert_label(parent)!r} is not a CA certificate "
                                 "(basicConstraints CA:TRUE with keyCertSign)", subject=who)
    strangers = [c for c in pool if c not in chain]
    if strangers:
        raise InvalidRequest(f"chain certificate {_cert_label(strangers[0])!r} is not an issuer of "
                             f"{_cert_label(chain[-1])!r} (each chain certificate must sign the one before it)",
                             subject=who)
    return chain


def _decoded(certs: list[x509.Certificate], who: str, what: str) -> list[x509.Certificate]:
    """cryptography parses extensions lazily: touch them now, so a malformed one in a user's
    file is a clear error here rather than a ValueError deep in the checks."""
    for cert in certs:
        try:
            cert.extensions  # noqa: B018
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            raise InvalidRequest(f"{what}: certificate {_cert_label(cert)!r} has a malformed extension "
                                 f"({_safe_reason(exc)})", subject=who) from None
    return certs


def _load_pem_certs(data: bytes, who: str, what: str) -> list[x509.Certificate]:
    if len(data) > _MAX_INPUT:
        raise InvalidRequest(f"{what} is {len(data)} bytes; at most {_MAX_INPUT} are accepted", subject=who)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        # DER is allowed for a single certificate (what some tools write for .crt files).
        try:
            return _decoded([x509.load_der_x509_certificate(data)], who, what)
        except ValueError:
            raise InvalidRequest(f"{what} holds no PEM 'CERTIFICATE' block and is not a DER certificate",
                                 subject=who) from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InvalidRequest(f"{what} is not valid PEM: {_safe_reason(exc)}", subject=who) from None
    return _decoded(certs, who, what)


def _safe_reason(exc: Exception) -> str:
    """A parser's message, cut short: cryptography's messages hold no key material,
    but a hostile file could make them long."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def _to_password(password: str | bytes | None) -> bytes | None:
    if password is None:
        return None
    if isinstance(password, str):
        password = password.encode("utf-8")
    return password or None


def key_is_encrypted(key_pem: bytes) -> bool:
    """True for encrypted PKCS#8 (`step ca init`'s files) and legacy encrypted PEM."""
    return b"ENCRYPTED PRIVATE KEY" in key_pem or b"Proc-Type: 4,ENCRYPTED" in key_pem


def pfx_needs_password(pfx: bytes) -> bool:
    """True when the PFX does not open without a password (or is not a PFX at all:
    then asking for a password does no harm and import_ca names the real problem)."""
    try:
        pkcs12.load_key_and_certificates(pfx, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return True
    return False


def _load_private_key(key_pem: bytes, password: bytes | None, who: str):
    if len(key_pem) > _MAX_INPUT:
        raise InvalidRequest(f"key file is {len(key_pem)} bytes; at most {_MAX_INPUT} are accepted", subject=who)
    if not any(m in key_pem for m in _PEM_KEY_MARKERS):
        raise InvalidRequest("key file holds no PEM 'PRIVATE KEY' block", subject=who)
    encrypted = key_is_encrypted(key_pem)
    if encrypted and password is None:
        raise InvalidRequest("key file is encrypted and no password was given",
                             subject=who, hint="use --password-file FILE or type it at the prompt")
    try:
        return serialization.load_pem_private_key(key_pem, password=password if encrypted else None)
    except TypeError:
        raise InvalidRequest("key file is encrypted and no password was given", subject=who) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        if encrypted:
            # cryptography says "Bad decrypt. Incorrect password?" for a wrong password.
            raise InvalidRequest("cannot decrypt the key file: wrong password (or a damaged file)",
                                 subject=who) from None
        raise InvalidRequest(f"key file is not a valid PEM private key: {_safe_reason(exc)}",
                             subject=who) from None


def _pem(certs: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def _subject_with_cn_suffix(name: x509.Name, suffix: str) -> x509.Name:
    """The root's subject: the CA's subject with ' Root' appended to its CN."""
    rdns = []
    for rdn in name.rdns:
        attrs = []
        for attr in rdn:
            if attr.oid == NameOID.COMMON_NAME:
                attr = x509.NameAttribute(NameOID.COMMON_NAME, f"{attr.value}{suffix}")
            attrs.append(attr)
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


# Names cryptography's RFC 4514 writer does not know; these are the ones Key Vault
# and signing.names.parse_subject read.
_NAME_OVERRIDES = {NameOID.EMAIL_ADDRESS: "E", NameOID.SERIAL_NUMBER: "SERIALNUMBER"}


def _kv_subject(name: x509.Name) -> str:
    """Key Vault's spelling ("CN=a, O=b", most specific first) for a policy's subject.

    Each attribute is written by cryptography's RFC 4514 writer, so every special
    character is escaped (RFC 4514 2.4: '+', '"', ';', '<', '>', a leading '#', ...);
    escaping only ',' and '\\' made the vault refuse a CA named 'A+B' or '#1'. (That the
    real service reads RFC 4514 escapes is unconfirmed; the emulator does.)"""
    return ", ".join(x509.Name([attr]).rfc4514_string(_NAME_OVERRIDES) for attr in reversed(list(name)))


def _check_permitted_dns(values: Sequence[str]) -> tuple[str, ...]:
    """The signing engine's own DNS syntax check (names.normalize_dns_name, which
    create_intermediate applies to each subtree), run before the first write: a suffix it
    would refuse must not be found only after the root exists."""
    out = []
    for raw in values:
        value = raw.strip().lower()
        try:
            if "*" in value:
                raise InvalidRequest("a name constraint is a domain, without a wildcard")
            normalize_dns_name(value[1:] if value.startswith(".") else value)
        except InvalidRequest as exc:
            raise InvalidRequest(f"permitted DNS name {raw!r} is not a DNS name or suffix: {exc.message}",
                                 hint="e.g. --permitted-dns mycompany.local") from None
        out.append(value)
    return tuple(out)


# ---------------------------------------------------------------------------
# Reading what the vault holds


async def _current(vault, name: str) -> CertificateVersion | None:
    try:
        return await vault.get_certificate(name)
    except NotFound:
        return None


def _cert_of(version: CertificateVersion | None) -> x509.Certificate | None:
    if version is None or not version.cer:
        return None
    return read_certificate(version.cer, _cert(version.name))


def _remote_signer(vault, key_id: str, public_key):
    return RemoteSigner(public_key, partial(vault.sign_digest, key_id), key_id=key_id)


def _csr_public_key(pending: PendingRequest, who: str):
    """The public key of a pending request's CSR (vault data: parsed and verified by the signing
    engine's own first steps)."""
    if not pending.csr:
        raise Conflict("the pending request carries no CSR", subject=_cert(who),
                       hint=f"delete it: az keyvault certificate pending delete --name {who}")
    with _naming(_cert(who)):
        csr = parse_csr(pending.csr)
        verify_csr_signature(csr)
    return csr.public_key()


@dataclass
class _State:
    """One object of a CA as the vault holds it now."""

    name: str
    current: CertificateVersion | None
    pending: PendingRequest | None

    @property
    def tags(self):
        return dict(self.current.tags) if self.current is not None and self.current.tags else {}

    @property
    def exists(self) -> bool:
        return self.current is not None or self.pending is not None

    @property
    def role(self) -> str | None:
        return self.tags.get(CA_ROLE_TAG)

    @property
    def creating(self) -> str | None:
        return self.tags.get(CREATING_TAG)

    @property
    def in_progress(self) -> bool:
        return self.pending is not None and self.pending.in_progress


async def _state(vault, name: str) -> _State:
    current = await _current(vault, name)
    pending = await vault.get_pending(name)
    if current is None and pending is not None:
        # A certificate whose only version is pending: the service may answer 404 for it, but
        # its listing (include_pending) still shows the tags it was created with.
        async for item in vault.list_certificates(include_pending=True):
            if item.name == name:
                current = item
                break
    return _State(name, current, pending)


# ---------------------------------------------------------------------------
# create


async def _check_policy_name(vault, name: str) -> None:
    """The CA's policy secret `<CA>-policy` must be free for a plain secret: a certificate of that
    name owns the secret of its name, and the vault would refuse the policy after the CA exists."""
    policy_name = capolicy.secret_name(name)
    if await _current(vault, policy_name) is not None:
        raise Conflict(f"a certificate named '{policy_name}' exists, and a CA's issuance policy is kept in the "
                       f"secret of that name", subject=_ca(name), hint="choose another CA name")


def _years(years: int, what: str = "CA") -> int:
    # Checked here as well as in the signing engine: before the first write, not after the root exists.
    if not isinstance(years, int) or isinstance(years, bool) or not 1 <= years <= MAX_CA_YEARS:
        raise InvalidRequest(f"{what} validity of {years!r} years is not a whole number from 1 to {MAX_CA_YEARS}")
    return years


def default_root_years(years: int) -> int:
    """The root's lifetime when none is given: twice the intermediate's, at most MAX_CA_YEARS.

    The root outlives its intermediate so that a full-length successor (`kvca ca rotate`) still
    fits under the same root, and the trust anchor handed to every client is handed out once.
    Public CAs are built the same way (Let's Encrypt's ISRG Root X1 runs 20 years, 2015-2035,
    over 5-year intermediates); `step ca init` gives both 10 years (smallstep's
    DefaultIntermediateCertValidity), which leaves no room to rotate."""
    return min(2 * years, MAX_CA_YEARS)


def _root_lifetime_is(cert: x509.Certificate, years: int) -> bool:
    """Whether `create_root` gave this root `years` years: its notBefore is the moment of
    creation minus BACKDATE, its notAfter that moment plus `years` calendar years."""
    moment = cert.not_valid_before_utc + BACKDATE
    return add_months(moment, 12 * years) == cert.not_valid_after_utc


async def create_ca(ctx, name: str, *, subject: str, key: str = "ec-p256", years: int = 10,
                    permitted_dns: Sequence[str] = (), exportable: bool = False,
                    root_subject: str | None = None, root_years: int | None = None, policy=None) -> CAInfo:
    """Create root `NAME-root` and intermediate `NAME`, both keys generated in the vault.

    `years`: the intermediate's lifetime; `root_years`: the root's, at least `years`
    (default `default_root_years(years)`); `root_subject`: default the CA's subject with
    " Root" after its CN. Everything the caller gives is checked before the vault is touched;
    every name collision with something kvca did not make is refused before the first
    write. Re-running after a failure resumes from the vault's state, and refuses a root made
    with other root options than the ones given.

    `policy`: the CA's issuance policy (a mapping), stored with it (capolicy.py) and in force
    from the moment the intermediate gets its role tag, in the same PATCH; None: the default
    that capolicy.policy_for_new_ca describes.
    """
    _check_name(name)
    capolicy.check_free(name, "CA")
    if len(name) + len(ROOT_SUFFIX) > 127:
        raise InvalidRequest(f"CA name {name!r} is too long: '{name}{ROOT_SUFFIX}' must fit in 127 characters")
    root_name = name + ROOT_SUFFIX
    ca_subject = parse_subject(subject)
    if not ca_subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise InvalidRequest(f"subject {subject!r} has no CN; a CA needs a common name (e.g. CN=Example CA)",
                             subject=_ca(name))
    years = _years(years)
    root_years = default_root_years(years) if root_years is None else _years(root_years, "root")
    if root_years < years:
        raise InvalidRequest(f"root validity of {root_years} years is shorter than the intermediate's {years}: "
                             "an intermediate cannot outlive its root", subject=_ca(name),
                             hint=f"give --root-years {years} or more (default: {default_root_years(years)})")
    root_x509 = _root_subject(name, ca_subject, root_subject)
    permitted = _check_permitted_dns(permitted_dns)
    issuance, policy_note = capolicy.policy_for_new_ca(ctx.settings.issuance_policy, name, policy, permitted)
    # The root's key is never exportable; the intermediate's only on request.
    root_spec = KeySpec.parse(key, exportable=False)
    inter_spec = KeySpec.parse(key, exportable=exportable)
    vault = ctx.vault

    root = await _state(vault, root_name)
    inter = await _state(vault, name)
    notes: list[str] = []

    # Refuse every collision before the first write, so bad input leaves the vault as it was.
    if inter.role == "intermediate" and not inter.in_progress:
        raise Conflict("already exists", subject=_ca(name),
                       hint="`kvca ca show` it, or choose another name")
    if inter.exists and inter.creating != "intermediate":
        raise Conflict("a certificate of this name exists and was not made by `kvca ca create`",
                       subject=_cert(name), hint="choose another CA name")
    if root.exists and root.creating != "root" and root.role != "root":
        raise Conflict("a certificate of this name exists and was not made by `kvca ca create`",
                       subject=_cert(root_name), hint="choose another CA name")
    if root.role == "root" and root.in_progress:
        raise Conflict("the root has a pending request that kvca did not start", subject=_cert(root_name),
                       hint=f"delete it: az keyvault certificate pending delete --name {root_name}")
    await _check_policy_name(vault, name)
    if root.role == "root" or inter.exists or root.exists:
        notes.append("resumed an unfinished `kvca ca create`")
        log.info("create_ca resume name=%s root_role=%s root_creating=%s inter_creating=%s",
                 name, root.role, root.creating, inter.creating)

    # One moment for both: with --root-years equal to --years the intermediate then ends exactly
    # when the root does (step ca init gives both 10 years) instead of being capped a few seconds short.
    moment = clock.now()
    root_cert, root_key_id = await _ensure_root(vault, root, root_x509, root_spec, root_years, moment)
    root_signer = _remote_signer(vault, root_key_id, root_cert.public_key())
    # The policy secret is written before the intermediate's role tag, which then names it: the
    # CA becomes usable and gets its policy at once. A re-run reuses the version (capolicy.store).
    policy_tags = {POLICY_TAG: await capolicy.store(vault, name, issuance)} if issuance is not None else {}
    inter_version = await _ensure_intermediate(vault, inter, ca_subject, inter_spec, years, permitted,
                                               root_cert, root_signer, moment, policy_tags)
    log.info("create_ca done name=%s version=%s", name, inter_version.version)
    info = await show_ca(ctx, name)
    if exportable:
        notes.append("the intermediate's key is exportable (--exportable): its secret holds the private key")
    else:
        notes.append("both private keys were generated in Key Vault and cannot be exported")
    notes.append(policy_note)
    return replace(info, notes=tuple(notes))


def _root_subject(name: str, ca_subject: x509.Name, text: str | None) -> x509.Name:
    if text is None:
        return _subject_with_cn_suffix(ca_subject, " Root")
    root_subject = parse_subject(text)
    if not root_subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise InvalidRequest(f"root subject {text!r} has no CN; a CA needs a common name (e.g. CN=Example Root CA)",
                             subject=_ca(name))
    if root_subject == ca_subject:
        # The intermediate would name itself as its issuer: chain builders take it for a root.
        raise InvalidRequest(f"root subject {text!r} is the intermediate's subject; the two must differ",
                             subject=_ca(name), hint="leave --root-subject out for '<CN> Root'")
    return root_subject


def _ca_policy(subject: x509.Name, spec: KeySpec, issuer_name: str, years: int) -> CertificatePolicy:
    return CertificatePolicy(
        issuer_name=issuer_name,
        subject=_kv_subject(subject),
        key_usage=("keyCertSign", "cRLSign", "digitalSignature"),
        validity_months=min(years * 12, 1200) if issuer_name == "Unknown" else 12,
        key=spec,
        content_type=_PEM,
    )


async def _find_temporary_version(vault, name: str, public_key) -> CertificateVersion:
    """The completed self-signed version whose key the pending root version reuses."""
    async for props in vault.list_versions(name):
        if not props.version or not props.enabled:
            continue
        try:
            version = await vault.get_certificate(name, props.version)
        except NotFound:  # the pending version itself, on services that list it
            continue
        cert = _cert_of(version)
        if cert is not None and version.key_id and same_public_key(cert.public_key(), public_key):
            return version
    raise Conflict("no completed version holds the key of the pending root request", subject=_cert(name),
                   hint=f"delete the pending request (az keyvault certificate pending delete --name {name}) "
                        "and run `kvca ca create` again")


async def _ensure_root(vault, state: _State, subject: x509.Name, spec: KeySpec, years: int,
                       moment: dt.datetime):
    """-> (root certificate, key id of its merged version)."""
    name = state.name
    if state.role == "root":
        cert = _cert_of(state.current)
        if cert is None or not is_self_signed(cert) or not is_ca_certificate(cert):
            raise Conflict("is tagged as a kvca root but is not a self-signed CA certificate", subject=_cert(name))
        _check_existing_root(name, cert, subject, years)
        log.info("create_ca root reused name=%s version=%s", name, state.current.version)
        return cert, state.current.key_id

    pending = state.pending if state.in_progress else None
    current = state.current
    if current is not None and pending is None:
        policy = await vault.get_policy(name)
        if policy.issuer_name.lower() == "unknown":
            # Merged, not yet tagged: check it is the root we meant, then finish below.
            cert = _cert_of(current)
            if cert is None or not is_self_signed(cert) or not is_ca_certificate(cert):
                raise Conflict("an unfinished root holds a certificate that is not the expected root",
                               subject=_cert(name), hint="delete it and run `kvca ca create` again")
            _check_existing_root(name, cert, subject, years)
            await _finish_root(vault, name, current, cert)
            return cert, current.key_id
    if current is None and pending is None:
        # Step 1: a temporary self-signed version, only to have Key Vault make the key.
        log.info("create_ca root step=temporary name=%s", name)
        current = await vault.create_certificate(name, _ca_policy(subject, spec, "Self", years),
                                                 tags={CREATING_TAG: "root"})
        if not isinstance(current, CertificateVersion) or not current.key_id:
            raise Conflict("the temporary self-signed version did not complete", subject=_cert(name))
    if pending is None:
        # Step 2: a version with issuer Unknown over the same key (reuse_key), for its CSR.
        log.info("create_ca root step=request name=%s", name)
        pending = await vault.create_certificate(
            name, _ca_policy(subject, replace(spec, reuse_key=True), "Unknown", years),
            tags={CREATING_TAG: "root"})
        if not isinstance(pending, PendingRequest):
            raise Conflict("the root's request with issuer Unknown did not stay pending", subject=_cert(name))
    else:
        # Resumed: the request the first attempt made holds that attempt's root subject and
        # lifetime. The merge checks only the key, so a root signed with other options would
        # be merged over a request that asked for something else.
        made = await vault.get_policy(name)
        if not names_subject(made.subject, subject):
            raise Conflict(f"the pending root request was made for the subject {made.subject!r}, not "
                           f"{subject.rfc4514_string()!r}", subject=_cert(name),
                           hint="run `kvca ca create` with the --subject and --root-subject of the first attempt")
        asked_months = _ca_policy(subject, spec, "Unknown", years).validity_months
        made_months = made.validity_months
        if made_months != asked_months:
            raise Conflict(f"the pending root request was made for a {made_months}-month root, not "
                           f"{asked_months} months (--root-years {years})", subject=_cert(name),
                           hint="run `kvca ca create` with the --years and --root-years of the first attempt")
    csr_key = _csr_public_key(pending, name)
    if not _key_matches_spec(csr_key, spec):
        raise Conflict(f"the pending root request has a {_describe_key(csr_key)} key, not the requested one",
                       subject=_cert(name), hint="run `kvca ca create` with the --key of the first attempt")
    temporary = await _find_temporary_version(vault, name, csr_key)
    # Step 3: sign the root with the temporary version's key (the pending key cannot sign yet).
    log.info("create_ca root step=sign name=%s temporary=%s", name, temporary.version)
    signer = _remote_signer(vault, temporary.key_id, csr_key)
    cert = await create_root(subject, signer, years=years, now=moment)
    # Step 4: merge; Key Vault checks the certificate's key is the pending key.
    merged = await vault.merge(name, [cert.public_bytes(serialization.Encoding.DER)])
    await _finish_root(vault, name, merged, cert)
    return cert, merged.key_id


def _check_existing_root(name: str, cert: x509.Certificate, subject: x509.Name, years: int) -> None:
    """A resumed `ca create` finishes only the root it was asked for: same subject, same lifetime."""
    if cert.subject != subject:
        raise Conflict(f"the existing root's subject is {_cert_label(cert)!r}, not "
                       f"{subject.rfc4514_string()!r}", subject=_cert(name),
                       hint="run `kvca ca create` with the --subject and --root-subject of the first attempt, "
                            "or delete the root")
    if not _root_lifetime_is(cert, years):
        raise Conflict(f"the existing root is valid until {cert.not_valid_after_utc:%Y-%m-%d}, not for "
                       f"{years} years from its start ({cert.not_valid_before_utc:%Y-%m-%d})", subject=_cert(name),
                       hint="run `kvca ca create` with the --years and --root-years of the first attempt, "
                            "or delete the root")


async def _finish_root(vault, name: str, merged: CertificateVersion, cert: x509.Certificate) -> None:
    # Step 5: the temporary versions are disabled, then the root gets its role tag.
    async for props in vault.list_versions(name):
        if props.version and props.version != merged.version and props.enabled:
            await vault.update_properties(name, props.version, enabled=False)
    await vault.update_properties(name, merged.version, tags={CA_ROLE_TAG: "root"})
    log.info("create_ca root complete name=%s version=%s serial=%x", name, merged.version, cert.serial_number)


async def _ensure_intermediate(vault, state: _State, subject: x509.Name, spec: KeySpec, years: int,
                               permitted: tuple[str, ...], root_cert: x509.Certificate, root_signer,
                               moment: dt.datetime, policy_tags: dict[str, str] | None = None):
    name = state.name
    chain_der = [root_cert.public_bytes(serialization.Encoding.DER)]
    if state.current is not None and state.current.cer and not state.in_progress:
        # Merged on an earlier run but not tagged: only tag what the root really signed.
        cert = _cert_of(state.current)
        if not issued_by(cert, root_cert) or not is_ca_certificate(cert):
            raise Conflict("an unfinished intermediate holds a certificate the root did not sign", subject=_ca(name),
                           hint="delete it and run `kvca ca create` again")
        merged = state.current
    else:
        pending = state.pending if state.in_progress else None
        if pending is None:
            log.info("create_ca intermediate step=request name=%s", name)
            pending = await vault.create_certificate(name, _ca_policy(subject, spec, "Unknown", years),
                                                     tags={CREATING_TAG: "intermediate"})
            if not isinstance(pending, PendingRequest):
                raise Conflict("the intermediate's request with issuer Unknown did not stay pending", subject=_ca(name))
        public_key = _csr_public_key(pending, name)
        if not _key_matches_spec(public_key, spec):
            raise Conflict(f"the pending intermediate request has a {_describe_key(public_key)} key, "
                           "not the requested one", subject=_ca(name),
                           hint="run `kvca ca create` with the --key of the first attempt")
        made_exportable = (await vault.get_policy(name)).key.exportable
        if made_exportable != spec.exportable:
            # Never finish a CA whose key is more (or less) exportable than this run asked for.
            raise Conflict(f"the pending intermediate request was made with "
                           f"{'an exportable' if made_exportable else 'a non-exportable'} key", subject=_ca(name),
                           hint="run `kvca ca create` again with the --exportable choice of the first attempt")
        log.info("create_ca intermediate step=sign name=%s", name)
        issuer = IssuingCA(root_cert, [], root_signer)
        cert = await create_intermediate(subject, public_key, issuer, years=years,
                                         permitted_dns=permitted, now=moment)
        merged = await vault.merge(name, [cert.public_bytes(serialization.Encoding.DER)] + chain_der)
    # Last step: the role tag makes it a CA that leaves may name (with its policy's tag, if any).
    await vault.update_properties(name, merged.version, tags={CA_ROLE_TAG: "intermediate", **(policy_tags or {})})
    log.info("create_ca intermediate complete name=%s version=%s serial=%x", name, merged.version,
             cert.serial_number)
    return merged


# ---------------------------------------------------------------------------
# import


async def import_ca(ctx, name: str, *, pfx: bytes | None = None, password: str | bytes | None = None,
                    cert_pem: bytes | None = None, key_pem: bytes | None = None,
                    chain_pem: bytes | None = None, policy=None) -> CAInfo:
    """Adopt an existing CA (e.g. `step ca init`'s intermediate): upload it with its chain.

    Either a PFX (with its password) or the CA certificate's PEM, its private
    key PEM (encrypted PKCS#8 with `password`) and optionally the chain above
    it. Everything is parsed and checked in memory first; nothing is written
    to the vault unless all of it is sound. `policy`: as for `create_ca`.
    """
    _check_name(name)
    capolicy.check_free(name, "CA")
    who = _ca(name)
    pw = _to_password(password)
    if pfx is not None and (cert_pem is not None or key_pem is not None or chain_pem is not None):
        raise InvalidRequest("give either a PFX or PEM files, not both", subject=who)
    if pfx is not None:
        if len(pfx) > _MAX_INPUT:
            raise InvalidRequest(f"PFX is {len(pfx)} bytes; at most {_MAX_INPUT} are accepted", subject=who)
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(pfx, pw)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # cryptography cannot tell a wrong password from a damaged file.
            raise InvalidRequest("cannot read the PFX: wrong password or not a PKCS#12 file", subject=who,
                                 hint="give the password with --password-file" if pw is None else None) from None
        if key is None or cert is None:
            raise InvalidRequest("the PFX must hold the CA certificate and its private key", subject=who)
        others = _decoded(list(extra), who, "PFX")
        _decoded([cert], who, "PFX")
    elif cert_pem is not None and key_pem is not None:
        certs = _load_pem_certs(cert_pem, who, "certificate file")
        key = _load_private_key(key_pem, pw, who)
        # The CA certificate is the one that matches the key; the rest of the file is chain.
        match = [c for c in certs if same_public_key(c.public_key(), key.public_key())]
        if not match:
            raise InvalidRequest("the private key does not belong to the certificate "
                                 f"{_cert_label(certs[0])!r}", subject=who)
        cert = match[0]
        others = [c for c in certs if c is not cert]
        if chain_pem is not None:
            others += _load_pem_certs(chain_pem, who, "chain file")
    else:
        raise InvalidRequest("give --pfx FILE, or --cert FILE and --key FILE", subject=who)

    if not same_public_key(cert.public_key(), key.public_key()):
        raise InvalidRequest(f"the private key does not belong to the certificate {_cert_label(cert)!r}",
                             subject=who)
    with _naming(who):
        check_key(cert.public_key(), IssuancePolicy())  # the signing engine's key rules, default policy
    if not is_ca_certificate(cert):
        raise InvalidRequest(f"certificate {_cert_label(cert)!r} is not a CA certificate "
                             "(it needs basicConstraints CA:TRUE and keyUsage keyCertSign)", subject=who)
    now = clock.now()
    if cert.not_valid_after_utc <= now:
        raise InvalidRequest(f"certificate {_cert_label(cert)!r} expired on "
                             f"{cert.not_valid_after_utc:%Y-%m-%d}", subject=who)
    chain = order_chain(cert, others, who)
    notes = ["the private key of an imported CA has existed outside Key Vault and stays exportable "
             "by nature: delete the local copies, or use `kvca ca create` for a key that never leaves the vault"]
    if not is_self_signed(chain[-1]):
        notes.append(f"the chain ends at {_cert_label(chain[-1])!r}, not at a self-signed root: "
                     "`kvca export-chain --include-root` cannot add the root")

    issuance, policy_note = capolicy.policy_for_new_ca(ctx.settings.issuance_policy, name, policy,
                                                       _name_constraints(cert)[0])
    notes.append(policy_note)

    vault = ctx.vault
    state = await _state(vault, name)
    if state.exists:
        if state.role == "intermediate":
            raise Conflict("already exists in the vault", subject=_ca(name), hint="choose another CA name")
        raise Conflict("a certificate of this name already exists in the vault", subject=_cert(name),
                       hint="choose another CA name")
    await _check_policy_name(vault, name)

    # Key Vault imports a password-less PFX of key + chain (the recipe's `step certificate p12
    # --no-password --insecure` + `az keyvault certificate import`); it lives in memory only.
    bundle = pkcs12.serialize_key_and_certificates(
        name.encode("ascii"), key, cert, chain[1:], serialization.NoEncryption())
    spec = KeySpec("RSA", size=cert.public_key().key_size) if isinstance(cert.public_key(), rsa.RSAPublicKey) \
        else KeySpec("EC", curve=_describe_key(cert.public_key()).split(" ", 1)[1])
    policy = CertificatePolicy(issuer_name="Unknown", subject=_kv_subject(cert.subject),
                               key=replace(spec, exportable=True), content_type=_PFX,
                               key_usage=("keyCertSign", "cRLSign", "digitalSignature"))
    tags = {CA_ROLE_TAG: "intermediate"}
    if issuance is not None:  # written first: the imported CA names it from its first moment
        tags[POLICY_TAG] = await capolicy.store(vault, name, issuance)
    version = await vault.import_certificate(name, bundle, policy=policy, tags=tags)
    del bundle, key
    log.info("import_ca name=%s version=%s serial=%x", name, version.version, cert.serial_number)
    info = await show_ca(ctx, name)
    return replace(info, notes=tuple(notes))


# ---------------------------------------------------------------------------
# inspect


async def _ca_chain(vault, name: str) -> tuple[CertificateVersion, list[x509.Certificate], bool]:
    """The CA's current version, [its certificate, ..., root?], and whether the root
    `NAME-root` that `kvca ca create` made issued it.

    A created CA's chain comes from the certificates API, as authority.py takes it: its
    secret (which holds the private key when --exportable) is not read. An imported CA's
    chain is only in its secret; the key parsed with it is dropped at once."""
    current = await _current(vault, name)
    if current is None:
        if await vault.get_pending(name) is not None:
            raise NotFound("this CA is not finished (only a pending request exists)", subject=_ca(name),
                           hint="run the same `kvca ca create` again to finish it")
        raise NotFound("no CA of this name in the vault", subject=_ca(name), hint="`kvca ca list` shows the CAs")
    if (current.tags or {}).get(CA_ROLE_TAG) != "intermediate":
        if (current.tags or {}).get(CREATING_TAG):
            raise NotFound("this CA is not finished", subject=_ca(name),
                           hint="run the same `kvca ca create` again to finish it")
        if (current.tags or {}).get(CA_ROLE_TAG) == "root" and name.endswith(ROOT_SUFFIX):
            ca = name[: -len(ROOT_SUFFIX)]
            raise NotManaged(f"is the root of CA '{ca}', which signs through its intermediate", subject=_ca(name),
                             hint=f"`kvca ca show {ca}`")
        raise NotManaged(f"the certificate is not a kvca CA (no tag {CA_ROLE_TAG}=intermediate)", subject=_ca(name),
                         hint="`kvca ca list` shows the CAs")
    cert = _cert_of(current)
    if cert is None:
        raise NotFound("the CA has no completed version", subject=_ca(name))
    root_version = await _current(vault, name + ROOT_SUFFIX)
    if root_version is not None and (root_version.tags or {}).get(CA_ROLE_TAG) == "root":
        root = _cert_of(root_version)
        if root is not None and is_ca_certificate(root) and issued_by(cert, root):
            return current, [cert, root], True
    content_type, value = await vault.get_secret_value(name, current.version)
    key, certs = parse_secret(_ca(name), content_type, value)
    del key, value
    return current, order_chain(cert, [c for c in certs if c != cert], _ca(name)), False


async def _scan(vault) -> tuple[list[str], dict[str, int]]:
    """One listing of the vault: the finished CAs (tag kvca-role=intermediate) by name, and for
    each CA name how many certificates tagged kvca-ca=NAME are enabled and not expired."""
    listed = [item async for item in vault.list_certificates(include_pending=False)]
    now = clock.now()  # after the listing: kvca's clock follows the vault's answers (clock.py)
    names: list[str] = []
    counts: dict[str, int] = {}
    for item in listed:
        tags = item.tags or {}
        if tags.get(CA_ROLE_TAG) == "intermediate":
            names.append(item.name)
        ca = tags.get(CA_TAG)
        if ca and item.enabled and item.expires_on is not None and item.expires_on > now:
            counts[ca] = counts.get(ca, 0) + 1
    return sorted(names), counts


async def _info(vault, name: str, counts: dict[str, int] | None = None) -> CAInfo:
    current, chain, created = await _ca_chain(vault, name)
    cert = chain[0]
    if counts is None:
        _, counts = await _scan(vault)
    try:
        exportable = (await vault.get_policy(name)).key.exportable
    except NotFound:
        exportable = None
    root = chain[-1] if is_self_signed(chain[-1]) else None
    bc = _basic_constraints(cert)
    permitted, excluded = _name_constraints(cert)
    return CAInfo(
        name=name, version=current.version, subject=_cert_label(cert), issuer=cert.issuer.rfc4514_string(),
        key=_describe_key(cert.public_key()), key_exportable=exportable,
        origin="created in Key Vault" if created else "imported",
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        path_length=bc.path_length if bc else None, permitted_dns=permitted, excluded_dns=excluded,
        serial=f"{cert.serial_number:x}", sha256=cert.fingerprint(hashes.SHA256()).hex(),
        chain=tuple(_cert_label(c) for c in chain[1:]),
        root_subject=_cert_label(root) if root is not None else None,
        root_not_after=root.not_valid_after_utc if root is not None else None,
        issued_valid=counts.get(name, 0),
    )


async def show_ca(ctx, name: str) -> CAInfo:
    _check_name(name)
    return await _info(ctx.vault, name)


async def ca_names(ctx) -> list[str]:
    """The names of the finished CAs in the vault, sorted: one listing, nothing else read."""
    names, _ = await _scan(ctx.vault)
    return names


async def list_cas(ctx) -> list[CAInfo]:
    """Every finished CA in the vault (tag kvca-role=intermediate), by name."""
    names, counts = await _scan(ctx.vault)
    return [await _info(ctx.vault, n, counts) for n in names]


# ---------------------------------------------------------------------------
# export


async def export_chain(ctx, name: str, include_root: bool = False) -> str:
    """PEM trust bundle of CA `name`: its certificate and those above it; the root only if asked."""
    return _pem(await trust_certificates(ctx, name, "both" if include_root else "intermediate"))


# What each consumer takes (README, "Using kvca certificates with Azure services"): the root
# alone (a trust store, Application Gateway's backend root), the intermediate alone (an Event
# Grid namespace's CA certificate: the immediate issuer), or both (Application Gateway's trusted
# client CA, API Management's CA certificates).
TRUST_WHICH = ("intermediate", "root", "both")
# PEM: any number of certificates; DER (`.cer`): exactly one; PKCS#7 (`.p7b`, DER-encoded
# SignedData with certificates only, RFC 2315 section 9.1 "degenerate case").
TRUST_FORMATS = ("pem", "der", "p7b")


async def trust_certificates(ctx, name: str, which: str = "intermediate") -> list[x509.Certificate]:
    """CA `name`'s trust certificates, nearest first: `intermediate` (the CA and any CA above it
    short of the root), `root` (the self-signed root alone) or `both`."""
    _check_name(name)
    if which not in TRUST_WHICH:
        raise InvalidRequest(f"{which!r} is not one of {', '.join(TRUST_WHICH)}", subject=_ca(name))
    _, chain, _ = await _ca_chain(ctx.vault, name)
    has_root = is_self_signed(chain[-1])
    if which in ("root", "both") and not has_root:
        raise NotFound("the CA's chain does not reach a self-signed root, so it cannot be included",
                       subject=_ca(name), hint="import the CA again with --chain holding the root")
    if which == "root":
        return [chain[-1]]
    if which == "intermediate" and len(chain) > 1 and has_root:
        return chain[:-1]
    return chain


def encode_trust(certs: Sequence[x509.Certificate], fmt: str, who: str) -> bytes:
    """Certificates as PEM, DER (one certificate only: the format has room for one) or PKCS#7."""
    if fmt == "pem":
        return _pem(certs).encode("ascii")
    if fmt == "der":
        if len(certs) != 1:
            raise InvalidRequest(f"DER (.cer) holds exactly one certificate, and this selection has {len(certs)}",
                                 subject=who, hint="choose --which root or an intermediate CA, or use pem or p7b")
        return certs[0].public_bytes(serialization.Encoding.DER)
    if fmt == "p7b":
        return pkcs7.serialize_certificates(list(certs), serialization.Encoding.DER)
    raise InvalidRequest(f"format {fmt!r} is not one of {', '.join(TRUST_FORMATS)}", subject=who)


async def export_trust(ctx, name: str, which: str = "intermediate", fmt: str = "pem") -> bytes:
    """`kvca export-chain`: the chosen trust certificates of CA `name` in the chosen format."""
    return encode_trust(await trust_certificates(ctx, name, which), fmt, _ca(name))


DOWNLOAD_FORMATS = ("pem", "pfx")


async def download(ctx, name: str, fmt: str = "pem", *, password: bytes | None = None) -> bytes:
    """The certificate's private key and chain, as PEM or as a PFX (password-less, or encrypted
    with `password`: PBES2 with AES-256-CBC and an HMAC-SHA256 MAC, cryptography's best
    available PKCS#12 encryption).

    Only for exportable certificates: the caller writes the bytes to a file
    of mode 0600 and nowhere else.
    """
    _check_name(name, "certificate name")
    if fmt not in DOWNLOAD_FORMATS:
        raise InvalidRequest(f"format {fmt!r} is not supported (use pem or pfx)", subject=_cert(name))
    if password is not None and (fmt != "pfx" or not password):
        raise InvalidRequest("a password applies to a PFX only, and may not be empty", subject=_cert(name))
    vault = ctx.vault
    current = await _current(vault, name)
    if current is None:
        raise NotFound("no certificate of this name in the vault", subject=_cert(name))
    if not current.cer:
        raise NotFound("the certificate has no completed version yet (still pending?)", subject=_cert(name))
    leaf = read_certificate(current.cer, _cert(name))
    content_type, value = await vault.get_secret_value(name, current.version)
    key, certs = parse_secret(_cert(name), content_type, value)
    del value
    if key is None:
        raise NotManaged("the certificate's key is not exportable, so its secret holds no private key",
                         subject=_cert(name), hint="only certificates created with an exportable key can be downloaded")
    ordered = order_chain(leaf, [c for c in certs if c != leaf], _cert(name))
    if fmt == "pfx":
        encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        return pkcs12.serialize_key_and_certificates(name.encode("ascii"), key, leaf, ordered[1:], encryption)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem + _pem(ordered).encode("ascii")


__all__ = ["CAInfo", "CREATING_TAG", "DOWNLOAD_FORMATS", "TRUST_FORMATS", "TRUST_WHICH", "ca_names", "create_ca",
           "download", "encode_trust", "export_chain", "export_trust", "import_ca", "key_is_encrypted", "list_cas",
           "order_chain", "pfx_needs_password", "show_ca", "trust_certificates"]
