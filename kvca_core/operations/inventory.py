"""inventory_report and describe: the managed certificates, and one certificate in detail, with the
lifecycle's verdict on each (the same the sweep acts on)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from typing import Collection

from cryptography import x509

from kvca_core import access, cawatch, clock, lifecycle
from kvca_core.authority import parse_secret, read_certificate
from kvca_core.errors import InvalidRequest, KvcaError, NotFound
from kvca_core.ledger import EXTERNAL, CertificateRecord
from kvca_core.model import CertificatePolicy, CertificateVersion
from kvca_core.operations.common import current, serial_hex, where
from kvca_core.operations.results import CertificateInfo, Description, InventoryReport
from kvca_core.operations.sweep import Rotations
from kvca_core.vocabulary import CA_TAG, check_name


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The SANs of a certificate as the inventory shows them: DNS names, IP addresses, emails, URIs."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(v) for kind in (x509.DNSName, x509.IPAddress, x509.RFC822Name, x509.UniformResourceIdentifier)
                 for v in ext.get_values_for_type(kind))


async def _verdict(ctx, version: CertificateVersion, now: dt.datetime, rotations: Rotations,
                   policy: CertificatePolicy | None = None) -> lifecycle.Verdict:
    """The lifecycle's verdict, with the CA's rotation read once per CA (`rotations`)."""
    ca = version.tags.get(CA_TAG) if lifecycle.is_managed_leaf(version) else None
    rotation = await rotations.of(ctx, ca) if ca else None
    return lifecycle.verdict(version, now=now, rules=lifecycle.Rules.of(ctx.settings), rotation=rotation,
                             policy=policy)


def _info(version: CertificateVersion, verdict: lifecycle.Verdict, now: dt.datetime) -> CertificateInfo:
    cert = read_certificate(version.cer, where(version.name)) if version.cer else None
    # A pending version's nbf/exp are Key Vault's guesses from the policy, not a certificate's.
    completed = version.completed
    not_after = (version.expires_on or (cert.not_valid_after_utc if cert else None)) if completed else None
    return CertificateInfo(
        name=version.name, subject=cert.subject.rfc4514_string() if cert is not None else "",
        sans=certificate_names(cert) if cert is not None else (), ca=version.tags.get(CA_TAG, ""),
        not_before=version.not_before if completed else None, not_after=not_after,
        days_left=(not_after - now).days if not_after else None, state=verdict.state, version=version.version,
        serial=serial_hex(cert) if cert is not None else None, scope=tuple(access.scope_names(cert, tags=version.tags)))


# A device whose newest certificate expired stays in the inventory this long, as expired.
EXPIRED_DEVICES_SHOWN = dt.timedelta(days=30)


async def external_inventory(ctx, now: dt.datetime, *, states: Collection[str] | None = None) -> list[CertificateInfo]:
    """The devices' certificates (signed for keys outside the vault, location "external"), newest per
    device and CA: a device that re-enrolled shows its new certificate only. Read from the ledger in
    one query of the certificates still valid or expired less than EXPIRED_DEVICES_SHOWN ago, plus one
    read of each CA's revocations: its cost grows with the fleet, never with the vault. `states`:
    only the devices in these (the sweep's due and expired), the others never parsed."""
    newest: dict[tuple[str, str], CertificateRecord] = {}
    async for record in ctx.ledger.certificates(location=EXTERNAL, expiring_after=now - EXPIRED_DEVICES_SHOWN):
        key = (record.ca.lower(), record.name.lower())
        if key not in newest or record.not_after > newest[key].not_after:
            newest[key] = record
    revoked: dict[str, set[str]] = {}
    for ca in {ca for ca, _ in newest}:
        revoked[ca] = {r.serial for r in await ctx.ledger.revocations(ca)}
    infos = []
    for (ca, _), record in newest.items():
        state = lifecycle.external_state(record.not_before, record.not_after, revoked=record.serial in revoked[ca],
                                         now=now, renew_before_days=ctx.settings.renew_before_days)
        if states is not None and state not in states:
            continue
        cert = read_certificate(record.der, f"ledger record of CA '{record.ca}' serial {record.serial}")
        infos.append(CertificateInfo(
            name=record.name, subject=record.subject, sans=tuple(s.split(":", 1)[1] for s in record.sans),
            ca=record.ca, not_before=record.not_before, not_after=record.not_after,
            days_left=(record.not_after - now).days, state=state, version=None, serial=record.serial,
            location=EXTERNAL, scope=tuple(access.scope_names(cert))))
    return infos


async def inventory_report(ctx, *, expiring_within_days: int | None = None) -> InventoryReport:
    """The managed certificates (tag kvca-ca) and the devices' certificates from the ledger
    (external_inventory), soonest expiry first, with the warnings of the vault's CAs nearing expiry
    (cawatch.py), which the same listing shows: `kvca list` prints them, `GET /api/certificates`
    returns them."""
    if expiring_within_days is not None and (isinstance(expiring_within_days, bool)
                                             or not isinstance(expiring_within_days, int)
                                             or expiring_within_days < 0):
        raise InvalidRequest(f"expiring_within_days must be a whole number >= 0, got {expiring_within_days!r}",
                             subject="inventory")
    watch = cawatch.CAWatch.of(ctx.settings)
    listed = [v async for v in ctx.vault.list_certificates(include_pending=True)
              if not watch.observe(v) and lifecycle.is_managed_leaf(v)]
    now = clock.now()
    limit = asyncio.Semaphore(ctx.settings.concurrency)
    rotations = Rotations()  # which CAs were rotated: one read per CA, as in the sweep

    async def one(v: CertificateVersion) -> CertificateInfo:
        # Every item is read in full, pending-looking ones too: an item without a certificate may
        # stand for a newer pending or abandoned version over a completed one (Vault.get_certificate).
        async with limit:
            try:
                full = await ctx.vault.get_certificate(v.name)
            except NotFound:  # deleted while we listed
                full = v
            return _info(full, await _verdict(ctx, full, now, rotations), now)

    infos = [*await asyncio.gather(*(one(v) for v in listed)), *await external_inventory(ctx, now)]
    if expiring_within_days is not None:
        horizon = now + dt.timedelta(days=expiring_within_days)
        infos = [i for i in infos if i.not_after is not None and i.not_after <= horizon]
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return InventoryReport(tuple(sorted(infos, key=lambda i: (i.not_after or far, i.name))),
                           await watch.warnings(ctx, now))


async def _chain_subjects(ctx, version: CertificateVersion, cert: x509.Certificate) -> tuple[str, ...]:
    """The chain's subjects as the certificate's secret holds them, leaf first; the leaf alone when
    the secret cannot be read (no secret access)."""
    try:
        content_type, value = await ctx.vault.get_secret_value(version.name, version.version)
        _key, certs = parse_secret(where(version.name), content_type, value)
        del _key, value  # certificates only; any key is dropped at once
    except KvcaError:
        certs = []
    return tuple(c.subject.rfc4514_string() for c in certs) or (cert.subject.rfc4514_string(),)


async def describe(ctx, name: str) -> Description:
    check_name(name)
    version = await current(ctx, name)
    policy = version.policy if version.policy is not None else await ctx.vault.get_policy(name)
    pending = await ctx.vault.get_pending(name)
    now = clock.now()
    verdict = await _verdict(ctx, version, now, Rotations(), policy)
    cert = read_certificate(version.cer, where(name)) if version.cer else None
    return Description(
        info=_info(version, verdict, now), managed=verdict.managed, why_not_managed=verdict.why_not_managed,
        issuer=cert.issuer.rfc4514_string() if cert is not None else "",
        sha256=hashlib.sha256(version.cer).hexdigest() if version.cer else None,
        tags=dict(version.tags), chain=await _chain_subjects(ctx, version, cert) if cert is not None else (),
        pending=pending.status if pending is not None else None, renew_at=verdict.at, policy=policy)


async def certificate_scope(ctx, name: str) -> tuple[str, list[str]]:
    """(the CA its kvca-ca tag names, every name the access rules check: its current certificate's,
    its tags', its policy's). The HTTP API's access rules decide sign, renew, cancel and revoke from it."""
    check_name(name)
    version = await current(ctx, name)
    cert = read_certificate(version.cer, where(name)) if version.cer else None
    return version.tags.get(CA_TAG, ""), access.scope_names(cert, tags=version.tags,
                                                             policy=await ctx.vault.get_policy(name))
