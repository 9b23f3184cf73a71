"""Helpers for the revocation tests: leaves with exportable keys, the CRL fetched over the app's
own trigger, `openssl verify -crl_check`, pkilint's CRL linter, Azurite for the CRL blobs."""

from __future__ import annotations

import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import azure.functions as func
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import Encoding

from apphelpers import emulator_now, user_function
from kvca_core import operations
from kvca_core.authority import parse_secret
from kvca_core.model import CertificatePolicy, KeySpec
from kvca_core.vocabulary import CA_TAG

CLIENT_AUTH, SERVER_AUTH = "1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.1"
CA = "rev-ca"
# A second CA, made only by the tests that need every CA's CRL published.
CA2 = "rev-ca-two"
# Issue 13: every CA has its own KVCA_ISSUANCE_POLICY entry.
POLICY = '{"%s": {"allowed_domains": ["rev.internal"]}, "%s": {"allowed_domains": ["rev.internal"]}}' % (CA, CA2)
OCSP_URL = "http://ocsp.rev.internal/api/ocsp"


@dataclass
class Leaf:
    name: str
    cert: x509.Certificate
    chain: list[x509.Certificate]  # leaf, intermediate, root
    key_pem: bytes  # in memory; written only to a test's tmp_path with mode 0600

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @property
    def intermediate(self) -> x509.Certificate:
        return self.chain[1]


async def make_leaf(ctx, name: str, ca: str) -> Leaf:
    """A certificate requested as the portal would (exportable key, client and server EKUs),
    signed by kvca."""
    policy = CertificatePolicy(issuer_name="Unknown", subject=f"CN={name}.rev.internal",
                               dns_names=(f"{name}.rev.internal",), ekus=(CLIENT_AUTH, SERVER_AUTH),
                               key_usage=("digitalSignature",), validity_months=12,
                               key=KeySpec("EC", curve="P-256", exportable=True))
    await ctx.vault.create_certificate(name, policy, tags={CA_TAG: ca})
    outcome = await operations.sign_pending(ctx, name)
    assert outcome.action == "signed", outcome
    content_type, value = await ctx.vault.get_secret_value(name)
    key, certs = parse_secret(name, content_type, value)
    root = x509.load_der_x509_certificate((await ctx.vault.get_certificate(f"{ca}-root")).cer)
    chain = [c for c in certs if c != root] + [root]
    key_pem = key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return Leaf(name, chain[0], chain, key_pem)


async def fetch_crl(ca: str) -> tuple[int, bytes, dict[str, str]]:
    """GET /api/crl/{ca}.crl through the registered function, with a real func.HttpRequest."""
    req = func.HttpRequest(method="GET", url=f"http://kvca.example/api/crl/{ca}.crl", headers={}, params={},
                           route_params={"ca": ca}, body=b"")
    resp = await user_function("kvca_crl")(req)
    return resp.status_code, resp.get_body(), {**dict(resp.headers), "Content-Type": resp.mimetype}


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def crl_pem(der: bytes) -> bytes:
    return x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)


def openssl_verify_crl(tmp: Path, leaf: Leaf, crls: list[bytes], *, check_all: bool = False):
    """`openssl verify -crl_check[_all] -CRLfile ...`: (returncode, output)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "root.pem").write_bytes(pem(leaf.root))
    (tmp / "inter.pem").write_bytes(pem(leaf.intermediate))
    (tmp / "leaf.pem").write_bytes(pem(leaf.cert))
    (tmp / "crls.pem").write_bytes(b"".join(crl_pem(c) for c in crls))
    args = ["openssl", "verify", "-x509_strict", "-crl_check_all" if check_all else "-crl_check",
            "-CAfile", str(tmp / "root.pem"), "-untrusted", str(tmp / "inter.pem"),
            "-CRLfile", str(tmp / "crls.pem"), "-attime", str(int(emulator_now().timestamp())), str(tmp / "leaf.pem")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout + result.stderr


def pkilint_crl_findings(der: bytes, minimum: str = "ERROR") -> list[tuple[str, str, str | None]]:
    """pkilint's RFC 5280 CRL linter (what its `lint_crl -t CRL -p PKIX` runs)."""
    from pkilint import loader, pkix
    from pkilint.pkix import crl, extension, name
    from pkilint.validation import ValidationFindingSeverity

    validator = crl.create_pkix_crl_validator_container(
        [pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
         pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS)],
        [crl.create_issuer_validator_container([]), crl.create_validity_validator_container([]),
         crl.create_extensions_validator_container([])])
    document = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
    threshold = ValidationFindingSeverity[minimum]
    return [(fd.finding.severity.name, fd.finding.code, fd.message)
            for result in validator.validate(document.root)
            for fd in result.finding_descriptions if fd.finding.severity <= threshold]


def pkilint_ocsp_findings(der: bytes, minimum: str = "ERROR") -> list[tuple[str, str, str | None]]:
    """pkilint's RFC 6960 OCSP response linter (what its `lint_ocsp_response` runs)."""
    from pkilint import loader, pkix
    from pkilint.pkix import extension, name, ocsp
    from pkilint.validation import ValidationFindingSeverity

    validator = ocsp.create_pkix_ocsp_response_validator_container(
        [ocsp.create_response_decoder(), pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
         pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS)], [])
    document = loader.RFC6960OCSPResponseDocumentLoader().load_der_document(der, "ocsp")
    threshold = ValidationFindingSeverity[minimum]
    return [(fd.finding.severity.name, fd.finding.code, fd.message)
            for result in validator.validate(document.root)
            for fd in result.finding_descriptions if fd.finding.severity <= threshold]


# Azurite for the CRL blobs: the helper all storage tests share (tests/azurite.py).
from azurite import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, azurite_binary, free_port  # noqa: E402,F401


def fetch_over_http(url: str) -> tuple[bytes, dict[str, str]]:
    """A relying party's fetch: plain HTTP GET, no credential."""
    assert url.startswith("http://"), url
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read(), {k.lower(): v for k, v in resp.headers.items()}


async def sign_external(ctx, name: str, ca: str = CA) -> x509.Certificate:
    """A client certificate for a key made outside the vault (a device's), signed by the CA's key through
    the signing pipeline and recorded in the ledger as kvca records every certificate it signs."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from kvca_core import clock
    from kvca_core.ledger import EXTERNAL
    from kvca_core.operations.recording import record_issued
    from kvca_core.signing import issue_leaf

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.rev.internal")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"{name}.rev.internal")]), critical=False)
           .sign(key, hashes.SHA256()))
    loaded = await ctx.authority.load(ca)
    issued = await issue_leaf(csr.public_bytes(Encoding.DER), ca=loaded.issuing, policy=await ctx.authority.policy(loaded),
                              profile="client", now=clock.now())
    await record_issued(ctx, issued.leaf, ca=ca, ca_version=loaded.version, profile="client", location=EXTERNAL,
                        name=name)
    return issued.leaf
