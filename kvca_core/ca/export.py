"""Trust to hand out (`kvca export-chain`) and an exportable certificate with its key (`kvca download`)."""

from __future__ import annotations

import logging
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from kvca_core.authority import parse_secret, read_certificate
from kvca_core.errors import InvalidRequest, NotFound, NotManaged
from kvca_core.vocabulary import (check_name)
from kvca_core.signing.certs import is_self_signed

from kvca_core.ca.inspect import _ca_chain
from kvca_core.ca.common import ca_where, cert_where, current_or_none, order_chain, pem_text

log = logging.getLogger("kvca_core.ca")

# ---------------------------------------------------------------------------
# export


# What each consumer takes (docs/azure-services.md, "Using kvca certificates"): the root
# alone (a trust store, Application Gateway's backend root), the intermediate alone (an Event
# Grid namespace's CA certificate: the immediate issuer), or both (Application Gateway's trusted
# client CA, API Management's CA certificates).
TRUST_WHICH = ("intermediate", "root", "both")
# PEM: any number of certificates; DER (`.cer`): exactly one; PKCS#7 (`.p7b`, DER-encoded
# SignedData with certificates only, RFC 2315 section 9.1 "degenerate case").
TRUST_FORMATS = ("pem", "der", "p7b")


async def trust_certificates(ctx, name: str, which: str = "intermediate") -> list[x509.Certificate]:
    """CA `name`'s trust certificates, nearest first: `intermediate` (the CA and any CA above it
    short of the root), `root` (the self-signed root alone) or `both`."""
    check_name(name, "CA")
    if which not in TRUST_WHICH:
        raise InvalidRequest(f"{which!r} is not one of {', '.join(TRUST_WHICH)}", subject=ca_where(name))
    _, chain, _ = await _ca_chain(ctx.vault, name)
    has_root = is_self_signed(chain[-1])
    if which in ("root", "both") and not has_root:
        raise NotFound("the CA's chain does not reach a self-signed root, so it cannot be included",
                       subject=ca_where(name), hint="import the CA again with --chain holding the root")
    if which == "root":
        return [chain[-1]]
    if which == "intermediate" and len(chain) > 1 and has_root:
        return chain[:-1]
    return chain


def encode_trust(certs: Sequence[x509.Certificate], fmt: str, who: str) -> bytes:
    """Certificates as PEM, DER (one certificate only: the format has room for one) or PKCS#7."""
    if fmt == "pem":
        return pem_text(certs).encode("ascii")
    if fmt == "der":
        if len(certs) != 1:
            raise InvalidRequest(f"DER (.cer) holds exactly one certificate, and this selection has {len(certs)}",
                                 subject=who, hint="choose --which root or an intermediate CA, or use pem or p7b")
        return certs[0].public_bytes(serialization.Encoding.DER)
    if fmt == "p7b":
        return pkcs7.serialize_certificates(list(certs), serialization.Encoding.DER)
    raise InvalidRequest(f"format {fmt!r} is not one of {', '.join(TRUST_FORMATS)}", subject=who)


async def export_trust(ctx, name: str, which: str = "intermediate", fmt: str = "pem") -> bytes:
    """`kvca export-chain`: the chosen trust certificates of CA `name` in the chosen format."""
    return encode_trust(await trust_certificates(ctx, name, which), fmt, ca_where(name))


DOWNLOAD_FORMATS = ("pem", "pfx")


async def download(ctx, name: str, fmt: str = "pem", *, password: bytes | None = None) -> bytes:
    """The certificate's private key and chain, as PEM or as a PFX (password-less, or encrypted
    with `password`: PBES2 with AES-256-CBC and an HMAC-SHA256 MAC, cryptography's best
    available PKCS#12 encryption).

    Only for exportable certificates: the caller writes the bytes to a file
    of mode 0600 and nowhere else.
    """
    check_name(name)
    if fmt not in DOWNLOAD_FORMATS:
        raise InvalidRequest(f"format {fmt!r} is not supported (use pem or pfx)", subject=cert_where(name))
    if password is not None and (fmt != "pfx" or not password):
        raise InvalidRequest("a password applies to a PFX only, and may not be empty", subject=cert_where(name))
    vault = ctx.vault
    current = await current_or_none(vault, name)
    if current is None:
        raise NotFound("no certificate of this name in the vault", subject=cert_where(name))
    if not current.cer:
        raise NotFound("the certificate has no completed version yet (still pending?)", subject=cert_where(name))
    leaf = read_certificate(current.cer, cert_where(name))
    content_type, value = await vault.get_secret_value(name, current.version)
    key, certs = parse_secret(cert_where(name), content_type, value)
    del value
    if key is None:
        raise NotManaged("the certificate's key is not exportable, so its secret holds no private key",
                         subject=cert_where(name), hint="only certificates created with an exportable key can be downloaded")
    ordered = order_chain(leaf, [c for c in certs if c != leaf], cert_where(name))
    if fmt == "pfx":
        encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        return pkcs12.serialize_key_and_certificates(name.encode("ascii"), key, leaf, ordered[1:], encryption)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem + pem_text(ordered).encode("ascii")
