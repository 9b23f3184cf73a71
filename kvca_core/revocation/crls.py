"""CRLs built from the ledger: one per still-valid key version of a CA, each signed by its own key.

    publish_crl(ctx, ca, version=None)     the CRL of one key (the current one by default), cached CRL_CACHE
    publish_after_revocation(ctx, ca, s)   a fresh CRL of the key that signed serial s, uploaded: (url, error)
    publish_crls(ctx)                      every managed CA's every key's CRL uploaded (the timer)
    sign_root_crl(ctx, ca)                 the root's CRL over its intermediate, signed with the root's key

Cost: the CA's revocations (one ledger partition) and its key versions (cached per process,
Authority.keys), never a listing of the vault. Numbers come from the ledger
(`next_crl_number(ca, version)`): strictly increasing across every instance that signs. The number
is taken before the revocations are read, so any CRL numbered after a revocation was recorded
lists it: a store that keeps only the highest number (rim/blob.py) never loses a revocation to an
older listing, and a revoke reports `published` only for a CRL that lists it.

Published: the blob `<CA>.crl` (the current key's, what leaves signed before per-version CDPs name)
and `<CA>/<version>.crl` per key version, read anonymously over plain HTTP; /api/crl/<CA>.crl and
/api/crl/<CA>/<version>.crl serve the same as a fallback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kvca_core import clock, telemetry
from kvca_core.authority import LoadedCA, read_certificate
from kvca_core.errors import KvcaError, NotFound, NotManaged
from kvca_core.ledger.records import UNKNOWN_VERSION
from kvca_core.signing import RemoteSigner
from kvca_core.signing.certs import issued_by
from kvca_core.signing.crl import CRL_VALIDITY, RevokedEntry, parse_reason, sign_crl
from kvca_core.vocabulary import INTERMEDIATE, check_name, role_of, root_name

logger = logging.getLogger(__name__)

# How long one process reuses a CRL it signed before signing a fresh one, for the CRL route and
# `kvca crl`: a revocation on another instance reaches this one's copy within minutes (and is in the
# published blob at once, which is what CDPs name).
CRL_CACHE = dt.timedelta(minutes=5)
# The root's CRL is signed by an operator (the app holds no role on the root's key), so it is
# long-lived: a year, re-signed with `kvca crl CA --root` well before then.
ROOT_CRL_VALIDITY = dt.timedelta(days=365)
# A revoked certificate stays listed until one regular CRL after it expired (RFC 5280 3.3).
KEEP_AFTER_EXPIRY = CRL_VALIDITY + dt.timedelta(days=1)


@dataclass(frozen=True)
class CrlPublication:
    ca: str
    version: str  # the CA key version that signed it
    url: str  # the blob's URL; "" when no container is configured (signed, not uploaded)
    number: int
    next_update: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "next_update": self.next_update.isoformat()}


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(Encoding.DER)


def crl_pem(crl: x509.CertificateRevocationList) -> str:
    return crl.public_bytes(Encoding.PEM).decode("ascii")


def crl_number_of(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


# --- one key's CRL -------------------------------------------------------------------------------
async def key_of(ctx, ca: str, version: str | None = None) -> LoadedCA:
    """The CA's key `version` (None: the current one) among those that still answer, or NotFound."""
    check_name(ca, "CA")
    keys = await ctx.authority.keys(ca)
    if version is None:
        return keys[0]
    for refresh in (False, True):  # a version not among them yet: read again (a rotation just happened)
        found = next((k for k in keys if (k.version or "").lower() == version.lower()), None)
        if found is not None:
            return found
        if not refresh:
            keys = await ctx.authority.keys(ca, refresh=True)
    raise NotFound(f"no key version {version[:40]!r} that still answers for its certificates", subject=f"CA '{ca}'")


