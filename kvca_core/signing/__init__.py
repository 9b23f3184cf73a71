"""kvca's signing engine: CSR in, policy-checked RFC 5280 chain out.

Pure: imports `cryptography` and the standard library only, never `azure.*`;
it can sign a CSR on a laptop with no network. The Key Vault side of remote
signing (the keys API's sign) is passed in as a coroutine by the vault adapter.
"""

from kvca_core.signing.builder import IssuanceUrls, Role, random_serial
from kvca_core.signing.csr import MAX_CSR_BYTES, InsecureRequest, check_key, parse_csr, read_request
from kvca_core.signing.issue import (
    BACKDATE,
    MAX_CA_YEARS,
    CheckedRequest,
    STEPS,
    IssuedCertificate,
    IssuingCA,
    add_months,
    create_intermediate,
    create_root,
    decide_validity,
    issue_leaf,
    precheck,
)
from kvca_core.signing.names import check_dns_name_policy, names_subject, normalize_dns_name, parse_subject
from kvca_core.signing.policy import IssuancePolicy, Profile, policy_for_ca, profile_from_ekus
from kvca_core.signing.signers import (
    ALGORITHMS,
    LocalSigner,
    RemoteSigner,
    SignFunction,
    Signer,
    default_algorithm,
    verify_signature,
)

__all__ = [
    "ALGORITHMS", "BACKDATE", "MAX_CA_YEARS", "MAX_CSR_BYTES", "STEPS",
    "CheckedRequest", "InsecureRequest", "IssuanceUrls", "IssuancePolicy", "IssuedCertificate", "IssuingCA",
    "LocalSigner", "Profile", "RemoteSigner", "Role", "SignFunction", "Signer",
    "add_months", "check_dns_name_policy", "check_key", "create_intermediate", "create_root", "decide_validity", "default_algorithm",
    "issue_leaf", "names_subject", "normalize_dns_name", "precheck", "parse_csr", "parse_subject", "policy_for_ca", "profile_from_ekus",
    "random_serial", "read_request", "verify_signature",
]
