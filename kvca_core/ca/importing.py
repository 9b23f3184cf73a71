"""`import_ca`: adopt an existing CA (PFX, or certificate and key PEM files) with its chain."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from kvca_core import capolicy, clock
from kvca_core.errors import Conflict, InvalidRequest, about
from kvca_core.model import CertificatePolicy, KeySpec
from kvca_core.vocabulary import (INTERMEDIATE, POLICY_TAG, ROLE_TAG, check_free)
from kvca_core.signing import (
    IssuancePolicy,
    check_key,
)
from kvca_core.signing.certs import is_ca_certificate, is_self_signed, same_public_key

from kvca_core.ca.inspect import CAInfo, show_ca
from kvca_core.ca.common import MAX_INPUT, PFX_CONTENT, ca_where, cert_where, describe_key, kv_subject, name_constraints, object_state, order_chain, subject_label
from kvca_core.ca.create import _check_policy_name

from kvca_core.vocabulary import UNKNOWN_ISSUER

log = logging.getLogger("kvca_core.ca")

_PEM_KEY_MARKERS = (b"PRIVATE KEY-----",)

def _decoded(certs: list[x509.Certificate], who: str, what: str) -> list[x509.Certificate]:
    """cryptography parses extensions lazily: touch them now, so a malformed one in a user's
    file is a clear error here rather than a ValueError deep in the checks."""
    for cert in certs:
        try:
            cert.extensions  # noqa: B018
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            raise InvalidRequest(f"{what}: certificate {subject_label(cert)!r} has a malformed extension "
                                 f"({_safe_reason(exc)})", subject=who) from None
    return certs


def _load_pem_certs(data: bytes, who: str, what: str) -> list[x509.Certificate]:
    if len(data) > MAX_INPUT:
        raise InvalidRequest(f"{what} is {len(data)} bytes; at most {MAX_INPUT} are accepted", subject=who)
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
    if len(key_pem) > MAX_INPUT:
        raise InvalidRequest(f"key file is {len(key_pem)} bytes; at most {MAX_INPUT} are accepted", subject=who)
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



# ---------------------------------------------------------------------------
# import


@dataclass(frozen=True)
class ImportPlan:
    """A CA to import, read and checked in memory (`plan_import`). Holds the private key: never
    printed (repr=False), never written anywhere but into the vault's import."""

    name: str
    key: Any = field(repr=False)
    chain: tuple[x509.Certificate, ...]  # the CA certificate first, then those above it
    issuance: Any  # the IssuancePolicy to store with the CA, or None
    notes: tuple[str, ...]


def _read_inputs(who: str, pfx, pw, cert_pem, key_pem, chain_pem):
    """(private key, CA certificate, the other certificates given) from a PFX or PEM files."""
    if pfx is not None and (cert_pem is not None or key_pem is not None or chain_pem is not None):
        raise InvalidRequest("give either a PFX or PEM files, not both", subject=who)
    if pfx is not None:
        if len(pfx) > MAX_INPUT:
            raise InvalidRequest(f"PFX is {len(pfx)} bytes; at most {MAX_INPUT} are accepted", subject=who)
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(pfx, pw)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # cryptography cannot tell a wrong password from a damaged file.
            raise InvalidRequest("cannot read the PFX: wrong password or not a PKCS#12 file", subject=who,
                                 hint="give the password with --password-file" if pw is None else None) from None
        if key is None or cert is None:
            raise InvalidRequest("the PFX must hold the CA certificate and its private key", subject=who)
        _decoded([cert], who, "PFX")
        return key, cert, _decoded(list(extra), who, "PFX")
    if cert_pem is None or key_pem is None:
        raise InvalidRequest("give --pfx FILE, or --cert FILE and --key FILE", subject=who)
    certs = _load_pem_certs(cert_pem, who, "certificate file")
    key = _load_private_key(key_pem, pw, who)
    # The CA certificate is the one that matches the key; the rest of the file is chain.
    match = [c for c in certs if same_public_key(c.public_key(), key.public_key())]
    if not match:
        raise InvalidRequest("the private key does not belong to the certificate "
                             f"{subject_label(certs[0])!r}", subject=who)
    others = [c for c in certs if c is not match[0]]
    if chain_pem is not None:
        others += _load_pem_certs(chain_pem, who, "chain file")
    return key, match[0], others


