"""Revocation: `revoke` records it in the vault, `publish_crl` signs the CA's CRL from those records.

    revoke(ctx, name, reason=..., version=None, serial=None)
    publish_crl(ctx, ca)           the CA's current CRL (signed at most CRL_CACHE ago by this process)
    publish_crls(ctx)              every managed CA's CRL uploaded to KVCA_CRL_CONTAINER_URL (the timer)
    sign_root_crl(ctx, ca)         the root's CRL over its intermediate, signed with the root's key
    ensure_responder(ctx, ca)      issue the CA's delegated OCSP responder certificate `<ca>-ocsp`
    answer_ocsp(ctx, ca, der)      an OCSP answer from the same records, signed by that responder

The record lives on the revoked version itself, as three tags (REVOKED_TAG,
REVOKED_AT_TAG, REVOKED_SERIAL_TAG), and the version is disabled. So it
survives as long as the version does, every instance reads the same record,
and nothing else has to be kept in step. Writing the same tags twice leaves
one record; two revocations racing both write the same version's tags, and
the last write is the record (Key Vault has no conditional update).

The CRL is built from those records on demand and cached in this process for
CRL_CACHE: every instance signs its own, numbered by time (signing/crl.py
says why that is monotonic without shared state), and a revocation made here
drops the cache at once.

Published: each CA's CRL is uploaded as the blob `<CA>.crl` (kvca_core/rim/blob.py), read
anonymously over plain HTTP, on every revocation and on KVCA_CRL_SCHEDULE; the CDP written
into leaves points there, and /api/crl/<CA>.crl serves the same CRL as a fallback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

from urllib.parse import urlparse

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from kvca_core import clock, notify, operations
from kvca_core.authority import read_certificate
from kvca_core.errors import ConfigurationError, Conflict, InvalidRequest, KvcaError, NotFound, NotManaged
from kvca_core.lifecycle import is_managed_leaf, managed_ca
from kvca_core.model import CertificatePolicy, CertificateVersion, KeySpec
from kvca_core.vocabulary import (
    CA_TAG,
    INTERMEDIATE,
    RESPONDER_TAG,
    REVOKED_AT_TAG,
    REVOKED_SERIAL_TAG,
    REVOKED_TAG,
    ROLE_TAG,
    UNKNOWN_ISSUER,
    check_name,
    responder_name,
    role_of,
)
from kvca_core.signing import RemoteSigner
from kvca_core.signing.certs import issued_by
from kvca_core.signing import ocsp as ocsp_mod
from kvca_core.signing.crl import CRL_VALIDITY, REASONS, RevokedEntry, parse_reason, sign_crl

logger = logging.getLogger(__name__)

# How long one process reuses a CRL it signed before signing a fresh one. Short, so that a
# revocation made on another instance reaches this one's CRL within minutes; each signing is
# one listing pass and one signature (bench/crl.py).
CRL_CACHE = dt.timedelta(minutes=5)
# The root's CRL is signed by an operator (the app holds no role on the root's key), so it is
# long-lived: a year, re-signed with `kvca crl CA --root` well before then.
ROOT_CRL_VALIDITY = dt.timedelta(days=365)
# A revoked certificate stays listed until one regular CRL after it expired (RFC 5280 3.3).
_KEEP_AFTER_EXPIRY = CRL_VALIDITY + dt.timedelta(days=1)


@dataclass(frozen=True)
class Revocation:
    """What `revoke` did (JSON: `revocation`)."""

    OBJECT = "revocation"

    name: str
    version: str | None
    serial: str  # hex
    reason: str
    revoked_at: dt.datetime
    ca: str
    action: str  # "revoked" | "already-revoked"
    # The CRL blob's URL once the new CRL is published there; "" when not (no container
    # configured, or already revoked: nothing changed).
    published: str = ""
    # Why re-signing or publishing failed: the revocation stands regardless, and the next
    # timer run (or the CRL route, which signs on demand) catches up.
    publish_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["revoked_at"] = self.revoked_at.isoformat()
        return body


# A serial as kvca writes it: hex, positive, at most 20 octets (RFC 5280 4.1.2.2).
_SERIAL_TEXT = re.compile(r"[0-9a-fA-F]{1,40}")


def revocation_of(version: CertificateVersion) -> RevokedEntry | None:
    """The record a version's tags carry, or None. Tags are untrusted vault data, and a damaged
    record must neither drop a revocation from the CRL nor stop the CA's whole CRL: an
    unreadable time is taken from the version, an unreadable reason is `unspecified`, and an
    unreadable serial comes back as 0 for the caller to read from the certificate itself."""
    tags = version.tags
    if REVOKED_SERIAL_TAG not in tags:
        return None
    raw = tags[REVOKED_SERIAL_TAG]
    serial = int(raw, 16) if isinstance(raw, str) and _SERIAL_TEXT.fullmatch(raw) else 0
    damaged = [REVOKED_SERIAL_TAG] if serial == 0 else []
    try:
        at = dt.datetime.fromisoformat(tags.get(REVOKED_AT_TAG, ""))
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.timezone.utc)
    except (TypeError, ValueError):
        at, damaged = version.created_on or clock.now(), damaged + [REVOKED_AT_TAG]
    try:
        reason = parse_reason(tags.get(REVOKED_TAG, "unspecified"))
    except InvalidRequest:
        reason, damaged = "unspecified", damaged + [REVOKED_TAG]
    if damaged:
        logger.warning("kvca op=revocation certificate=%s version=%s outcome=damaged-record tags=%s",
                       version.name, version.version, ",".join(damaged))
    return RevokedEntry(serial=serial, revoked_at=at, reason=reason)


def is_revoked(version: CertificateVersion) -> bool:
    return REVOKED_SERIAL_TAG in version.tags


def parse_serial(serial: str, name: str) -> int:
    """A serial as people write it (hex, with or without colons), or InvalidRequest."""
    text = serial.replace(":", "")
    if not _SERIAL_TEXT.fullmatch(text):
        raise InvalidRequest(f"serial {serial[:80]!r} is not hexadecimal (at most 40 digits)",
                             subject=f"certificate '{name}'")
    return int(text, 16)


async def _target(ctx, name: str, version: str | None, serial: str | None) -> CertificateVersion:
    if version and serial:
        raise InvalidRequest("give a version or a serial, not both", subject=f"certificate '{name}'")
    if version:
        return await ctx.vault.get_certificate(name, version)
    if not serial:
        return await ctx.vault.get_certificate(name)
    wanted = parse_serial(serial, name)
    async for listed in ctx.vault.list_versions(name):
        full = await ctx.vault.get_certificate(name, listed.version)
        if full.cer is not None and read_certificate(full.cer, f"certificate '{name}'").serial_number == wanted:
            return full
    raise NotFound(f"no version has serial {serial}", subject=f"certificate '{name}'")


async def _revoke(ctx, name: str, reason: str, version: str | None, serial: str | None) -> Revocation:
    target = await _target(ctx, name, version, serial)
    where = f"certificate '{name}'"
    if target.cer is None:
        raise NotFound("the version is still pending: there is nothing to revoke", subject=where)
    if role_of(target.tags):
        raise NotManaged(f"is a CA certificate ({ROLE_TAG}={role_of(target.tags)}); a CA is revoked "
                         f"on its root's CRL", subject=where, hint="see `kvca crl CA --root`")
    ca = managed_ca(target, await ctx.vault.get_policy(name))
    cert = read_certificate(target.cer, where)
    hex_serial = format(cert.serial_number, "x")
    existing = revocation_of(target)
    if existing is not None and existing.serial == cert.serial_number:
        # Idempotent: the first record stands (its time and reason are what the CRL says).
        return Revocation(name, target.version, hex_serial, existing.reason, existing.revoked_at, ca,
                          "already-revoked")
    # RFC 5280 5.1.2.6: the revocation date is when it took effect; seconds are what GeneralizedTime holds.
    at = clock.now().replace(microsecond=0)
    # (A record whose serial is damaged or not this certificate's is written again: repaired.)
    tags = {**target.tags, REVOKED_TAG: reason, REVOKED_AT_TAG: at.isoformat(), REVOKED_SERIAL_TAG: hex_serial}
    await ctx.vault.update_properties(name, target.version, enabled=False, tags=tags)
    _drop_cached(ctx, ca)
    return Revocation(name, target.version, hex_serial, reason, at, ca, "revoked")


async def revoke(ctx, name: str, *, reason: str, version: str | None = None,
                 serial: str | None = None) -> Revocation:
    """Revoke one version of a managed certificate (the current one unless `version` or
    `serial` names another): tag it, disable it, and re-sign the CA's CRL."""
    check_name(name)
    reason = parse_reason(reason)
    try:
        result = await _revoke(ctx, name, reason, version, serial)
    except KvcaError as exc:
        logger.warning("kvca op=revoke certificate=%s outcome=refused kind=%s reason=%s", name, exc.kind, exc)
        raise
    logger.info("kvca op=revoke certificate=%s version=%s serial=%s outcome=%s reason=%s ca=%s", name,
                result.version, result.serial, result.action, result.reason, result.ca)
    if result.action == "revoked":
        # Re-signed and published at once. The record is already written: a failure here is
        # reported, never raised, so that the caller does not retry a revocation that happened.
        try:
            published = await _publish_one(ctx, result.ca)
        except KvcaError as exc:
            logger.error("kvca op=revoke certificate=%s serial=%s outcome=crl-not-published ca=%s reason=%s",
                         name, result.serial, result.ca, exc)
            result = replace(result, publish_error=str(exc))
        else:
            result = replace(result, published=published.url)
        # Told once, when it took effect (a repeated revoke is "already-revoked"); never raises.
        await notify.revoked(ctx, result)
    return result


