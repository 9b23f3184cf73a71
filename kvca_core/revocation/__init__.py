"""Revocation, CRLs and OCSP, all from the CA's ledger (kvca_core/ledger/).

    revoke(ctx, name | ca+serial, reason=...)   a revocation row in the ledger, mirrored in the vault  (revoke.py)
    publish_crl / publish_crls / sign_root_crl  one CRL per still-valid CA key, numbered by the ledger   (crls.py)
    answer_ocsp(ctx, ca, der)                   good, revoked or unknown, signed by the issuing key       (responder.py)
    import_vault_records(ctx)                   what the vault's tags remember from before the ledger   (adopt.py)
"""

from kvca_core.revocation.adopt import LedgerImport, import_vault_records
from kvca_core.revocation.crls import (
    CRL_CACHE,
    CrlPublication,
    crl_der,
    crl_pem,
    managed_cas,
    publish_crl,
    publish_crls,
    sign_root_crl,
)
from kvca_core.revocation.responder import answer_ocsp
from kvca_core.revocation.revoke import Revocation, parse_serial, revoke

__all__ = ["CRL_CACHE", "CrlPublication", "LedgerImport", "Revocation", "answer_ocsp", "crl_der", "crl_pem",
           "import_vault_records", "managed_cas", "parse_serial", "publish_crl", "publish_crls", "revoke",
           "sign_root_crl"]
