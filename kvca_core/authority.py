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

Only a CA meant to issue leaves signs them: its current version carries
`kvca-role=intermediate` (what `kvca ca create` and `kvca ca import` write) or
its name is listed in KVCA_ISSUING_CAS (a CA imported by hand), and it is not
self-signed. The recipe's `NAME-root` and any other CA certificate in the vault
are refused.

The key material and chain are loaded once per warm instance and cached in
memory; the verdict is not. Every use asks the vault for the CA's current
version (one GET, which was needed anyway to notice a renewal) and checks its
state again: enabled, role tag, not expired and already valid. An administrator
who disables or re-tags a CA stops a warm instance at its next signing.

The CA's issuance policy (`policy`) is resolved from the same GET: the current
version's `kvca-policy` tag names the version of the secret `<CA>-policy` that
holds it, read once per version and cached (kvca_core/capolicy.py); without the
tag, KVCA_ISSUANCE_POLICY's default for the CA.
"""

from __future__ import annotations

import asyncio
import time
import base64
import binascii
import logging
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from kvca_core import capolicy, clock
from kvca_core.errors import InvalidRequest, KvcaError, NotFound, PolicyViolation, Throttled, UpstreamError
from kvca_core.model import CertificateVersion
from kvca_core.ports import Vault
from kvca_core.vocabulary import CA_TAG, CREATING_TAG, INTERMEDIATE, ROLE_TAG, check_name, role_of, root_name
from kvca_core.signing import IssuancePolicy, IssuingCA, LocalSigner, RemoteSigner
from kvca_core.signing.certs import is_ca_certificate, is_self_signed, issued_by, same_public_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedCA:
    name: str
    version: str | None
    issuing: IssuingCA
    remote: bool  # True: the key stays in Key Vault
    # The current version's tags as this load read them (the POLICY_TAG among them): the
    # key material is cached per CA version, the tags are not.
    tags: Mapping[str, str] | None = None


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
            # The key block comes first in Key Vault's PEM (docs/keyvault-behaviour.md); load only that block.
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


# How long a CA's key versions are reused for CRLs and OCSP before the vault is read again: a CA
# disabled by an administrator stops answering within this; a rotation is followed at once.
KEYS_TTL = 60.0

# The setting that names CAs allowed to sign without the role tag, for messages.
ISSUING_CAS = "KVCA_ISSUING_CAS"


class Authority:
    """The CA cache of one process (`ctx.authority`)."""

    def __init__(self, vault: Vault, issuing_cas: Iterable[str] = (),
                 default_policy: Mapping[str, Any] | None = None) -> None:
        """`default_policy`: KVCA_ISSUANCE_POLICY, for CAs that have no stored policy."""
        self._vault = vault
        self._issuing_cas = frozenset(n.lower() for n in issuing_cas)  # Key Vault names are case-insensitive
        self._default_policy = default_policy
        self.policies = capolicy.PolicyCache()
        self._cache: dict[str, LoadedCA] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Older key versions, for CRLs and OCSP answers about the leaves they signed: by (CA, version).
        self._versions: dict[tuple[str, str], LoadedCA] = {}
        # Each CA's still-valid key versions, as last read: (monotonic time, versions, current first).
        self._keys: dict[str, tuple[float, tuple[LoadedCA, ...]]] = {}

    async def load(self, name: str) -> LoadedCA:
        """The CA `name`, ready to sign, or the error that says why it may not sign now."""
        check_name(name, "CA")
        key = name.lower()  # Key Vault names are case-insensitive: one cache entry per CA
        current = await self._current(name)
        self._check_state(name, current)
        cached = self._cache.get(key)
        if cached is None or cached.version != current.version:
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                cached = self._cache.get(key)
                if cached is None or cached.version != current.version:
                    try:
                        cached = await self._build(name, current)
                    except UpstreamError as exc:
                        await self._explain(name, exc)
                        raise
                    self._cache[key] = cached
                    logger.info("kvca loaded CA ca=%s version=%s serial=%x signer=%s", name, current.version,
                                cached.issuing.certificate.serial_number, "remote" if cached.remote else "local")
        # The dates are checked against now on every use: a cached CA expires like any other.
        self._check_dates(name, cached.issuing.certificate)
        if cached.tags != current.tags:  # re-tagged (a new policy): same key material, new tags
            cached = self._cache[key] = replace(cached, tags=dict(current.tags))
        return cached

    async def keys(self, name: str, *, refresh: bool = False) -> tuple[LoadedCA, ...]:
        """Every version of CA `name` whose key still answers for the leaves it signed (CRLs, OCSP):
        the current one (as `load` checks it) and each older version that is completed, enabled and
        not expired, current first. Kept for KEYS_TTL seconds, so that OCSP costs no vault call per
        request; `refresh` reads again at once (a request names a key not among them: the CA was
        just rotated, and the answer follows the rotation at once)."""
        key = name.lower()
        kept = self._keys.get(key)
        if kept is not None and not refresh and time.monotonic() - kept[0] < KEYS_TTL:
            return kept[1]
        current = await self.load(name)
        keys = [current]
        now = clock.now()
        async for listed in self._vault.list_versions(name):
            if listed.version in (None, current.version) or not listed.completed or not listed.enabled \
                    or (listed.expires_on is not None and listed.expires_on <= now):
                continue
            older = self._versions.get((key, listed.version))
            if older is None:
                version = await self._vault.get_certificate(name, listed.version)
                older = self._versions[(key, listed.version)] = await self._build(name, version)
            keys.append(older)
        self._keys[key] = (time.monotonic(), tuple(keys))
        return self._keys[key][1]

    async def policy(self, loaded: LoadedCA) -> IssuancePolicy:
        """The issuance policy `loaded` signs under (capolicy.resolve): the stored one when its
        version carries POLICY_TAG (no vault call once cached), else KVCA_ISSUANCE_POLICY's
        default for it. Refused (never loosened) when neither gives one or the stored one is broken."""
        return await capolicy.policy_of(self._vault, self.policies, self._default_policy, loaded.name,
                                        loaded.tags or {})

    async def _current(self, name: str) -> CertificateVersion:
        try:
            return await self._vault.get_certificate(name)
        except NotFound:
            raise NotFound("no CA certificate of this name in the vault", subject=_subject(name),
                           hint="create it with `kvca ca create` or import it with `kvca ca import`") from None

    def _check_state(self, name: str, current: CertificateVersion) -> None:
        """What an administrator can change at any time: checked on every load, never cached."""
        if current.cer is None:
            raise NotFound("the CA certificate has no completed version (only a pending request)",
                           subject=_subject(name))
        # `kvca ca create` tags what it is still building, and a root signs only its
        # intermediate: neither may sign leaves.
        if current.tags.get(CREATING_TAG):
            raise NotFound("the CA is still being created (tag kvca-creating)", subject=_subject(name),
                           hint="run `kvca ca create` again to finish it")
        role = role_of(current.tags)
        if role and role != INTERMEDIATE:
            raise PolicyViolation(f"is a {role} CA ({ROLE_TAG}={role}); leaves are signed by an "
                                  f"intermediate", subject=_subject(name),
                                  hint=f"name the intermediate in the {CA_TAG} tag")
        if not role and name.lower() not in self._issuing_cas:
            # An untagged CA certificate may be anything an administrator imported (the
            # recipe's root among them): it signs only when someone said it should.
            raise PolicyViolation(f"is not an issuing CA: its current version has no tag "
                                  f"{ROLE_TAG}=intermediate and {ISSUING_CAS} does not list it",
                                  subject=_subject(name),
                                  hint=f"tag the intermediate (`az keyvault certificate set-attributes --name "
                                       f"{name} --tags {ROLE_TAG}=intermediate`, or `kvca ca import`) or add "
                                       f"{name} to {ISSUING_CAS}")
        if not current.enabled:
            raise PolicyViolation("the CA is disabled: its current version is disabled in the vault",
                                  subject=_subject(name), hint="enable it again, or name another CA")

    def _check_dates(self, name: str, cert: x509.Certificate) -> None:
        now = clock.now()
        if cert.not_valid_after_utc <= now:
            raise PolicyViolation(f"the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}",
                                  subject=_subject(name), hint="renew or replace the CA")
        if cert.not_valid_before_utc > now:
            # A leaf would be valid before its issuer is: clients refuse such a chain.
            raise PolicyViolation(f"the CA certificate is not valid before "
                                  f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z", subject=_subject(name))

    async def _explain(self, name: str, exc: UpstreamError) -> None:
        """The vault refused a call for the CA (a 403 at sign or secret read): when the CA was
        disabled or re-tagged meanwhile, say that rather than "grant roles"."""
        if isinstance(exc, Throttled):
            return
        try:
            current = await self._vault.get_certificate(name)
        except KvcaError:
            return  # the original error says more than this one
        self._check_state(name, current)

    async def _sign(self, name: str, key_id: str, algorithm: str, digest: bytes) -> bytes:
        try:
            return await self._vault.sign_digest(key_id, algorithm, digest)
        except UpstreamError as exc:
            await self._explain(name, exc)
            raise

    async def _build(self, name: str, current: CertificateVersion) -> LoadedCA:
        """Key material and chain of one version. What holds for the version for good (its
        certificate is a CA, not self-signed) is checked here once; its state, in load."""
        cert = read_certificate(current.cer, _subject(name))
        if not is_ca_certificate(cert):
            raise NotFound("the certificate is not a CA certificate (basicConstraints CA:FALSE or no "
                           "keyCertSign)", subject=_subject(name))
        if is_self_signed(cert):
            # A root signs intermediates only (`kvca ca create`); a leaf straight under it
            # escapes the intermediate's policy and name constraints.
            raise PolicyViolation("is a self-signed root; leaves are signed by an intermediate",
                                  subject=_subject(name), hint=f"name the intermediate in the {CA_TAG} tag")
        key = None
        chain: list[x509.Certificate] = []
        exportable = (await self._vault.get_policy(name)).key.exportable
        if not exportable:
            # The key stays in the vault, so its secret holds certificates only: take the
            # chain through the certificates API (`NAME-root`, Certificates Officer) and
            # the app needs no secret role for such a CA (infra/app/ca-access.bicep).
            chain = await self._root_from_vault(name, cert)
        if exportable or not chain:
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
            key_id = current.key_id
            signer = RemoteSigner(cert.public_key(),
                                  lambda algorithm, digest: self._sign(name, key_id, algorithm, digest))
            remote = True
        return LoadedCA(name, current.version, IssuingCA(cert, chain, signer), remote)

    async def _root_from_vault(self, name: str, top: x509.Certificate) -> list[x509.Certificate]:
        """A CA imported without its root (the recipe's intermediate PFX): take `NAME-root`
        from the vault when it is the issuer."""
        try:
            root_version = await self._vault.get_certificate(root_name(name))
        except NotFound:
            return []
        if root_version.cer is None:
            return []
        root = read_certificate(root_version.cer, _subject(root_name(name)))
        return [root] if issued_by(top, root) else []

