"""Issue 13 through the CLI: `kvca sign` refuses a leaf tagged for the recipe's imported root, and
`kvca request --sign` refuses the hostile names of the review, leaving the vault as it was."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.keyvault.certificates import CertificatePolicy as SdkPolicy
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12
from cryptography.x509.oid import NameOID

from clihelpers import vault_snapshot


def _import_recipe_root(kv_clients, name: str) -> None:
    """`step ca init`'s root as a password-less PFX, imported with `az keyvault certificate import`
    (no tags): what the recipe leaves in the vault as `<ca>-root`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Recipe Root")])
    now = dt.datetime.now(dt.timezone.utc)
    root = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    kv_clients.certificates.import_certificate(name, pkcs12.serialize_key_and_certificates(
        b"root", key, root, None, NoEncryption()))


def test_kvca_sign_refuses_a_request_tagged_for_the_recipes_root(kvca, kv_clients):
    """Finding "a leaf signed by the root", through `kvca sign`: an untagged imported root signed."""
    _import_recipe_root(kv_clients, "recipe-root")
    kv_clients.certificates.begin_create_certificate("bank", SdkPolicy(
        issuer_name="Unknown", subject="CN=login.bank.example", san_dns_names=["login.bank.example"],
        validity_in_months=12), tags={"kvca-ca": "recipe-root"}).result()
    before = vault_snapshot(kv_clients)
    result = kvca("sign", "bank")
    assert result.code == 1 and len(result.err_lines) == 1, result.err
    assert "CA 'recipe-root'" in result.err and "is not an issuing CA" in result.err
    assert vault_snapshot(kv_clients) == before


# Exit 2: malformed, refused before anything reached the vault; 1: well-formed, refused by the CA's
# rules (which the vault holds).
@pytest.mark.parametrize("argv,fragment,code", [
    (["--dns", "*.co.uk"], "public suffix 'co.uk'", 1),
    (["--dns", "xn--zz.open.internal"], "not a valid IDNA A-label", 2),
    (["--dns", "api.open.internal", "--subject", "CN=api.open.internal, O=kvca \u202egnp.exe"],
     "invisible character U+202E", 2),
    (["--dns", "api.open.internal", "--subject", "CN=Open CA"], "repeats the subject of CA", 1),
])
def test_kvca_request_refuses_the_reviews_hostile_names_before_anything_is_created(kvca, kv_clients, argv, fragment,
                                                                                   code):
    """Finding "strings that should not pass", through `kvca request --sign` on a CA without constraints."""
    created = kvca("ca", "create", "open", "--subject", "CN=Open CA")
    assert created.code == 0, created.err
    before = vault_snapshot(kv_clients)
    result = kvca("request", "hostile", "--ca", "open", "--sign", *argv)
    assert result.code == code and len(result.err_lines) == 1, result.err
    assert fragment in result.err
    assert vault_snapshot(kv_clients) == before
