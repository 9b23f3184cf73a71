"""`create_ca`: a root and an intermediate whose keys are generated inside Key Vault.

A CA named NAME is two Key Vault certificates (kvca_core/vocabulary.py):
- `NAME-root`: the self-signed root (tag kvca-role=root), made only by `create_ca`;
- `NAME`: the intermediate that signs leaves (tag kvca-role=intermediate); its
  secret holds its chain up to the root.
Leaves carry the tag kvca-ca=NAME.

`create_ca` keeps both private keys inside the vault. Key Vault cannot sign a
certificate's own CSR, and a pending certificate's key is not usable for
signing until it is merged (docs/keyvault-behaviour.md, "Pending versions"), so
the root is made the way a public .NET library keeping CA keys in Key Vault does it: a temporary self-signed version (issuer Self) makes
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
from dataclasses import dataclass, replace
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from kvca_core import capolicy, clock
from kvca_core.errors import Conflict, InvalidRequest, NotFound
from kvca_core.model import CertificateVersion, KeySpec, PendingRequest
from kvca_core.vocabulary import (CREATING_TAG, INTERMEDIATE, POLICY_TAG, ROLE_TAG, ROOT, check_free, root_name)
from kvca_core.signing import (
    IssuingCA,
    create_intermediate,
    create_root,
    names_subject,
    parse_subject,
)
from kvca_core.signing.certs import is_ca_certificate, is_self_signed, issued_by, same_public_key
from kvca_core.signing.issue import BACKDATE, MAX_CA_YEARS, add_months

from kvca_core.ca.inspect import CAInfo, show_ca
from kvca_core.ca.common import ObjectState, ca_policy, ca_where, cert_of, cert_where, check_permitted_dns, check_years, csr_public_key, current_or_none, describe_key, key_matches_spec, object_state, remote_signer, subject_label, subject_with_cn_suffix

log = logging.getLogger("kvca_core.ca")

# ---------------------------------------------------------------------------
# create


async def _check_policy_name(vault, name: str) -> None:
    """The CA's policy secret `<CA>-policy` must be free for a plain secret: a certificate of that
    name owns the secret of its name, and the vault would refuse the policy after the CA exists."""
    policy_name = capolicy.secret_name(name)
    if await current_or_none(vault, policy_name) is not None:
        raise Conflict(f"a certificate named '{policy_name}' exists, and a CA's issuance policy is kept in the "
                       f"secret of that name", subject=ca_where(name), hint="choose another CA name")



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


@dataclass(frozen=True)
class CAPlan:
    """Everything `kvca ca create` was asked for, checked before the vault is touched (`plan_ca`)."""

    name: str
    subject: x509.Name
    root_subject: x509.Name
    key: str
    years: int
    root_years: int
    permitted: tuple[str, ...]
    exportable: bool
    issuance: Any  # the IssuancePolicy to store with the CA, or None
    policy_note: str

    @property
    def root_object(self) -> str:
        return root_name(self.name)


def plan_ca(name: str, *, subject: str, key: str = "ec-p256", years: int = 10, permitted_dns: Sequence[str] = (),
            exportable: bool = False, root_subject: str | None = None, root_years: int | None = None,
            policy=None, setting=None) -> CAPlan:
    """Check a `kvca ca create` before anything reaches the vault. `setting`: KVCA_ISSUANCE_POLICY,
    whose entry for the CA is stored with it when no `policy` is given (capolicy.policy_for_new_ca)."""
    check_free(name, "CA")
    ca_subject = parse_subject(subject)
    if not ca_subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise InvalidRequest(f"subject {subject!r} has no CN; a CA needs a common name (e.g. CN=Example CA)",
                             subject=ca_where(name))
    years = check_years(years)
    root_years = default_root_years(years) if root_years is None else check_years(root_years, "root")
    if root_years < years:
        raise InvalidRequest(f"root validity of {root_years} years is shorter than the intermediate's {years}: "
                             "an intermediate cannot outlive its root", subject=ca_where(name),
                             hint=f"give --root-years {years} or more (default: {default_root_years(years)})")
    KeySpec.parse(key)
    permitted = check_permitted_dns(permitted_dns)
    issuance, policy_note = capolicy.policy_for_new_ca(setting, name, policy, permitted)
    return CAPlan(name, ca_subject, _root_subject(name, ca_subject, root_subject), key, years, root_years, permitted,
                  exportable, issuance, policy_note)


def _refuse_collisions(name: str, root: ObjectState, inter: ObjectState) -> None:
    """Every collision with something `kvca ca create` did not make, refused before the first write,
    so bad input leaves the vault as it was."""
    if inter.role == INTERMEDIATE and not inter.in_progress:
        raise Conflict("already exists", subject=ca_where(name), hint="`kvca ca show` it, or choose another name")
    if inter.exists and inter.creating != INTERMEDIATE:
        raise Conflict("a certificate of this name exists and was not made by `kvca ca create`",
                       subject=cert_where(name), hint="choose another CA name")
    if root.exists and root.creating != ROOT and root.role != ROOT:
        raise Conflict("a certificate of this name exists and was not made by `kvca ca create`",
                       subject=cert_where(root.name), hint="choose another CA name")
    if root.role == ROOT and root.in_progress:
        raise Conflict("the root has a pending request that kvca did not start", subject=cert_where(root.name),
                       hint=f"delete it: az keyvault certificate pending delete --name {root.name}")


async def create_ca(ctx, name: str, **options) -> CAInfo:
    """`plan_ca` with the process's KVCA_ISSUANCE_POLICY, then `create_planned`."""
    return await create_planned(ctx, plan_ca(name, setting=ctx.settings.issuance_policy, **options))