async def _sign_fresh(ctx, ca: str, key: LoadedCA) -> x509.CertificateRevocationList:
    """Number first, then the revocations: every revocation recorded before the number was taken is listed."""
    number = await ctx.ledger.next_crl_number(ca, (key.version or UNKNOWN_VERSION).lower())
    revocations = await ctx.ledger.revocations(ca)
    now = clock.now()  # after the ledger: kvca's clock follows the vault's answers (clock.py)
    mine = (key.version or "").lower()
    entries = [RevokedEntry(int(r.serial, 16), r.revoked_at, r.reason) for r in revocations
               if r.ca_version.lower() in (mine, UNKNOWN_VERSION)
               and (r.not_after is None or r.not_after + KEEP_AFTER_EXPIRY >= now)]
    crl = await sign_crl(key.issuing.certificate, key.issuing.signer, entries, now=now, number=number)
    _cache_of(ctx)[(ca.lower(), mine)] = (now, crl)
    telemetry.record("publish_crl", "signed", ca=ca, version=key.version, entries=len(entries), number=number)
    return crl


def _cache_of(ctx) -> dict[tuple[str, str], tuple[dt.datetime, x509.CertificateRevocationList]]:
    """One signed CRL per CA key per context (a warm instance keeps one context): (signed at, CRL).
    Keyed by the lower-case CA name: Key Vault names are case-insensitive."""
    return ctx.__dict__.setdefault("_kvca_crl_cache", {})


async def publish_crl(ctx, ca: str, version: str | None = None) -> x509.CertificateRevocationList:
    """The CRL of CA `ca`'s key `version` (None: the current key): the one this process signed less
    than CRL_CACHE ago, else a fresh one. A fresh signing that fails (the vault or the ledger
    unreachable) falls back to the cached copy while that is still valid: a CRL that cannot be
    fetched fails clients hard."""
    key = await key_of(ctx, ca, version)
    cached = _cache_of(ctx).get((ca.lower(), (key.version or "").lower()))
    now = clock.now()
    if cached is not None and now - cached[0] < CRL_CACHE:
        return cached[1]
    locks = ctx.__dict__.setdefault("_kvca_crl_locks", {})
    async with locks.setdefault((ca.lower(), key.version), asyncio.Lock()):
        cached = _cache_of(ctx).get((ca.lower(), (key.version or "").lower()))
        if cached is not None and now - cached[0] < CRL_CACHE:
            return cached[1]
        try:
            return await _sign_fresh(ctx, ca, key)
        except KvcaError as exc:
            if cached is not None and cached[1].next_update_utc > now:
                logger.warning("kvca op=publish_crl ca=%s outcome=stale reason=%s", ca, exc)
                return cached[1]
            raise


async def _upload(ctx, ca: str, key: LoadedCA, crl: x509.CertificateRevocationList, *, current: bool) -> str:
    """The CRL to the store as `<CA>/<version>.crl`, and as `<CA>.crl` when it is the current key's;
    the per-version blob's URL ("" without a store)."""
    if ctx.crl_store is None:
        return ""
    max_age, number = int(CRL_CACHE.total_seconds()), crl_number_of(crl)
    url = await ctx.crl_store.publish(ca, crl_der(crl), max_age=max_age, number=number, version=key.version)
    if current:
        await ctx.crl_store.publish(ca, crl_der(crl), max_age=max_age, number=number)
    return url


async def publish_after_revocation(ctx, ca: str, serial: str) -> tuple[str, str, int | None]:
    """A fresh CRL of the key that signed `serial` (its ledger record says which; every key's, when it
    does not), uploaded: (the URL of a published CRL listing it, or ""; why it was not published;
    the number of the CRL that lists it, signed after the revocation was recorded)."""
    try:
        revoked = await ctx.ledger.revocation(ca, serial)
        keys = await ctx.authority.keys(ca, refresh=True)
        version = (revoked.ca_version if revoked is not None else UNKNOWN_VERSION).lower()
        chosen = [k for k in keys if (k.version or "").lower() == version] or list(keys)
        url, number = "", None
        for key in chosen:
            crl = await _sign_fresh(ctx, ca, key)
            number = crl_number_of(crl) if number is None else number
            url = url or await _upload(ctx, ca, key, crl, current=key is keys[0])
        return url, "", number
    except KvcaError as exc:
        telemetry.record("publish_crl", "failed", level=logging.ERROR, ca=ca, serial=serial, reason=str(exc))
        return "", str(exc), None