def plan_import(name: str, *, pfx: bytes | None = None, password: str | bytes | None = None,
                cert_pem: bytes | None = None, key_pem: bytes | None = None, chain_pem: bytes | None = None,
                policy=None, setting=None) -> ImportPlan:
    """Read and check a CA to import (e.g. `step ca init`'s intermediate), in memory, before anything
    reaches the vault: either a PFX (with its password) or the CA certificate's PEM, its private key
    PEM (encrypted PKCS#8 with `password`) and optionally the chain above it. `policy`, `setting`:
    as for `plan_ca`."""
    check_free(name, "CA")
    who = ca_where(name)
    key, cert, others = _read_inputs(who, pfx, _to_password(password), cert_pem, key_pem, chain_pem)
    if not same_public_key(cert.public_key(), key.public_key()):
        raise InvalidRequest(f"the private key does not belong to the certificate {subject_label(cert)!r}",
                             subject=who)
    with about(who):
        check_key(cert.public_key(), IssuancePolicy())  # the signing engine's key rules, default policy
    if not is_ca_certificate(cert):
        raise InvalidRequest(f"certificate {subject_label(cert)!r} is not a CA certificate "
                             "(it needs basicConstraints CA:TRUE and keyUsage keyCertSign)", subject=who)
    if cert.not_valid_after_utc <= clock.now():
        raise InvalidRequest(f"certificate {subject_label(cert)!r} expired on "
                             f"{cert.not_valid_after_utc:%Y-%m-%d}", subject=who)
    chain = order_chain(cert, others, who)
    notes = ["the private key of an imported CA has existed outside Key Vault and stays exportable "
             "by nature: delete the local copies, or use `kvca ca create` for a key that never leaves the vault"]
    if not is_self_signed(chain[-1]):
        notes.append(f"the chain ends at {subject_label(chain[-1])!r}, not at a self-signed root: "
                     "`kvca export-chain --include-root` cannot add the root")
    issuance, policy_note = capolicy.policy_for_new_ca(setting, name, policy, name_constraints(cert)[0])
    return ImportPlan(name, key, tuple(chain), issuance, (*notes, policy_note))


async def import_ca(ctx, name: str, **inputs) -> CAInfo:
    """`plan_import` with the process's KVCA_ISSUANCE_POLICY, then `import_planned`."""
    return await import_planned(ctx, plan_import(name, setting=ctx.settings.issuance_policy, **inputs))


async def import_planned(ctx, plan: ImportPlan) -> CAInfo:
    """Upload the planned CA with its chain; nothing is written unless no object of its name exists."""
    name, vault, cert = plan.name, ctx.vault, plan.chain[0]
    state = await object_state(vault, name)
    if state.exists:
        if state.role == INTERMEDIATE:
            raise Conflict("already exists in the vault", subject=ca_where(name), hint="choose another CA name")
        raise Conflict("a certificate of this name already exists in the vault", subject=cert_where(name),
                       hint="choose another CA name")
    await _check_policy_name(vault, name)
    # Key Vault imports a password-less PFX of key + chain (the recipe's `step certificate p12
    # --no-password --insecure` + `az keyvault certificate import`); it lives in memory only.
    bundle = pkcs12.serialize_key_and_certificates(
        name.encode("ascii"), plan.key, cert, list(plan.chain[1:]), serialization.NoEncryption())
    spec = KeySpec("RSA", size=cert.public_key().key_size) if isinstance(cert.public_key(), rsa.RSAPublicKey) \
        else KeySpec("EC", curve=describe_key(cert.public_key()).split(" ", 1)[1])
    policy = CertificatePolicy(issuer_name=UNKNOWN_ISSUER, subject=kv_subject(cert.subject),
                               key=replace(spec, exportable=True), content_type=PFX_CONTENT,
                               key_usage=("keyCertSign", "cRLSign", "digitalSignature"))
    tags = {ROLE_TAG: INTERMEDIATE}
    if plan.issuance is not None:  # written first: the imported CA names it from its first moment
        tags[POLICY_TAG] = await capolicy.store(vault, name, plan.issuance)
    version = await vault.import_certificate(name, bundle, policy=policy, tags=tags)
    del bundle
    log.info("import_ca name=%s version=%s serial=%x", name, version.version, cert.serial_number)
    info = await show_ca(ctx, name)
    return replace(info, notes=plan.notes)
