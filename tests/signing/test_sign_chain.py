"""Chains over every key-type combination, local and remote signers: each
extension re-parsed, `openssl verify` against the root alone, pkilint clean."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kvca_core.signing import IssuanceUrls, Profile, issue_leaf
from signing_helpers import assert_is_ca, assert_is_leaf, make_csr, openssl_verify, pkilint_findings

COMBINATIONS = [(issuer, subject, signer) for issuer in ("rsa", "ec") for subject in ("rsa", "ec")
                for signer in ("local", "remote")]


@pytest.mark.parametrize("issuer,subject,signer", COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
async def test_leaf_verifies_against_root_with_intermediate_untrusted(issuer, subject, signer, pkis, keys, tmp_path):
    pki = pkis[issuer]
    key = keys.get(f"{subject}:leaf")
    issued = await issue_leaf(make_csr(key, dns=("api.kvca.test", "www.kvca.test")), ca=pki.ca(signer),
                              validity_months=12)
    assert_is_leaf(issued.leaf, issuer=pki.intermediate, public_key=key.public_key(),
                   dns=("api.kvca.test", "www.kvca.test"))
    result = openssl_verify(tmp_path, root=pki.root, untrusted=[pki.intermediate], leaf=issued.leaf,
                            purpose="sslserver")
    assert result.returncode == 0, result.stdout + result.stderr
    assert issued.chain == (issued.leaf, pki.intermediate)
    assert issued.root == pki.root
    assert issued.warnings == ()


@pytest.mark.parametrize("issuer", ["rsa", "ec"])
def test_root_and_intermediate_have_the_ca_extensions(issuer, pkis):
    pki = pkis[issuer]
    assert_is_ca(pki.root, path_length=1)
    assert_is_ca(pki.intermediate, issuer=pki.root, path_length=0)
    assert_is_ca(pki.constrained, issuer=pki.root, path_length=0, permitted_dns=["mycompany.local"])
    assert pki.root.subject == pki.root.issuer


@pytest.mark.parametrize("issuer,subject", [("rsa", "ec"), ("ec", "rsa")])
async def test_pkilint_rfc5280_finds_no_error_in_root_intermediate_and_leaf(issuer, subject, pkis, keys):
    pki = pkis[issuer]
    key = keys.get(f"{subject}:leaf")
    issued = await issue_leaf(make_csr(key, subject="CN=api.kvca.test, O=kvca, C=NL"), ca=pki.ca("remote"),
                              profile=Profile.SERVER_CLIENT,
                              urls=IssuanceUrls(crl="http://pki.kvca.test/crl", aia="http://pki.kvca.test/ca.crt"))
    empty_subject = await issue_leaf(make_csr(key, subject=None), ca=pki.ca("local"))
    for certificate in (pki.root, pki.intermediate, pki.constrained, issued.leaf, empty_subject.leaf):
        assert pkilint_findings(certificate) == [], certificate.subject.rfc4514_string()


async def test_pkilint_reports_only_its_rfc5280_wildcard_syntax_finding(pkis, keys):
    # pkilint's PKIX linter checks dNSNames against RFC 5280's preferred name
    # syntax, which has no '*'; wildcards come from RFC 6125 6.4.3 (and the
    # recipe issues them), so that one finding, on that one name, is expected.
    issued = await issue_leaf(make_csr(keys.get("ec:leaf"), subject=None, dns=("*.kvca.test", "kvca.test")),
                              ca=pkis["ec"].ca())
    assert pkilint_findings(issued.leaf) == [
        ("ERROR", "pkix.invalid_domain_name_syntax", 'Invalid domain name syntax: "*.kvca.test"')]


@pytest.mark.parametrize("issuer", ["rsa", "ec"])
async def test_constrained_intermediate_issues_inside_its_subtree_and_openssl_agrees(issuer, pkis, keys, tmp_path):
    pki = pkis[issuer]
    issued = await issue_leaf(make_csr(keys.get("ec:leaf"), subject="CN=db.mycompany.local",
                                       dns=("db.mycompany.local",)), ca=pki.ca("remote", constrained=True))
    result = openssl_verify(tmp_path, root=pki.root, untrusted=[pki.constrained], leaf=issued.leaf)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_chain_outputs_der_for_merge_and_pem_with_root_only_when_asked(pkis, keys):
    pki = pkis["ec"]
    issued = await issue_leaf(make_csr(keys.get("ec:leaf")), ca=pki.ca())
    der = issued.chain_der()
    assert [x509.load_der_x509_certificate(d) for d in der] == [issued.leaf, pki.intermediate]
    assert len(issued.chain_der(include_root=True)) == 3
    assert x509.load_pem_x509_certificates(issued.pem().encode()) == [issued.leaf, pki.intermediate]
    assert x509.load_pem_x509_certificates(issued.pem(include_root=True).encode())[-1] == pki.root
    assert "PRIVATE" not in issued.pem(include_root=True)
    assert issued.serial_hex == format(issued.leaf.serial_number, "x")
    assert issued.leaf.public_bytes(serialization.Encoding.DER) == der[0]


async def test_pkilint_finds_not_even_a_warning_with_pss_p521_and_every_san_kind(keys):
    import ipaddress

    from cryptography.hazmat.primitives import hashes

    from kvca_core.signing import IssuancePolicy, IssuingCA, LocalSigner, RemoteSigner, create_intermediate, create_root
    from signing_helpers import keyvault_sign
    root_key, int_key = keys.get("rsa:pss-root"), keys.get("ec-p521:intermediate")
    root = await create_root("CN=PSS Root, O=kvca, C=NL", LocalSigner(root_key, algorithm="PS256"), years=10)
    intermediate = await create_intermediate("CN=P-521 CA", int_key.public_key(),
                                             IssuingCA(root, (), LocalSigner(root_key, algorithm="PS256")), years=5,
                                             permitted_dns=["example.org", ".corp.example"])
    ca = IssuingCA(intermediate, (root,), RemoteSigner(int_key.public_key(), keyvault_sign(int_key)))
    leaf_key = keys.get("ec-p384:leaf")
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name.from_rfc4514_string("CN=a.example.org,DC=example,DC=org"))
           .add_extension(x509.SubjectAlternativeName([
               x509.DNSName("a.example.org"), x509.DNSName("b.corp.example"),
               x509.IPAddress(ipaddress.ip_address("10.0.0.1")), x509.RFC822Name("ops@example.org"),
               x509.UniformResourceIdentifier("https://a.example.org/x")]), critical=False)
           .sign(leaf_key, hashes.SHA384()))
    issued = await issue_leaf(csr, ca=ca, profile="server-client",
                              policy=IssuancePolicy(allow_ip=True, allow_email=True, allow_uri=True))
    for certificate in (root, intermediate, issued.leaf):
        assert pkilint_findings(certificate, minimum="WARNING") == [], certificate.subject.rfc4514_string()


def test_certificate_predicates_answer_false_for_what_they_cannot_evaluate(tmp_path):
    """kvca_core.signing.certs serves the signer, the CA cache and the CA commands alike."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from kvca_core.signing.certs import is_ca_certificate, is_self_signed, issued_by, same_public_key

    def cert(subject, issuer, key, signer, *, ca):
        now = dt.datetime.now(dt.timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
        if ca is not None:
            builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        return builder.sign(signer, hashes.SHA256())

    root_key, leaf_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = cert("root", "root", root_key, root_key, ca=True)
    leaf = cert("leaf", "root", leaf_key, root_key, ca=False)
    forged = cert("leaf", "root", leaf_key, other_key, ca=False)  # names the root, signed by another key
    bare = cert("bare", "bare", other_key, other_key, ca=None)
    assert is_self_signed(root) and not is_self_signed(leaf)
    assert issued_by(leaf, root) and not issued_by(forged, root) and not issued_by(root, leaf)
    assert is_ca_certificate(root) and not is_ca_certificate(leaf) and not is_ca_certificate(bare)
    assert same_public_key(leaf.public_key(), leaf_key.public_key())
    assert not same_public_key(leaf.public_key(), root.public_key())
    assert not same_public_key(leaf.public_key(), None)