async def managed_cas(ctx) -> list[str]:
    """The CAs whose CRLs kvca keeps: every intermediate it made or imported (tag
    kvca-role=intermediate) and every CA named in KVCA_ISSUING_CAS."""
    tagged = [v.name async for v in ctx.vault.list_certificates(include_pending=False)
              if role_of(v.tags) == INTERMEDIATE]
    return sorted(set(tagged) | set(ctx.settings.issuing_cas), key=str.lower)


async def publish_crls(ctx) -> list[CrlPublication]:
    """Re-sign and upload every managed CA's CRLs, one per still-valid key: what the timer runs, well
    before each CRL's nextUpdate. Every CA is tried; one that fails does not stop the others, and the
    failures are raised together at the end (the run shows as failed)."""
    if ctx.crl_store is None:
        telemetry.record("publish_crl", "skipped", reason="KVCA_CRL_CONTAINER_URL is not set")
        return []
    done, failed = [], []
    for ca in await managed_cas(ctx):
        try:
            keys = await ctx.authority.keys(ca, refresh=True)
            for key in keys:
                crl = await _sign_fresh(ctx, ca, key)
                url = await _upload(ctx, ca, key, crl, current=key is keys[0])
                done.append(CrlPublication(ca, key.version or "", url, crl_number_of(crl), crl.next_update_utc))
        except KvcaError as exc:
            telemetry.record("publish_crl", "failed", level=logging.ERROR, ca=ca, reason=str(exc))
            failed.append(exc)
    telemetry.record("publish_crl", "failed" if failed else "done", published=len(done), failures=len(failed))
    if failed:
        first = failed[0]
        raise type(first)(f"{len(failed)} CA(s) whose CRLs were not published; first: {first}",
                          subject="publish_crls")
    return done


async def sign_root_crl(ctx, ca: str, *, revoke_intermediate: str | None = None) -> x509.CertificateRevocationList:
    """The root's CRL (`CA-root` over `CA`): empty, or listing the intermediate when
    `revoke_intermediate` gives a reason. Signed through the keys API with the root's key, which
    only the operator's identity may use, so it is the CLI that calls this."""
    check_name(ca, "CA")
    root_version = await ctx.vault.get_certificate(root_name(ca))
    inter_version = await ctx.vault.get_certificate(ca)
    if root_version.cer is None or inter_version.cer is None or root_version.key_id is None:
        raise NotFound("the root or the intermediate has no completed version", subject=f"CA '{ca}'")
    root = read_certificate(root_version.cer, f"CA '{root_name(ca)}'")
    inter = read_certificate(inter_version.cer, f"CA '{ca}'")
    if not issued_by(inter, root):
        raise NotManaged(f"'{ca}' is not issued by '{root_name(ca)}'", subject=f"CA '{ca}'")
    now = clock.now()
    entries = []
    if revoke_intermediate:
        entries.append(RevokedEntry(inter.serial_number, now.replace(microsecond=0), parse_reason(revoke_intermediate)))
    signer = RemoteSigner(root.public_key(), partial(ctx.vault.sign_digest, root_version.key_id),
                          key_id=root_version.key_id)
    crl = await sign_crl(root, signer, entries, now=now, validity=ROOT_CRL_VALIDITY)
    telemetry.record("publish_crl", "signed", ca=root_name(ca), entries=len(entries))
    return crl


__all__ = ["CRL_CACHE", "CrlPublication", "crl_der", "crl_pem", "managed_cas", "publish_after_revocation",
           "publish_crl", "publish_crls", "sign_root_crl"]
