"""What every operation shares: reading the current version, loading the CA, the tags a version
carries on, and the one log line per operation."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Mapping

from cryptography import x509

from kvca_core import notify, telemetry
from kvca_core.authority import LoadedCA
from kvca_core.errors import Conflict, InvalidRequest, KvcaError, NotFound, NotManaged, UpstreamError
from kvca_core.model import CertificatePolicy, CertificateVersion, PendingRequest
from kvca_core.operations.results import Outcome
from kvca_core.signing import Profile
from kvca_core.vocabulary import (
    CA_TAG,
    CA_VERSION_TAG,
    CHAIN_TAG,
    CHAIN_WITH_ROOT,
    CHAIN_WITHOUT_ROOT,
    IPS_TAG,
    MAX_TAGS,
    REVOCATION_TAGS,
    URIS_TAG,
)

logger = logging.getLogger("kvca_core.operations")

# Exportable keys by default, for every profile: Application Gateway, API Management, App Service and
# Container Apps read the certificate's secret and need the private key in the PFX, and an MQTT
# device or mTLS client needs its own key (docs/keyvault-behaviour.md, "What consumers need").
# `exportable: false` asks for a key that never leaves the vault.
EXPORTABLE_BY_DEFAULT = {Profile.SERVER: True, Profile.CLIENT: True, Profile.SERVER_CLIENT: True}
# The root in the merged chain (leaf, intermediates, root): API Management and App Service require
# the full chain including the root in the PFX, so certificates that serve TLS carry it. A client
# presents its chain to a server that holds the trust anchor already (Event Grid's MQTT broker is
# given the immediate issuer; RFC 8446 4.4.2 lets the root be left out), so device certificates stay
# without it. `include_root` chooses per request; CHAIN_TAG keeps it.
ROOT_IN_CHAIN_BY_DEFAULT = {Profile.SERVER: True, Profile.CLIENT: False, Profile.SERVER_CLIENT: True}


def where(name: str) -> str:
    return f"certificate '{name}'"


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


# --- reading -------------------------------------------------------------------------------------
async def current(ctx, name: str) -> CertificateVersion:
    """The current version (the newest completed one: `Vault.get_certificate`), with its policy;
    for a certificate whose only version is pending, that version (cer None). Key Vault answers
    GET for it (docs/keyvault-behaviour.md, "Pending versions"); a 404 all the same falls back to
    the versions listing."""
    try:
        return await ctx.vault.get_certificate(name)
    except NotFound:
        newest = None
        floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        try:
            async for version in ctx.vault.list_versions(name):
                if newest is None or (version.created_on or floor) > (newest.created_on or floor):
                    newest = version
        except NotFound:
            pass
        if newest is None:
            raise NotFound("no such certificate in the vault", subject=where(name)) from None
        return newest


async def policy_of(ctx, version: CertificateVersion) -> CertificatePolicy:
    """The policy a versionless GET returned with the version, or (a listing, a fallback) read."""
    return version.policy if version.policy is not None else await ctx.vault.get_policy(version.name)


class CACache:
    """Per sweep (or batch): each CA loaded once, however many of its certificates are signed, and
    the loads of many workers awaited together."""

    def __init__(self) -> None:
        self.loads: dict[str, asyncio.Future] = {}

    async def load(self, ctx, ca_name: str) -> LoadedCA:
        key = ca_name.lower()
        if key not in self.loads:
            self.loads[key] = asyncio.ensure_future(ctx.authority.load(ca_name))
        return await asyncio.shield(self.loads[key])


async def load_ca(ctx, ca_name: str, cas: CACache | None) -> LoadedCA:
    return await (cas.load(ctx, ca_name) if cas is not None else ctx.authority.load(ca_name))


def pending_status(pending: PendingRequest | None) -> str:
    if pending is None:
        return "no pending request"
    if pending.cancellation_requested or pending.status.lower() == "cancelled":
        return "the pending request was cancelled"
    return f"the pending request is {pending.status}"


# --- tags ----------------------------------------------------------------------------------------
def root_in_chain(tags: Mapping[str, str], profile: Profile) -> bool:
    """Whether the merged chain ends with the root: the certificate's CHAIN_TAG, else the profile's
    default. Tags are vault data: a value kvca did not write counts as absent."""
    value = tags.get(CHAIN_TAG)
    if value == CHAIN_WITH_ROOT:
        return True
    if value == CHAIN_WITHOUT_ROOT:
        return False
    return ROOT_IN_CHAIN_BY_DEFAULT[profile]


def tagged_names(tags: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(URI SANs, IP address SANs) a certificate asks for through URIS_TAG and IPS_TAG (vocabulary.py
    says why tags). Untrusted: the signer checks each like a name from the CSR."""
    return tuple((tags.get(URIS_TAG) or "").split()), tuple((tags.get(IPS_TAG) or "").split())