async def create_planned(ctx, plan: CAPlan) -> CAInfo:
    """Create root `NAME-root` and intermediate `NAME`, both keys generated in the vault.

    The plan's `years` is the intermediate's lifetime, `root_years` the root's (at least `years`).
    Every name collision with something kvca did not make is refused before the first write.
    Re-running after a failure resumes from the vault's state, and refuses a root made with other
    root options than the ones given. The plan's issuance policy is stored with the CA
    (capolicy.py) and in force from the moment the intermediate gets its role tag, in the same PATCH.
    """
    name, vault = plan.name, ctx.vault
    root = await object_state(vault, plan.root_object)
    inter = await object_state(vault, name)
    _refuse_collisions(name, root, inter)
    await _check_policy_name(vault, name)
    notes: list[str] = []
    if root.role == ROOT or inter.exists or root.exists:
        notes.append("resumed an unfinished `kvca ca create`")
        log.info("create_ca resume name=%s root_role=%s root_creating=%s inter_creating=%s",
                 name, root.role, root.creating, inter.creating)
    # One moment for both: with --root-years equal to --years the intermediate then ends exactly when
    # the root does (step ca init gives both 10 years) instead of being capped a few seconds short.
    moment = clock.now()
    # The root's key is never exportable; the intermediate's only on request.
    root_cert, root_key_id = await _ensure_root(vault, root, plan.root_subject, KeySpec.parse(plan.key),
                                                plan.root_years, moment)
    root_signer = remote_signer(vault, root_key_id, root_cert.public_key())
    # The policy secret is written before the intermediate's role tag, which then names it: the CA
    # becomes usable and gets its policy at once. A re-run reuses the version (capolicy.store).
    policy_tags = {POLICY_TAG: await capolicy.store(vault, name, plan.issuance)} if plan.issuance is not None else {}
    inter_version = await _ensure_intermediate(vault, inter, plan.subject,
                                               KeySpec.parse(plan.key, exportable=plan.exportable), plan.years,
                                               plan.permitted, root_cert, root_signer, moment, policy_tags)
    log.info("create_ca done name=%s version=%s", name, inter_version.version)
    info = await show_ca(ctx, name)
    notes.append("the intermediate's key is exportable (--exportable): its secret holds the private key"
                 if plan.exportable else "both private keys were generated in Key Vault and cannot be exported")
    notes.append(plan.policy_note)
    return replace(info, notes=tuple(notes))


def _root_subject(name: str, ca_subject: x509.Name, text: str | None) -> x509.Name:
    if text is None:
        return subject_with_cn_suffix(ca_subject, " Root")
    root_subject = parse_subject(text)
    if not root_subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise InvalidRequest(f"root subject {text!r} has no CN; a CA needs a common name (e.g. CN=Example Root CA)",
                             subject=ca_where(name))
    if root_subject == ca_subject:
        # The intermediate would name itself as its issuer: chain builders take it for a root.
        raise InvalidRequest(f"root subject {text!r} is the intermediate's subject; the two must differ",
                             subject=ca_where(name), hint="leave --root-subject out for '<CN> Root'")
    return root_subject



