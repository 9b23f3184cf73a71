"""kvca: a private CA for Azure Key Vault.

The pure centre (policy, CSR checks, certificate building and signing) imports
only `cryptography`; all Azure I/O lives in `kvca_core.vault`.
"""

__version__ = "0.1.0"
