"""CA material: the issuing CA a leaf's `kvca-ca` tag names, loaded from the vault.

A CA named NAME is the certificate NAME in the same vault (the intermediate,
or whatever CA certificate a user imported the recipe's way). Its chain comes
from `NAME-root` when the key is not exportable (a CA made by `kvca ca
create`: the secret is never read), otherwise from its secret (PFX or PEM,
with the private key). The signer is:

- `LocalSigner` when the secret holds the private key (an imported, exportable
  CA): the key lives in this process's memory only, never on disk or in a log;
- `RemoteSigner` through the keys API otherwise: only a digest leaves the
  process and the key never leaves Key Vault.

Loaded once per warm instance and cached in memory; every use asks the vault
for the CA's current version (one GET) and reloads when it changed, so a
renewed or re-imported CA is picked up at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass
from functools import partial

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from kvca_core import clock
from kvca_core.errors import InvalidRequest, NotFound, PolicyViolation
from kvca_core.events import NAME_RE
from kvca_core.model import CA_ROLE_TAG, CA_TAG, CREATING_TAG, CertificateVersion, Vault
from kvca_core.signing import IssuingCA, LocalSigner, RemoteSigner
from kvca_core.signing.certs import is_ca_certificate, is_self_signed, issued_by, same_public_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedCA:
    name: str
    version: str | None
    issuing: IssuingCA
    remote: bool  # True: the key stays in Key Vault


def _subject(ca: str) -> str:
    return f"CA '{ca}'"


def read_certificate(der: bytes, subject: str) -> x509.Certificate:
    """A certificate the vault returned (untrusted): parsed with its extensions, or InvalidRequest."""
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.extensions  # noqa: B018 - cryptography parses extensions lazily; a malformed one raises here
        return cert
    except ValueError:
        raise InvalidRequest("the vault holds a certificate that cannot be parsed (malformed DER or extension)",
                             subject=subject) from None


def parse_secret(subject: str, content_type: str, value: str):
    """(private key or None, [certificates]) from a certificate's secret value (PFX or PEM).

    Errors never quote the value: it may hold a private key."""
    try:
        if "pkcs12" in content_type.lower():
            data = base64.b64decode(value, validate=False)
            key, cert, extra = pkcs12.load_key_and_certificates(data, None)
            certs = ([cert] if cert is not None else []) + list(extra or [])
            return key, certs
        raw = value.encode("ascii", "strict")
        certs = x509.load_pem_x509_certificates(raw) if b"-----BEGIN CERTIFICATE" in raw else []
        key = None
        if b"PRIVATE KEY-----" in raw:
            start = raw.index(b"-----BEGIN")
            # The key block comes first in Key Vault's PEM (keyvault-facts.md); load only that block.
            end_marker = raw.index(b"PRIVATE KEY-----", raw.index(b"-----END", start)) + len(b"PRIVATE KEY-----")
            key = serialization.load_pem_private_key(raw[start:end_marker], password=None)
        return key, certs
    except (ValueError, TypeError, binascii.Error, UnicodeError, UnsupportedAlgorithm):
        raise InvalidRequest(f"the secret ({content_type or 'no content type'}) could not be read as "
                             f"PFX or PEM", subject=subject,
                             hint="re-import it (`kvca ca import` for a CA)") from None


def build_chain(ca_cert: x509.Certificate, candidates: list[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates above `ca_cert`, nearest first, as far as `candidates` reach."""
    chain: list[x509.Certificate] = []
    current = ca_cert
    pool = [c for c in candidates if c != ca_cert]
    while not is_self_signed(current) and len(chain) < 8:
        parent = next((c for c in pool if issued_by(current, c)), None)
        if parent is None:
            break
        chain.append(parent)
        pool.remove(parent)
        current = parent
    return chain