# --- CRLs ----------------------------------------------------------------------------------------
async def revoked_entries(ctx, ca: str) -> list[RevokedEntry]:
    """Every revocation record of `ca`'s certificates, read from the vault's version tags
    (one listing, then each managed certificate's versions)."""
    names = [v.name async for v in ctx.vault.list_certificates(include_pending=True) if is_managed_leaf(v)]
    now = clock.now()  # after the listing: kvca's clock follows the vault's answers (clock.py)
    limit = asyncio.Semaphore(ctx.settings.concurrency)

    async def versions_of(name: str) -> list[RevokedEntry]:
        found = []
        async with limit:
            try:
                async for version in ctx.vault.list_versions(name):
                    if version.tags.get(CA_TAG) != ca:
                        continue
                    entry = revocation_of(version)
                    if entry is None:
                        continue
                    if entry.serial == 0:  # the serial tag is damaged: the certificate itself says
                        entry = await _with_serial_from_certificate(ctx, version, entry)
                        if entry is None:
                            continue
                    if version.expires_on is not None and version.expires_on + _KEEP_AFTER_EXPIRY < now:
                        continue
                    found.append(entry)
            except NotFound:  # deleted while we listed
                pass
        return found

    return [e for group in await asyncio.gather(*(versions_of(n) for n in names)) for e in group]


