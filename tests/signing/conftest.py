"""Fixtures for the signing engine: keys made once per session (RSA is slow),
a root and intermediates for each issuer key type, signers local and remote."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

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

    def ca(self, signer: str = "local", *, constrained: bool = False) -> IssuingCA:
        key = self.intermediate_key
        certificate = self.constrained if constrained else self.intermediate
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
    return Pki(kind, root, root_key, intermediate, int_key, constrained)


@pytest.fixture(scope="session")
def pkis(keys) -> dict[str, Pki]:
    """{"rsa": Pki, "ec": Pki}: RSA-2048 and EC P-256 roots and intermediates."""
    return {kind: asyncio.run(_make_pki(keys, kind)) for kind in ("rsa", "ec")}