async def _find_temporary_version(vault, name: str, public_key) -> CertificateVersion:
    """The completed self-signed version whose key the pending root version reuses."""
    async for props in vault.list_versions(name):
        if not props.version or not props.enabled:
            continue
        try:
            version = await vault.get_certificate(name, props.version)
        except NotFound:  # the pending version itself, on services that list it
            continue
        cert = cert_of(version)
        if cert is not None and version.key_id and same_public_key(cert.public_key(), public_key):
            return version
    raise Conflict("no completed version holds the key of the pending root request", subject=cert_where(name),
                   hint=f"delete the pending request (az keyvault certificate pending delete --name {name}) "
                        "and run `kvca ca create` again")


async def _ensure_root(vault, state: ObjectState, subject: x509.Name, spec: KeySpec, years: int,
                       moment: dt.datetime):
    """-> (root certificate, key id of its merged version)."""
    name = state.name
    if state.role == ROOT:
        cert = cert_of(state.current)
        if cert is None or not is_self_signed(cert) or not is_ca_certificate(cert):
            raise Conflict("is tagged as a kvca root but is not a self-signed CA certificate", subject=cert_where(name))
        _check_existing_root(name, cert, subject, years)
        log.info("create_ca root reused name=%s version=%s", name, state.current.version)
        return cert, state.current.key_id

    pending = state.pending if state.in_progress else None
    current = state.current
    if current is not None and pending is None:
        policy = await vault.get_policy(name)
        if policy.issuer_name.lower() == "unknown":
            # Merged, not yet tagged: check it is the root we meant, then finish below.
            cert = cert_of(current)
            if cert is None or not is_self_signed(cert) or not is_ca_certificate(cert):
                raise Conflict("an unfinished root holds a certificate that is not the expected root",
                               subject=cert_where(name), hint="delete it and run `kvca ca create` again")
            _check_existing_root(name, cert, subject, years)
            await _finish_root(vault, name, current, cert)
            return cert, current.key_id
    if current is None and pending is None:
        # Step 1: a temporary self-signed version, only to have Key Vault make the key.
        log.info("create_ca root step=temporary name=%s", name)
        current = await vault.create_certificate(name, ca_policy(subject, spec, "Self", years),
                                                 tags={CREATING_TAG: ROOT})
        if not isinstance(current, CertificateVersion) or not current.key_id:
            raise Conflict("the temporary self-signed version did not complete", subject=cert_where(name))
    if pending is None:
        # Step 2: a version with issuer Unknown over the same key (reuse_key), for its CSR.
        log.info("create_ca root step=request name=%s", name)
        pending = await vault.create_certificate(
            name, ca_policy(subject, replace(spec, reuse_key=True), "Unknown", years),
            tags={CREATING_TAG: ROOT})
        if not isinstance(pending, PendingRequest):
            raise Conflict("the root's request with issuer Unknown did not stay pending", subject=cert_where(name))
    else:
        await _check_resumed_request(vault, name, subject, spec, years)
    csr_key = csr_public_key(pending, name)
    if not key_matches_spec(csr_key, spec):
        raise Conflict(f"the pending root request has a {describe_key(csr_key)} key, not the requested one",
                       subject=cert_where(name), hint="run `kvca ca create` with the --key of the first attempt")
    temporary = await _find_temporary_version(vault, name, csr_key)
    # Step 3: sign the root with the temporary version's key (the pending key cannot sign yet).
    log.info("create_ca root step=sign name=%s temporary=%s", name, temporary.version)
    signer = remote_signer(vault, temporary.key_id, csr_key)
    cert = await create_root(subject, signer, years=years, now=moment)
    # Step 4: merge; Key Vault checks the certificate's key is the pending key.
    merged = await vault.merge(name, [cert.public_bytes(serialization.Encoding.DER)])
    await _finish_root(vault, name, merged, cert)
    return cert, merged.key_id


async def _check_resumed_request(vault, name: str, subject: x509.Name, spec: KeySpec, years: int) -> None:
    """A resumed root's pending request holds the first attempt's root subject and lifetime. The
    merge checks only the key, so a root signed with other options would be merged over a request
    that asked for something else: refuse, naming the first attempt's options."""
    made = await vault.get_policy(name)
    if not names_subject(made.subject, subject):
        raise Conflict(f"the pending root request was made for the subject {made.subject!r}, not "
                       f"{subject.rfc4514_string()!r}", subject=cert_where(name),
                       hint="run `kvca ca create` with the --subject and --root-subject of the first attempt")
    asked_months = ca_policy(subject, spec, "Unknown", years).validity_months
    if made.validity_months != asked_months:
        raise Conflict(f"the pending root request was made for a {made.validity_months}-month root, not "
                       f"{asked_months} months (--root-years {years})", subject=cert_where(name),
                       hint="run `kvca ca create` with the --years and --root-years of the first attempt")


