"""sign_csr: a CSR from outside the vault (a device's or a service's own key, which never enters Key
Vault) signed by a CA, recorded in the ledger before anything is handed back.

    signed = await sign_csr(ctx, "fleet", csr_pem, name="device-001")
    signed.pem()          the leaf and the intermediates above it
    signed.record         the ledger's record (location `external`)

The same pipeline and the CA's stored policy as a vault request (signing/issue.py `issue_leaf`:
parse -> verify signature -> check key -> check names -> decide validity -> build -> sign ->
re-verify), and the policy's own say on external CSRs (`IssuancePolicy.external_profile`: off unless
`external_csrs`, and only the profiles in `external_profiles`). A CSR the policy refuses is
refused before the CA key signs and nothing is recorded.

Signing through the keys API (a CA whose key stays in the vault) waits on the process's SignRate
(ratelimit.py): a share (KVCA_EXTERNAL_SIGN_SHARE) of the vault's key-operation limit, so that a
fleet enrolling at once leaves the vault room for its own renewals, CRLs and OCSP answers.

Who may ask is the caller's business (HTTP: access rules; EST: an enrollment code or the device's
current certificate, kvca_core/enrollment.py). A `gate` lets that caller decide, on what the CSR
would be issued as, before the CA key is used: the names must be the device's, a code is spent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import re
import time
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Callable, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from kvca_core import clock, telemetry
from kvca_core.authority import LoadedCA
from kvca_core.errors import InvalidRequest, KvcaError, PolicyViolation, about
from kvca_core.ledger import EXTERNAL, CertificateRecord, ca_key
from kvca_core.operations.ratelimit import SignRate, key_operation_cost
from kvca_core.operations.recording import record_issued
from kvca_core.operations.results import SIGNED, SKIPPED
from kvca_core.operations.signing import issuance_urls
from kvca_core.signing import IssuancePolicy, Profile, issue_leaf, precheck
from kvca_core.signing import csr as csr_mod
from kvca_core.signing.policy import MAX_DAYS
from kvca_core.vocabulary import check_name

logger = logging.getLogger(__name__)

OPERATION = "sign_csr"
# What names an external certificate in the ledger and in messages: a device ID ("device-001"), a
# host name, a service's name. Letters, digits and '.', '_', ':', '-' inside, as a device ID as CN
# (signing/names.py DEVICE_ID) but as long as a DNS name.
NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,251}[A-Za-z0-9])?")
# The ledger marker that a CSR was signed: kind, and the data it holds (the serial). Its key is the
# CA and a digest of the public key and the names issued (signed_key), so a fleet run again skips
# what it signed before (`kvca sign-csr --from`).
SIGNED_MARKER = "csr-signed"


@dataclass(frozen=True)
class Admission:
    """What a CSR would be issued as, once the policy has passed it: what a gate judges."""

    ca: str
    name: str
    spki_sha256: str  # hex SHA-256 of the CSR's SubjectPublicKeyInfo (DER)
    subject: x509.Name
    sans: tuple[x509.GeneralName, ...]
    profile: Profile

    @property
    def common_name(self) -> str | None:
        values = self.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(values[0].value) if values else None


class Gate(Protocol):
    """The caller's own say (EST: an enrollment code, a current certificate). `admit` runs after every
    policy check and before the CA key signs; it raises to refuse, or returns the record of a
    certificate already issued for this very request (an idempotent retry), which is answered
    instead. `signed` runs once the new certificate is recorded."""

    async def admit(self, admission: Admission) -> CertificateRecord | None: ...

    async def signed(self, record: CertificateRecord) -> None: ...


@dataclass(frozen=True)
class SignedCsr:
    """A signed (or earlier signed) external certificate and its chain (JSON: `signed_csr`)."""

    OBJECT = "signed_csr"

    action: str  # SIGNED, or SKIPPED: the certificate an earlier call signed for the same request
    record: CertificateRecord
    chain: tuple[x509.Certificate, ...]  # the leaf, then the intermediates (no root)
    root: x509.Certificate | None
    reason: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def pem(self) -> str:
        """The leaf, then the intermediates: what a device presents (RFC 8446 4.4.2 lets it leave the root out)."""
        return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in self.chain)

    def to_dict(self) -> dict[str, Any]:
        return {**record_fields(self.record), "action": self.action, "pem": self.pem(), "reason": self.reason,
                "warnings": list(self.warnings)}


def record_fields(record: CertificateRecord | None) -> dict[str, Any]:
    """The ledger record's fields as a `signed_csr` document carries them (all null without one)."""
    if record is None:
        return {"ca": None, "name": None, "serial": None, "subject": None, "sans": [], "profile": None,
                "not_before": None, "not_after": None, "sha256": None, "requested_by": None, "recorded_at": None}
    return {"ca": record.ca, "name": record.name, "serial": record.serial, "subject": record.subject,
            "sans": list(record.sans), "profile": record.profile, "not_before": record.not_before.isoformat(),
            "not_after": record.not_after.isoformat(), "sha256": record.sha256,
            "requested_by": record.requested_by, "recorded_at": record.recorded_at.isoformat()}


