"""kvca: a private CA for Azure Key Vault.

The pure centre (the lifecycle, policy, CSR checks, certificate building and signing) imports only
`cryptography`; all I/O with services outside the process lives in `kvca_core/rim/`, behind the
protocols of `kvca_core/ports.py`.
"""

__version__ = "0.1.0"