def _check_existing_root(name: str, cert: x509.Certificate, subject: x509.Name, years: int) -> None:
    """A resumed `ca create` finishes only the root it was asked for: same subject, same lifetime."""
    if cert.subject != subject:
        raise Conflict(f"the existing root's subject is {subject_label(cert)!r}, not "
                       f"{subject.rfc4514_string()!r}", subject=cert_where(name),
                       hint="run `kvca ca create` with the --subject and --root-subject of the first attempt, "
                            "or delete the root")
    if not _root_lifetime_is(cert, years):
        raise Conflict(f"the existing root is valid until {cert.not_valid_after_utc:%Y-%m-%d}, not for "
                       f"{years} years from its start ({cert.not_valid_before_utc:%Y-%m-%d})", subject=cert_where(name),
                       hint="run `kvca ca create` with the --years and --root-years of the first attempt, "
                            "or delete the root")


async def _finish_root(vault, name: str, merged: CertificateVersion, cert: x509.Certificate) -> None:
    # Step 5: the temporary versions are disabled, then the root gets its role tag.
    async for props in vault.list_versions(name):
        if props.version and props.version != merged.version and props.enabled:
            await vault.update_properties(name, props.version, enabled=False)
    await vault.update_properties(name, merged.version, tags={ROLE_TAG: ROOT})
    log.info("create_ca root complete name=%s version=%s serial=%x", name, merged.version, cert.serial_number)


async def _ensure_intermediate(vault, state: ObjectState, subject: x509.Name, spec: KeySpec, years: int,
                               permitted: tuple[str, ...], root_cert: x509.Certificate, root_signer,
                               moment: dt.datetime, policy_tags: dict[str, str] | None = None):
    name = state.name
    chain_der = [root_cert.public_bytes(serialization.Encoding.DER)]
    if state.current is not None and state.current.cer and not state.in_progress:
        # Merged on an earlier run but not tagged: only tag what the root really signed.
        cert = cert_of(state.current)
        if not issued_by(cert, root_cert) or not is_ca_certificate(cert):
            raise Conflict("an unfinished intermediate holds a certificate the root did not sign", subject=ca_where(name),
                           hint="delete it and run `kvca ca create` again")
        merged = state.current
    else:
        pending = state.pending if state.in_progress else None
        if pending is None:
            log.info("create_ca intermediate step=request name=%s", name)
            pending = await vault.create_certificate(name, ca_policy(subject, spec, "Unknown", years),
                                                     tags={CREATING_TAG: INTERMEDIATE})
            if not isinstance(pending, PendingRequest):
                raise Conflict("the intermediate's request with issuer Unknown did not stay pending", subject=ca_where(name))
        public_key = csr_public_key(pending, name)
        if not key_matches_spec(public_key, spec):
            raise Conflict(f"the pending intermediate request has a {describe_key(public_key)} key, "
                           "not the requested one", subject=ca_where(name),
                           hint="run `kvca ca create` with the --key of the first attempt")
        made_exportable = (await vault.get_policy(name)).key.exportable
        if made_exportable != spec.exportable:
            # Never finish a CA whose key is more (or less) exportable than this run asked for.
            raise Conflict(f"the pending intermediate request was made with "
                           f"{'an exportable' if made_exportable else 'a non-exportable'} key", subject=ca_where(name),
                           hint="run `kvca ca create` again with the --exportable choice of the first attempt")
        log.info("create_ca intermediate step=sign name=%s", name)
        issuer = IssuingCA(root_cert, [], root_signer)
        cert = await create_intermediate(subject, public_key, issuer, years=years,
                                         permitted_dns=permitted, now=moment)
        merged = await vault.merge(name, [cert.public_bytes(serialization.Encoding.DER)] + chain_der)
    # Last step: the role tag makes it a CA that leaves may name (with its policy's tag, if any).
    await vault.update_properties(name, merged.version, tags={ROLE_TAG: INTERMEDIATE, **(policy_tags or {})})
    log.info("create_ca intermediate complete name=%s version=%s serial=%x", name, merged.version,
             cert.serial_number)
    return merged