# --- reading the request -------------------------------------------------------------------------
@dataclass(frozen=True)
class CsrRequest:
    """A CSR parsed and proved (its signature verifies with its own key), not yet judged by a policy."""

    csr: x509.CertificateSigningRequest
    public_key: Any
    insecure: csr_mod.InsecureRequest
    spki_sha256: str


def read_csr(data: Any) -> CsrRequest:
    """Steps parse and verify-signature of the pipeline, once, before anything is loaded: PEM, DER
    or base64 DER (signing/csr.py), or InvalidRequest naming the step."""
    parsed = csr_mod.parse_csr(data)
    public_key = csr_mod.verify_csr_signature(parsed)
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return CsrRequest(parsed, public_key, csr_mod.read_request(parsed), hashlib.sha256(spki).hexdigest())


def external_name(name: str | None, request: CsrRequest) -> str:
    """`name`, checked; or the CSR's CN, else its first DNS name; InvalidRequest when none will do."""
    if name is not None:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise InvalidRequest(f"name {str(name)[:80]!r} is not a device or service name (letters, digits and "
                                 f"'.', '_', ':', '-' inside, at most 253 characters)", subject="request")
        return name
    candidates = [str(a.value) for a in request.insecure.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    candidates += list(request.insecure.dns_names)
    for candidate in candidates:
        if NAME_RE.fullmatch(candidate):
            return candidate
    raise InvalidRequest("the CSR has no CN or DNS name to name its certificate by; give a name", subject="request")


def with_validity(policy: IssuancePolicy, days: int | None) -> IssuancePolicy:
    """The policy for a request that asks for `days` of validity (None: the policy's default).
    More than the policy's maximum is refused, naming the field: the caller asked for a number,
    and a certificate cut short without a word would expire before its holder expects."""
    if days is None:
        return policy
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidRequest(f"validity_days={days!r} must be a whole number from 1 to {MAX_DAYS}",
                             step="decide-validity")
    if days > policy.max_validity_days:
        raise PolicyViolation(f"validity_days={days} is more than this CA's max_validity_days "
                              f"({policy.max_validity_days})", step="decide-validity")
    return replace(policy, default_validity_days=days)


def signed_key(ca: str, spki_sha256: str, subject: x509.Name, sans: tuple[x509.GeneralName, ...]) -> str:
    """The SIGNED_MARKER key of a request: the CA and a digest of the public key and the names it is
    issued with (the names as the policy passes them, so two spellings of one name are one request)."""
    names = sorted(f"{type(g).__name__}:{g.value}" for g in sans)
    text = "\n".join([spki_sha256, subject.rfc4514_string(), *names])
    return f"{ca_key(ca)}~{hashlib.sha256(text.encode('utf-8')).hexdigest()}"


# --- the CA, read once a second ------------------------------------------------------------------
# How long one process signs external CSRs with a CA it loaded (authority.load: one GET of the CA's
# current version, its state checked) before it reads the CA again. Reading it for every CSR would
# spend Key Vault's budget for all other transactions (4,000 per vault per 10 s,
# learn.microsoft.com/azure/key-vault/general/service-limits) as fast as the signing spends the key
# budget: a fleet enrolling at 200 per second would take half of it from everyone else. A CA disabled,
# re-tagged or given a new policy is seen within this time; its dates are checked on every signing
# (issue.decide_validity refuses a CA that expired).
CA_STATE_SECONDS = 1.0


async def current_ca(ctx, ca: str, *, monotonic: Callable[[], float] = time.monotonic) -> LoadedCA:
    """CA `ca` as `ctx.authority.load` gave it at most CA_STATE_SECONDS ago in this process; the
    callers that find it older wait on one load together."""
    cache: dict[str, tuple[float, asyncio.Future]] = ctx.__dict__.setdefault("_kvca_external_cas", {})
    key, now = ca.lower(), monotonic()
    entry = cache.get(key)
    if entry is None or now - entry[0] >= CA_STATE_SECONDS or (entry[1].done() and entry[1].exception()):
        entry = cache[key] = (now, asyncio.ensure_future(ctx.authority.load(ca)))
    return await asyncio.shield(entry[1])


# --- the per-process limit on keys-API signing ---------------------------------------------------
def sign_rate(ctx) -> SignRate:
    """The process's SignRate, made on first use from KVCA_EXTERNAL_SIGN_SHARE (one per context: the
    Functions app keeps one context per process)."""
    rate = getattr(ctx, "_kvca_sign_rate", None)
    if rate is None:
        rate = SignRate.share_of_vault(ctx.settings.external_sign_share)
        ctx._kvca_sign_rate = rate
    return rate


# --- the operation -------------------------------------------------------------------------------
async def sign_csr(ctx, ca: str, csr: Any, *, name: str | None = None, profile: str | None = None,
                   validity_days: int | None = None, gate: Gate | None = None, resume: bool = False,
                   loaded: LoadedCA | None = None) -> SignedCsr:
    """Sign `csr` (PEM, DER, base64 DER, or a CsrRequest read already) as a leaf of CA `ca`, for `name`
    (default: the CSR's CN). `profile` and `validity_days`: within the CA's policy (default: its first
    external profile, its default validity). `resume`: a request signed before (same public key and
    names) answers its recorded certificate as SKIPPED instead of signing again. `loaded`: the CA,
    when the caller has just loaded it. One telemetry record per call."""
    check_name(ca, "CA")
    try:
        result = await _sign_csr(ctx, ca, csr, name=name, profile=profile, validity_days=validity_days,
                                 gate=gate, resume=resume, loaded=loaded)
    except KvcaError as exc:
        telemetry.record(OPERATION, "refused" if exc.http_status < 500 else "error", level=logging.WARNING,
                         ca=ca, certificate=name, kind=exc.kind, reason=str(exc))
        raise
    telemetry.record(OPERATION, result.action, ca=ca, serial=result.record.serial, certificate=result.record.name,
                     reason=result.reason or None)
    return result


async def _sign_csr(ctx, ca: str, csr: Any, *, name: str | None, profile: str | None, validity_days: int | None,
                    gate: Gate | None, resume: bool, loaded: LoadedCA | None) -> SignedCsr:
    request = csr if isinstance(csr, CsrRequest) else read_csr(csr)
    name = external_name(name, request)
    with about(f"CSR '{name}'"):
        if loaded is None:
            loaded = await current_ca(ctx, ca)
        policy = await ctx.authority.policy(loaded)
        chosen = policy.external_profile(profile)
        policy = with_validity(policy, validity_days)
        csr_mod.check_key(request.public_key, policy)
        # Every rule of check-names and decide-validity, before the CA key is touched (issue_leaf runs
        # them again on the same CSR: one set of rules, two calls).
        checked = precheck(request.insecure, ca_certificates=loaded.issuing.certificates, policy=policy,
                           profile=chosen, now=clock.now())
        key = signed_key(ca, request.spki_sha256, checked.subject, checked.sans)
        if resume:
            earlier = await signed_before(ctx, ca, key)
            if earlier is not None:
                return answered(loaded, earlier, f"already signed (serial {earlier.serial}); not signed again")
        if gate is not None:
            earlier = await gate.admit(Admission(ca, name, request.spki_sha256, checked.subject, checked.sans, chosen))
            if earlier is not None:
                return answered(loaded, earlier, "signed before for this request; the same certificate again")
        if loaded.remote:
            # Through the keys API: within this process's share of the vault's key-operation limit.
            await sign_rate(ctx).wait(key_operation_cost(loaded.issuing.certificate.public_key()))
        issued = await issue_leaf(request.csr, ca=loaded.issuing, policy=policy, profile=chosen, now=clock.now(),
                                  urls=issuance_urls(ctx.settings, ca, loaded.version))
        # In the ledger before anyone sees it: a certificate kvca did not record is never released.
        record = await record_issued(ctx, issued.leaf, ca=ca, ca_version=loaded.version,
                                     profile=issued.profile.value, location=EXTERNAL, name=name)
        await ctx.ledger.insert_once(SIGNED_MARKER, key, {"serial": record.serial, "name": name})
        if gate is not None:
            await gate.signed(record)
    return SignedCsr(SIGNED, record, issued.chain, issued.root, reason=f"signed by CA '{ca}'",
                     warnings=tuple(issued.warnings))


async def signed_before(ctx, ca: str, key: str) -> CertificateRecord | None:
    """The record SIGNED_MARKER `key` points at, when both are there."""
    marker = await ctx.ledger.get(SIGNED_MARKER, key)
    if marker is None or not marker.get("serial"):
        return None
    return await ctx.ledger.certificate(ca, marker["serial"])


def answered(loaded: LoadedCA, record: CertificateRecord, reason: str) -> SignedCsr:
    """A certificate signed earlier, answered again with the CA's current chain above it."""
    leaf = x509.load_der_x509_certificate(record.der)
    above = tuple(c for c in loaded.issuing.certificates if c is not loaded.issuing.root)
    return SignedCsr(SKIPPED, record, (leaf, *above), loaded.issuing.root, reason=reason)


# --- for the inventory ---------------------------------------------------------------------------
async def external_certificates(ctx, *, ca: str | None = None,
                                expiring_within_days: int | None = None) -> AsyncIterator[CertificateRecord]:
    """The external certificates the ledger holds (of one CA, or all), optionally only those that
    expire within `expiring_within_days` from now: what `kvca list` and expiry warnings read."""
    before = clock.now() + dt.timedelta(days=expiring_within_days) if expiring_within_days is not None else None
    async for record in ctx.ledger.certificates(ca, expiring_before=before, location=EXTERNAL):
        yield record