def request_tags(ca_name: str, uris: tuple[str, ...], ips: tuple[str, ...], include_root: bool) -> dict[str, str]:
    tags = {CA_TAG: ca_name, CHAIN_TAG: CHAIN_WITH_ROOT if include_root else CHAIN_WITHOUT_ROOT}
    if uris:
        tags[URIS_TAG] = " ".join(uris)
    if ips:
        tags[IPS_TAG] = " ".join(ips)
    return tags


def next_version_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags a new version takes over from the current one (kvca-ca, kvca-chain, kvca-uris,
    kvca-ips, a user's own): all but a revocation record, which stays on the revoked version, so
    that replacing a revoked certificate gives a valid one and the CRL keeps the old serial once;
    and the CA version that signed the old one (CA_VERSION_TAG), which the merge writes anew."""
    return {k: v for k, v in tags.items() if k not in REVOCATION_TAGS and k != CA_VERSION_TAG}


def merged_tags(tags: Mapping[str, str], loaded: LoadedCA) -> dict[str, str]:
    """The tags of a version kvca merges: the ones passed on, and the CA version that signed it
    (what the sweep moves leaves by after a rotation), when there is room for one more tag (Key
    Vault keeps at most 15); a leaf without it is judged by its notBefore (lifecycle.signed_by_older)."""
    merged = next_version_tags(tags)
    if loaded.version and len(merged) < MAX_TAGS:
        merged[CA_VERSION_TAG] = loaded.version
    return merged


# --- one log line per operation ------------------------------------------------------------------
def log_outcome(op: str, outcome: Outcome) -> Outcome:
    telemetry.outcome(op, outcome)
    return outcome


async def logged(op: str, name: Any, coro) -> Outcome:
    try:
        return log_outcome(op, await coro)
    except KvcaError as exc:
        telemetry.refusal(op, name, exc)
        raise


def is_renewal_failure(exc: KvcaError, name: str) -> bool:
    """Whether a refusal of renew/sign_pending is a renewal that failed, worth a webhook notice.
    Not: a certificate kvca does not manage (Key Vault sends events for all), a malformed or
    conflicting request (the caller is told in the answer), the certificate itself gone, and an
    upstream failure (Event Grid redelivers it for up to 24 h: a notice per attempt would flood;
    the sweep tells a failure that lasts)."""
    if isinstance(exc, (NotManaged, InvalidRequest, Conflict, UpstreamError)):
        return False
    if isinstance(exc, NotFound) and exc.subject == where(name):
        return False
    return True


async def told_if_failed(ctx, op: str, name: str, coro) -> Outcome:
    """`logged`, and a webhook notice (notify.py) when the renewal or signing failed, posted in the
    background: the caller (an HTTP client, Event Grid) gets its answer without waiting for the
    webhook, which may take three attempts of 10 s."""
    try:
        return await logged(op, name, coro)
    except KvcaError as exc:
        if is_renewal_failure(exc, name):
            await notify.renewals_failed(ctx, [(name, str(exc))], source=op, background=True)
        raise