async def _with_serial_from_certificate(ctx, version: CertificateVersion,
                                        entry: RevokedEntry) -> RevokedEntry | None:
    try:
        full = await ctx.vault.get_certificate(version.name, version.version)
        if full.cer is None:
            raise NotFound("the version holds no certificate", subject=f"certificate '{version.name}'")
        serial = read_certificate(full.cer, f"certificate '{version.name}' version {version.version}").serial_number
    except (NotFound, InvalidRequest) as exc:
        logger.error("kvca op=revocation certificate=%s version=%s outcome=unlisted reason=%s",
                     version.name, version.version, exc)
        return None
    return RevokedEntry(serial=serial, revoked_at=entry.revoked_at, reason=entry.reason)


def _cache_of(ctx) -> dict[str, tuple[dt.datetime, x509.CertificateRevocationList]]:
    """One signed CRL per CA per context (a warm instance keeps one context): (signed at, CRL)."""
    cache = getattr(ctx, "_kvca_crl_cache", None)
    if cache is None:
        cache = {}
        ctx._kvca_crl_cache = cache
        ctx._kvca_crl_locks = {}
    return cache


def _drop_cached(ctx, ca: str) -> None:
    _cache_of(ctx).pop(ca, None)


async def publish_crl(ctx, ca: str) -> x509.CertificateRevocationList:
    """The CA's CRL: the cached one while it is younger than CRL_CACHE, otherwise a fresh one
    signed by the CA's key (the same signer as its leaves). A fresh signing that fails
    (vault unreachable) falls back to the cached copy while that is still valid: a CRL that
    cannot be fetched fails clients hard."""
    check_name(ca, "CA")
    now = clock.now()
    cache = _cache_of(ctx)
    cached = cache.get(ca)
    if cached is not None and now - cached[0] < CRL_CACHE:
        return cached[1]
    lock = ctx._kvca_crl_locks.setdefault(ca, asyncio.Lock())
    async with lock:
        cached = cache.get(ca)
        if cached is not None and now - cached[0] < CRL_CACHE:
            return cached[1]
        try:
            loaded = await ctx.authority.load(ca)
            entries = await revoked_entries(ctx, ca)
            # The CRL's dates come after reading the vault (the `now` above only judged the
            # cache): in a fresh process (`kvca crl`) kvca's clock follows the vault's from
            # its first answer (clock.py).
            now = clock.now()
            previous = cached[1].extensions.get_extension_for_class(x509.CRLNumber).value.crl_number \
                if cached else None
            crl = await sign_crl(loaded.issuing.certificate, loaded.issuing.signer, entries, now=now,
                                 previous_number=previous)
        except KvcaError as exc:
            if cached is not None and cached[1].next_update_utc > now:
                logger.warning("kvca op=publish_crl ca=%s outcome=stale reason=%s", ca, exc)
                return cached[1]
            raise
        cache[ca] = (now, crl)
        logger.info("kvca op=publish_crl ca=%s entries=%s number=%s next_update=%s", ca, len(entries),
                    crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number,
                    crl.next_update_utc.isoformat())
        return crl


