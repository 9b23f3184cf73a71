"""The test side of the consumer checks: the certificate's secret read the way Application
Gateway and API Management read it, a foreign CA, and `kvca request` for exportable
certificates. The servers and clients themselves are demo/consumers.py (the demo runs them too)."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from demo.consumers import KeyFiles, find, install_hint


def require(name: str) -> str:
    """The path of `name`, or a failure that says how to install it (the test never skips)."""
    path = find(name)
    assert path, (f"{name} is not installed: `{install_hint(name)}` (.ci/run installs it; the consumer "
                  f"tests run the real thing)")
    return path


@dataclass
class Credential:
    """A certificate with its key, read from a Key Vault secret (or made by a test)."""

    key: object
    leaf: x509.Certificate
    chain: list[x509.Certificate]  # what the secret holds after the leaf, in its order

    @property
    def serial(self) -> int:
        return self.leaf.serial_number

    def write(self, files: KeyFiles, directory, stem: str):
        """(chain PEM, key PEM) files for a server or client; the key file is mode 0600."""
        return files.write(directory, stem, self.key, [self.leaf, *self.chain])


def secret_credential(kv_clients, name: str) -> tuple[Credential, str, object]:
    """The certificate's secret read exactly as Application Gateway reads it: by its versionless
    secret ID (https://<vault>/secrets/<name>, no version, so each poll gets the current
    version), a base64 PFX with the key in it. Returns the credential, the content type and the
    secret's properties."""
    secret = kv_clients.secrets.get_secret(name)  # no version: the versionless secret ID
    assert secret.properties.content_type == "application/x-pkcs12", secret.properties.content_type
    key, leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert key is not None, f"the secret of '{name}' holds no private key (was it made non-exportable?)"
    return Credential(key, leaf, list(extra)), secret.properties.content_type, secret.properties


def issue(kvca, name: str, *argv: str) -> None:
    """`kvca request NAME ARGS --exportable --sign` (consumers read the key from the secret)."""
    result = kvca("request", name, *argv, "--exportable", "--sign")
    assert result.code == 0, result.err


def foreign_root(name: str = "Foreign Root CA"):
    """(certificate, key) of a self-signed CA that has nothing to do with kvca's CA."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def leaf_of(issuer: x509.Certificate, issuer_key, cn: str, eku, dns: str | None = None):
    """(certificate, key): an EC leaf named CN=`cn` (and DNS `dns`) with the one EKU `eku`, signed by
    `issuer` (a foreign_root), valid a week."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(issuer.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=7))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([eku]), critical=False))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key
