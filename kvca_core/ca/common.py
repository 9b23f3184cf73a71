"""What the CA operations share: labels, key and extension readers, the vault's view of one CA object."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kvca_core.authority import build_chain, read_certificate
from kvca_core.errors import Conflict, InvalidRequest, NotFound, about
from kvca_core.model import CertificatePolicy, CertificateVersion, KeySpec, PendingRequest
from kvca_core.vocabulary import (CREATING_TAG, ROLE_TAG)
from kvca_core.signing import (
    RemoteSigner,
    normalize_dns_name,
    parse_csr,
)
from kvca_core.signing.certs import is_ca_certificate
from kvca_core.signing.csr import verify_csr_signature
from kvca_core.signing.issue import MAX_CA_YEARS

log = logging.getLogger("kvca_core.ca")

# Certificates that secrets hold: PEM for the CAs made here (readable, and a
# non-exportable certificate's secret then holds just the chain).
PEM_CONTENT = "application/x-pem-file"
PFX_CONTENT = "application/x-pkcs12"
MAX_INPUT = 1024 * 1024  # a CA's PFX or PEM is a few KB; refuse anything absurd before parsing


# ---------------------------------------------------------------------------
# Small helpers (pure)


def ca_where(name: str) -> str:
    return f"CA '{name}'"


def cert_where(name: str) -> str:
    return f"certificate '{name}'"


def describe_key(public_key) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"EC {curves.get(public_key.curve.name, public_key.curve.name)}"
    return type(public_key).__name__


def key_matches_spec(public_key, spec: KeySpec) -> bool:
    if spec.kty.upper().startswith("RSA"):
        return isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == spec.size
    return describe_key(public_key) == f"EC {spec.curve}"


def basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def name_constraints(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return (), ()
    permitted = tuple(g.value for g in (nc.permitted_subtrees or ()) if isinstance(g, x509.DNSName))
    excluded = tuple(g.value for g in (nc.excluded_subtrees or ()) if isinstance(g, x509.DNSName))
    return permitted, excluded


def subject_label(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def order_chain(leaf: x509.Certificate, others: Iterable[x509.Certificate], who: str) -> list[x509.Certificate]:
    """[leaf, its issuer, ...] from an unordered bundle (authority.build_chain: every link's
    signature checked), refusing links that are no CA and certificates off the path: a trust
    bundle with strangers in it is a mistake worth hearing about."""
    pool = [c for c in others if c != leaf]
    chain = [leaf, *build_chain(leaf, pool)]
    for parent in chain[1:]:
        if not is_ca_certificate(parent):
            raise InvalidRequest(f"chain certificate {subject_label(parent)!r} is not a CA certificate "
                                 "(basicConstraints CA:TRUE with keyCertSign)", subject=who)
    strangers = [c for c in pool if c not in chain]
    if strangers:
        raise InvalidRequest(f"chain certificate {subject_label(strangers[0])!r} is not an issuer of "
                             f"{subject_label(chain[-1])!r} (each chain certificate must sign the one before it)",
                             subject=who)
    return chain



def pem_text(certs: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def subject_with_cn_suffix(name: x509.Name, suffix: str) -> x509.Name:
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


def kv_subject(name: x509.Name) -> str:
    """Key Vault's spelling ("CN=a, O=b", most specific first) for a policy's subject.

    Each attribute is written by cryptography's RFC 4514 writer, so every special
    character is escaped (RFC 4514 2.4: '+', '"', ';', '<', '>', a leading '#', ...);
    escaping only ',' and '\\' made the vault refuse a CA named 'A+B' or '#1'. (That the
    real service reads RFC 4514 escapes is unconfirmed; the emulator does.)"""
    return ", ".join(x509.Name([attr]).rfc4514_string(_NAME_OVERRIDES) for attr in reversed(list(name)))


def check_permitted_dns(values: Sequence[str]) -> tuple[str, ...]:
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


async def current_or_none(vault, name: str) -> CertificateVersion | None:
    try:
        return await vault.get_certificate(name)
    except NotFound:
        return None


def cert_of(version: CertificateVersion | None) -> x509.Certificate | None:
    if version is None or not version.cer:
        return None
    return read_certificate(version.cer, cert_where(version.name))


def remote_signer(vault, key_id: str, public_key):
    return RemoteSigner(public_key, partial(vault.sign_digest, key_id), key_id=key_id)


def csr_public_key(pending: PendingRequest, who: str):
    """The public key of a pending request's CSR (vault data: parsed and verified by the signing
    engine's own first steps)."""
    if not pending.csr:
        raise Conflict("the pending request carries no CSR", subject=cert_where(who),
                       hint=f"delete it: az keyvault certificate pending delete --name {who}")
    with about(cert_where(who)):
        csr = parse_csr(pending.csr)
        verify_csr_signature(csr)
    return csr.public_key()


@dataclass
class ObjectState:
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
        return self.tags.get(ROLE_TAG)

    @property
    def creating(self) -> str | None:
        return self.tags.get(CREATING_TAG)

    @property
    def in_progress(self) -> bool:
        return self.pending is not None and self.pending.in_progress


async def object_state(vault, name: str) -> ObjectState:
    current = await current_or_none(vault, name)
    pending = await vault.get_pending(name)
    if current is None and pending is not None:
        # A certificate whose only version is pending: the service may answer 404 for it, but
        # its listing (include_pending) still shows the tags it was created with.
        async for item in vault.list_certificates(include_pending=True):
            if item.name == name:
                current = item
                break
    return ObjectState(name, current, pending)



def check_years(years: int, what: str = "CA") -> int:
    # Checked here as well as in the signing engine: before the first write, not after the root exists.
    if not isinstance(years, int) or isinstance(years, bool) or not 1 <= years <= MAX_CA_YEARS:
        raise InvalidRequest(f"{what} validity of {years!r} years is not a whole number from 1 to {MAX_CA_YEARS}")
    return years



def ca_policy(subject: x509.Name, spec: KeySpec, issuer_name: str, years: int) -> CertificatePolicy:
    return CertificatePolicy(
        issuer_name=issuer_name,
        subject=kv_subject(subject),
        key_usage=("keyCertSign", "cRLSign", "digitalSignature"),
        validity_months=min(years * 12, 1200) if issuer_name == "Unknown" else 12,
        key=spec,
        content_type=PEM_CONTENT,
    )