async def sign_root_crl(ctx, ca: str, *, revoke_intermediate: str | None = None) -> x509.CertificateRevocationList:
    """The root's CRL (`CA-root` over `CA`): empty, or listing the intermediate when
    `revoke_intermediate` gives a reason. Signed through the keys API with the root's key,
    which only the operator's identity may use, so it is the CLI that calls this."""
    check_name(ca, "CA")
    root_version = await ctx.vault.get_certificate(f"{ca}-root")
    inter_version = await ctx.vault.get_certificate(ca)
    if root_version.cer is None or inter_version.cer is None or root_version.key_id is None:
        raise NotFound("the root or the intermediate has no completed version", subject=f"CA '{ca}'")
    root = read_certificate(root_version.cer, f"CA '{ca}-root'")
    inter = read_certificate(inter_version.cer, f"CA '{ca}'")
    if not issued_by(inter, root):
        raise NotManaged(f"'{ca}' is not issued by '{ca}-root'", subject=f"CA '{ca}'")
    now = clock.now()
    entries = []
    if revoke_intermediate:
        entries.append(RevokedEntry(inter.serial_number, now.replace(microsecond=0),
                                    parse_reason(revoke_intermediate)))
    signer = RemoteSigner(root.public_key(), partial(ctx.vault.sign_digest, root_version.key_id),
                          key_id=root_version.key_id)
    crl = await sign_crl(root, signer, entries, now=now, validity=ROOT_CRL_VALIDITY)
    logger.info("kvca op=sign_root_crl ca=%s entries=%s next_update=%s", ca, len(entries),
                crl.next_update_utc.isoformat())
    return crl


@dataclass(frozen=True)
class CrlPublication:
    ca: str
    url: str  # the blob's URL; "" when no container is configured (signed, not uploaded)
    number: int
    next_update: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "next_update": self.next_update.isoformat()}


