"""Fixtures for the signing engine: keys made once per session (RSA is slow),
a root and intermediates for each issuer key type, signers local and remote."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kvca_core.signing import IssuingCA, LocalSigner, RemoteSigner, create_intermediate, create_root
from signing_helpers import keyvault_sign


class KeyPool:
    def __init__(self) -> None:
        self._keys: dict[str, object] = {}

    def get(self, name: str):
        """`rsa`, `ec`, `ec-p384`, `ec-p521`, `rsa-3072`, with an optional `:slot` for a distinct key."""
        if name not in self._keys:
            kind = name.split(":")[0]
            if kind.startswith("rsa"):
                bits = int(kind.split("-")[1]) if "-" in kind else 2048
                self._keys[name] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            else:
                curve = {"ec": ec.SECP256R1, "ec-p384": ec.SECP384R1, "ec-p521": ec.SECP521R1}[kind]()
                self._keys[name] = ec.generate_private_key(curve)
        return self._keys[name]


@pytest.fixture(scope="session")
def keys() -> KeyPool:
    return KeyPool()


@dataclass
class Pki:
    kind: str
    root: x509.Certificate
    root_key: object
    intermediate: x509.Certificate
    intermediate_key: object
    constrained: x509.Certificate  # nameConstraints: permitted mycompany.local
    excluding: x509.Certificate  # nameConstraints: permitted corp.internal, excluded secret.corp.internal

    def ca(self, signer: str = "local", *, constrained: bool | str = False) -> IssuingCA:
        """`constrained`: True or "constrained" for `constrained`, "excluding" for `excluding`."""
        key = self.intermediate_key
        certificate = {True: self.constrained, "constrained": self.constrained,
                       "excluding": self.excluding}.get(constrained, self.intermediate)
        if signer == "local":
            return IssuingCA(certificate, (self.root,), LocalSigner(key))
        return IssuingCA(certificate, (self.root,), RemoteSigner(key.public_key(), keyvault_sign(key)))


async def _make_pki(keys: KeyPool, kind: str) -> Pki:
    root_key, int_key = keys.get(f"{kind}:root"), keys.get(f"{kind}:intermediate")
    root = await create_root("CN=kvca Test Root, O=kvca tests", LocalSigner(root_key), years=10)
    root_ca = IssuingCA(root, (), LocalSigner(root_key))
    intermediate = await create_intermediate("CN=kvca Test Issuing CA, O=kvca tests", int_key.public_key(), root_ca,
                                             years=5)
    constrained = await create_intermediate("CN=kvca Constrained CA, O=kvca tests", int_key.public_key(), root_ca,
                                            years=5, permitted_dns=["mycompany.local"])
    return Pki(kind, root, root_key, intermediate, int_key, constrained,
               _excluding_intermediate(root, root_key, int_key.public_key()))


def _excluding_intermediate(root: x509.Certificate, root_key, public_key) -> x509.Certificate:
    """An intermediate with an excluded subtree (kvca's builder writes permitted subtrees only):
    what a CA made elsewhere may carry."""
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kvca tests"),
                                        x509.NameAttribute(NameOID.COMMON_NAME, "kvca Excluding CA")]))
               .issuer_name(root.subject).public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.NameConstraints(permitted_subtrees=[x509.DNSName("corp.internal")],
                                                   excluded_subtrees=[x509.DNSName("secret.corp.internal")]),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key()), critical=False))
    return builder.sign(root_key, hashes.SHA256())


@pytest.fixture(scope="session")
def pkis(keys) -> dict[str, Pki]:
    """{"rsa": Pki, "ec": Pki}: RSA-2048 and EC P-256 roots and intermediates."""
    return {kind: asyncio.run(_make_pki(keys, kind)) for kind in ("rsa", "ec")}