class Authority:
    """The CA cache of one process (`ctx.authority`)."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._cache: dict[str, LoadedCA] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def load(self, name: str) -> LoadedCA:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidRequest(f"{str(name)[:130]!r} is not a valid CA certificate name", subject="CA")
        try:
            current = await self._vault.get_certificate(name)
        except NotFound:
            raise NotFound("no CA certificate of this name in the vault", subject=_subject(name),
                           hint="create it with `kvca ca create` or import it with `kvca ca import`") from None
        cached = self._cache.get(name)
        if cached is not None and cached.version == current.version:
            return cached
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            cached = self._cache.get(name)
            if cached is not None and cached.version == current.version:
                return cached
            loaded = await self._build(name, current)
            self._cache[name] = loaded
            logger.info("kvca loaded CA ca=%s version=%s serial=%x signer=%s", name, current.version,
                        loaded.issuing.certificate.serial_number, "remote" if loaded.remote else "local")
            return loaded

    async def _build(self, name: str, current: CertificateVersion) -> LoadedCA:
        if current.cer is None:
            raise NotFound("the CA certificate has no completed version (only a pending request)",
                           subject=_subject(name))
        # `kvca ca create` tags what it is still building, and a root signs only its
        # intermediate: neither may sign leaves. (A CA imported the recipe's way, with
        # no kvca tags, is allowed: it is the intermediate the recipe signs with.)
        if current.tags.get(CREATING_TAG):
            raise NotFound("the CA is still being created (tag kvca-creating)", subject=_subject(name),
                           hint="run `kvca ca create` again to finish it")
        role = current.tags.get(CA_ROLE_TAG)
        if role and role != "intermediate":
            raise PolicyViolation(f"is a {role} CA ({CA_ROLE_TAG}={role}); leaves are signed by an "
                                  f"intermediate", subject=_subject(name),
                                  hint=f"name the intermediate in the {CA_TAG} tag")
        if not current.enabled:
            raise PolicyViolation("the CA certificate's current version is disabled", subject=_subject(name))
        cert = read_certificate(current.cer, _subject(name))
        if not is_ca_certificate(cert):
            raise NotFound("the certificate is not a CA certificate (basicConstraints CA:FALSE or no "
                           "keyCertSign)", subject=_subject(name))
        now = clock.now()
        if cert.not_valid_after_utc <= now:
            raise PolicyViolation(f"the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}",
                                  subject=_subject(name), hint="renew or replace the CA")
        key = None
        chain: list[x509.Certificate] = []
        exportable = (await self._vault.get_policy(name)).key.exportable
        if not exportable and not is_self_signed(cert):
            # The key stays in the vault, so its secret holds certificates only: take the
            # chain through the certificates API (`NAME-root`, Certificates Officer) and
            # the app needs no secret role for such a CA (infra/app/ca-access.bicep).
            chain = await self._root_from_vault(name, cert)
        if exportable or not (chain or is_self_signed(cert)):
            content_type, value = await self._vault.get_secret_value(name, current.version)
            key, certs = parse_secret(_subject(name), content_type, value)
            del value  # the secret's text may hold the private key: drop the reference early
            chain = build_chain(cert, certs)
            top = chain[-1] if chain else cert
            if not is_self_signed(top):
                chain += await self._root_from_vault(name, top)
        if key is not None and same_public_key(key.public_key(), cert.public_key()):
            signer = LocalSigner(key)
            remote = False
        else:
            if current.key_id is None:
                raise NotFound("the CA certificate has no key identifier", subject=_subject(name))
            signer = RemoteSigner(cert.public_key(), partial(self._vault.sign_digest, current.key_id))
            remote = True
        return LoadedCA(name, current.version, IssuingCA(cert, chain, signer), remote)

    async def _root_from_vault(self, name: str, top: x509.Certificate) -> list[x509.Certificate]:
        """A CA imported without its root (the recipe's intermediate PFX): take `NAME-root`
        from the vault when it is the issuer."""
        try:
            root_version = await self._vault.get_certificate(f"{name}-root")
        except NotFound:
            return []
        if root_version.cer is None:
            return []
        root = read_certificate(root_version.cer, _subject(f"{name}-root"))
        return [root] if issued_by(top, root) else []