async def _publish_one(ctx, ca: str) -> CrlPublication:
    crl = await publish_crl(ctx, ca)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    url = ""
    if ctx.crl_store is not None:
        # Readers and proxies may cache it as long as the route lets them: a revocation is
        # seen within minutes, far inside the CRL's 7-day validity.
        url = await ctx.crl_store.publish(ca, crl_der(crl), max_age=int(CRL_CACHE.total_seconds()),
                                         number=number)
        logger.info("kvca op=publish_crls ca=%s number=%s url=%s", ca, number, url)
    return CrlPublication(ca, url, number, crl.next_update_utc)


async def managed_cas(ctx) -> list[str]:
    """The CAs whose CRLs kvca keeps: every intermediate it made or imported (tag
    kvca-role=intermediate) and every CA named in KVCA_ISSUING_CAS."""
    tagged = [v.name async for v in ctx.vault.list_certificates(include_pending=False)
              if role_of(v.tags) == INTERMEDIATE]
    return sorted(set(tagged) | set(ctx.settings.issuing_cas))


async def publish_crls(ctx) -> list[CrlPublication]:
    """Re-sign (a CRL at most CRL_CACHE old) and upload every managed CA's CRL: what the timer
    runs, well before each CRL's nextUpdate. Idempotent: each run overwrites `<CA>.crl` with
    a CRL from the same records. Every CA is tried; one that fails does not stop the others,
    and the failures are raised together at the end."""
    if ctx.crl_store is None:
        logger.info("kvca op=publish_crls outcome=skipped reason=KVCA_CRL_CONTAINER_URL is not set")
        return []
    done, failed = [], []
    for ca in await managed_cas(ctx):
        try:
            done.append(await _publish_one(ctx, ca))
        except KvcaError as exc:
            logger.error("kvca op=publish_crls ca=%s outcome=failed reason=%s", ca, exc)
            failed.append(exc)
    logger.info("kvca op=publish_crls published=%s failed=%s", len(done), len(failed))
    if failed:
        first = failed[0]
        raise type(first)(f"{len(failed)} of {len(done) + len(failed)} CRL(s) not published; first: {first}",
                          subject="publish_crls")
    return done


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(Encoding.DER)


def crl_pem(crl: x509.CertificateRevocationList) -> str:
    return crl.public_bytes(Encoding.PEM).decode("ascii")


# --- OCSP ----------------------------------------------------------------------------------------
# One month: the responder certificate carries ocsp-nocheck (RFC 6960 4.2.2.2.1: "CAs ... should
# issue a responder certificate with a short lifetime"), so it is renewed often, by the sweep,
# like any managed certificate (two thirds into its life).
RESPONDER_MONTHS = 1


async def ensure_responder(ctx, ca: str) -> operations.Outcome:
    """Issue CA `ca`'s delegated OCSP responder certificate `<ca>-ocsp` (OCSPSigning, ocsp-nocheck),
    its key made and kept in the vault, through the ordinary request-and-sign path; a no-op when
    a valid one exists. The sweep renews it from then on."""
    check_name(ca, "CA")
    url = ctx.settings.ocsp_url
    host = urlparse(url).hostname if url else None
    if not host:
        raise ConfigurationError("KVCA_OCSP_URL is not set: there is no OCSP responder to issue for",
                                 subject="settings", hint="set it to https://<app>/api/ocsp")
    await ctx.authority.load(ca)  # an unknown or unusable CA is refused before anything is created
    name = responder_name(ca)
    try:
        current = await ctx.vault.get_certificate(name)
    except NotFound:
        current = None
    if current is not None and current.cer is not None:
        if current.tags.get(RESPONDER_TAG) != ca:
            raise NotManaged(f"exists but is not CA '{ca}''s OCSP responder (no {RESPONDER_TAG}={ca} tag)",
                             subject=f"certificate '{name}'", hint="delete it or rename the CA")
        if current.enabled and not is_revoked(current) and current.expires_on and current.expires_on > clock.now():
            return operations.Outcome(name, operations.SKIPPED, version=current.version,
                                      reason="a valid responder certificate exists; the sweep renews it")
        return await operations.renew(ctx, name, force=True)
    policy = CertificatePolicy(
        issuer_name=UNKNOWN_ISSUER, subject=f"CN={host}", dns_names=(host,),
        ekus=(ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string,), key_usage=("digitalSignature",),
        validity_months=RESPONDER_MONTHS, key=KeySpec("EC", curve="P-256", exportable=False))
    try:
        await ctx.vault.create_certificate(name, policy, tags={CA_TAG: ca, RESPONDER_TAG: ca})
    except Conflict:
        pass  # a request is already pending (a second trigger, a crashed run): sign that one
    return await operations.sign_pending(ctx, name)


