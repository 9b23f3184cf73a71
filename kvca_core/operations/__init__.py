"""kvca's operations, one verb each, the same for the Functions app, the CLI and the demo.

    sign_pending(ctx, name)     sign the pending request of a managed certificate    (signing.py)
    cancel(ctx, name)           withdraw (delete) a managed certificate's pending request
    renew(ctx, name)            a new signed version: now (people), or when due       (renewal.py)
    sweep(ctx)                  walk the vault: sign what is pending, renew what is due, most urgent
                                first, within a time budget and a share of the vault's limit (sweep.py)
    issue(ctx, request)         create a managed certificate (key made in the vault)   (issuance.py)
    issue_many(ctx, requests)   `issue` for a fleet, within Key Vault's create limit, one outcome each
    inventory_report(ctx)       the managed certificates and CA warnings, for `kvca list` (inventory.py)
    describe(ctx, name)         one certificate in detail, for `kvca show`
    sign_csr(ctx, ca, csr)      sign a CSR from outside the vault (a device's own key)   (external.py)

Every operation is idempotent and safe when triggers overlap (Event Grid delivers at least once, the
sweep runs beside the events, a person may click "renew" at the same time). What a certificate's
tags and dates mean, and when it is due, is decided in one place: kvca_core/lifecycle.py.

A certificate is kvca's when its policy issuer is "Unknown" and it carries the tag `kvca-ca`
naming its CA's certificate in the same vault (kvca_core/vocabulary.py). CA certificates (tag
`kvca-role`) are never renewed here.
"""

from kvca_core.lifecycle import FRESH, Rotation, due_state, move_time, renewal_time, rotation_of
from kvca_core.operations.common import EXPORTABLE_BY_DEFAULT, ROOT_IN_CHAIN_BY_DEFAULT, root_in_chain
from kvca_core.operations.external import SignedCsr, external_certificates, sign_csr
from kvca_core.operations.inventory import certificate_scope, describe, inventory_report
from kvca_core.operations.coordination import NotStarted, within
from kvca_core.operations.issuance import MAX_BATCH, batch_done, check_requests, issue, issue_many
from kvca_core.operations.ratelimit import CREATE_LIMIT, CREATE_WINDOW, Pace, ReadPace, SignRate
from kvca_core.operations.renewal import check_renew_options, renew
from kvca_core.operations.results import (
    ALREADY_ISSUED,
    CANCELLED,
    FAILED,
    ISSUED,
    RENEWED,
    REQUESTED,
    SIGNED,
    SKIPPED,
    WOULD_RENEW,
    WOULD_SIGN,
    CertificateInfo,
    Description,
    InventoryReport,
    Outcome,
    SweepSummary,
)
from kvca_core.operations.signing import cancel, sign_pending
from kvca_core.operations.sweep import sweep
from kvca_core.request import IssueRequest
from kvca_core.vocabulary import UNKNOWN_ISSUER

__all__ = [
    "ALREADY_ISSUED", "CANCELLED", "CREATE_LIMIT", "CREATE_WINDOW", "CertificateInfo", "Description",
    "EXPORTABLE_BY_DEFAULT", "FAILED", "FRESH", "ISSUED", "InventoryReport", "IssueRequest", "MAX_BATCH", "NotStarted",
    "Outcome", "Pace", "ReadPace", "RENEWED", "REQUESTED", "ROOT_IN_CHAIN_BY_DEFAULT", "Rotation", "SIGNED", "SKIPPED", "SignRate",
    "SignedCsr", "SweepSummary",
    "UNKNOWN_ISSUER", "WOULD_RENEW", "WOULD_SIGN", "batch_done", "cancel", "check_renew_options", "certificate_scope", "check_requests",
    "describe", "due_state", "external_certificates", "inventory_report", "issue", "issue_many", "move_time", "renew", "renewal_time",
    "root_in_chain", "rotation_of", "sign_csr", "sign_pending", "sweep", "within",
]
