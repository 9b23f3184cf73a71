"""The CA operations: create a CA inside Key Vault, adopt an existing one, rotate, inspect it, export
its trust.

    create_ca(ctx, name, ...)       root `NAME-root` and intermediate `NAME`, keys made in the vault (create.py)
    import_ca(ctx, name, ...)       adopt an existing intermediate with its chain                     (importing.py)
    rotate_ca(ctx, name, ...)       a new intermediate version with a new key, under the same root   (rotation.py)
    show_ca / list_cas / ca_names   what the vault holds of each CA                                 (inspect.py)
    export_trust / download         trust to hand out; an exportable certificate with its key       (export.py)

A CA's objects and tags are named in kvca_core/vocabulary.py.
"""

from kvca_core.ca.create import CAPlan, create_ca, create_planned, default_root_years, plan_ca
from kvca_core.ca.export import DOWNLOAD_FORMATS, TRUST_FORMATS, TRUST_WHICH, download, encode_trust, export_trust, \
    trust_certificates
from kvca_core.ca.importing import ImportPlan, import_ca, import_planned, key_is_encrypted, pfx_needs_password, \
    plan_import
from kvca_core.ca.inspect import CAInfo, ca_names, list_cas, show_ca
from kvca_core.ca.common import order_chain
from kvca_core.ca.rotation import CONSUMER_NOTES, RotationResult, rotate_ca
from kvca_core.vocabulary import ROOT_SUFFIX

__all__ = ["CAInfo", "CAPlan", "ImportPlan", "create_planned", "import_planned", "plan_ca", "plan_import", "CONSUMER_NOTES", "DOWNLOAD_FORMATS", "ROOT_SUFFIX", "RotationResult", "TRUST_FORMATS",
           "TRUST_WHICH", "ca_names", "create_ca", "default_root_years", "download", "encode_trust", "export_trust",
           "import_ca", "key_is_encrypted", "list_cas", "order_chain", "pfx_needs_password", "rotate_ca", "show_ca",
           "trust_certificates"]