async def _responder(ctx, ca: str, issuer: x509.Certificate) -> tuple[x509.Certificate, RemoteSigner]:
    name = responder_name(ca)
    current = await ctx.vault.get_certificate(name)
    where = f"certificate '{name}'"
    if current.cer is None or current.key_id is None or not current.enabled or is_revoked(current) \
            or current.tags.get(RESPONDER_TAG) != ca:
        raise NotFound("no usable OCSP responder certificate", subject=where,
                       hint=f"run `kvca ocsp-responder {ca}`")
    cert = read_certificate(current.cer, where)
    if not issued_by(cert, issuer) or cert.not_valid_after_utc <= clock.now():
        raise NotFound("the OCSP responder certificate is expired or not issued by its CA", subject=where)
    return cert, RemoteSigner(cert.public_key(), partial(ctx.vault.sign_digest, current.key_id),
                              key_id=current.key_id)


async def answer_ocsp(ctx, ca: str, der: bytes) -> bytes:
    """The DER OCSPResponse for `der` about a certificate of CA `ca`: good or revoked from the same
    records as the CRL, signed by the delegated responder; malformedRequest, unauthorized or
    tryLater (unsigned, RFC 6960 4.2.1) when it cannot be answered."""
    try:
        request = ocsp_mod.parse_request(der)
    except InvalidRequest as exc:
        logger.info("kvca op=ocsp ca=%s outcome=malformed reason=%s", ca, exc)
        return ocsp_mod.unsuccessful(x509.ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    try:
        check_name(ca, "CA")
        loaded = await ctx.authority.load(ca)
        if not ocsp_mod.asks_about(request, loaded.issuing.certificate):
            logger.info("kvca op=ocsp ca=%s serial=%x outcome=unauthorized", ca, request.serial_number)
            return ocsp_mod.unsuccessful(x509.ocsp.OCSPResponseStatus.UNAUTHORIZED)
        crl = await publish_crl(ctx, ca)
        revoked = crl.get_revoked_certificate_by_serial_number(request.serial_number)
        entry = None
        if revoked is not None:
            try:
                flag = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
                reason = next(k for k, v in REASONS.items() if v == flag)
            except x509.ExtensionNotFound:
                reason = "unspecified"
            entry = RevokedEntry(revoked.serial_number, revoked.revocation_date_utc, reason)
        responder, signer = await _responder(ctx, ca, loaded.issuing.certificate)
        answer = await ocsp_mod.sign_response(
            signer, ocsp_mod.response_builder(request, entry=entry, now=clock.now()), responder)
    except (NotFound, NotManaged, InvalidRequest) as exc:
        logger.warning("kvca op=ocsp ca=%s outcome=unauthorized reason=%s", ca, exc)
        return ocsp_mod.unsuccessful(x509.ocsp.OCSPResponseStatus.UNAUTHORIZED)
    except KvcaError as exc:  # the vault is unreachable or throttled: the client retries
        logger.warning("kvca op=ocsp ca=%s outcome=try-later reason=%s", ca, exc)
        return ocsp_mod.unsuccessful(x509.ocsp.OCSPResponseStatus.TRY_LATER)
    logger.info("kvca op=ocsp ca=%s serial=%x status=%s", ca, request.serial_number,
                "revoked" if entry is not None else "good")
    return answer
