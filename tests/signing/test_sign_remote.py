"""The remote signer: only a digest goes out, Key Vault's raw answers become
valid X.509 signatures, and a wrong answer is refused before anyone sees it."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from kvca_core import errors
from kvca_core.signing import IssuingCA, LocalSigner, RemoteSigner, create_intermediate, issue_leaf
from signing_helpers import keyvault_sign, make_csr, openssl_verify

ALGORITHMS = [("ec", "ES256", None), ("ec-p384", "ES384", None), ("ec-p521", "ES512", None),
              ("rsa", "RS256", None), ("rsa", "PS256", "PS256"), ("rsa", "RS384", "RS384"), ("rsa", "RS512", "RS512")]


@pytest.mark.parametrize("kind,algorithm,asked", ALGORITHMS, ids=[a[1] for a in ALGORITHMS])
async def test_remote_signer_sends_only_a_digest_and_its_certificate_verifies(kind, algorithm, asked, pkis, keys,
                                                                              tmp_path):
    pki = pkis["ec"]
    key = keys.get(f"{kind}:remote")
    root_ca = IssuingCA(pki.root, (), LocalSigner(pki.root_key))
    intermediate = await create_intermediate("CN=Remote CA", key.public_key(), root_ca, years=2)
    sign = keyvault_sign(key)
    signer = RemoteSigner(key.public_key(), sign, algorithm=asked)
    assert signer.algorithm == algorithm
    issued = await issue_leaf(make_csr(keys.get("ec:leaf")), ca=IssuingCA(intermediate, (pki.root,), signer))
    assert len(sign.calls) == 1
    sent_algorithm, digest = sign.calls[0]
    assert sent_algorithm == algorithm
    hash_name = {"256": "sha256", "384": "sha384", "512": "sha512"}[algorithm[2:]]
    assert digest == hashlib.new(hash_name, issued.leaf.tbs_certificate_bytes).digest()
    issued.leaf.verify_directly_issued_by(intermediate)
    if algorithm == "PS256":
        params = issued.leaf.signature_algorithm_parameters
        assert isinstance(params, padding.PSS) and params._salt_length == 32
    result = openssl_verify(tmp_path, root=pki.root, untrusted=[intermediate], leaf=issued.leaf)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_remote_and_local_signers_give_the_same_certificate_contents(pkis, keys):
    pki = pkis["rsa"]
    csr = make_csr(keys.get("ec:leaf"))
    local = await issue_leaf(csr, ca=pki.ca("local"))
    remote = await issue_leaf(csr, ca=pki.ca("remote"))
    for cert in (local.leaf, remote.leaf):
        cert.verify_directly_issued_by(pki.intermediate)
    assert list(local.leaf.extensions) == list(remote.leaf.extensions)
    assert local.leaf.subject == remote.leaf.subject
    assert local.leaf.signature_algorithm_oid == remote.leaf.signature_algorithm_oid


async def test_remote_signature_from_another_key_is_refused(pkis, keys):
    pki = pkis["ec"]
    wrong = keyvault_sign(keys.get("ec:someone-else"))
    ca = IssuingCA(pki.intermediate, (pki.root,), RemoteSigner(pki.intermediate_key.public_key(), wrong))
    with pytest.raises(errors.UpstreamError) as caught:
        await issue_leaf(make_csr(keys.get("ec:leaf")), ca=ca)
    assert caught.value.step == "sign"
    assert "does not verify" in str(caught.value)


@pytest.mark.parametrize("answer,expected", [(b"\x01" * 63, "is 63 bytes"), ("text", "not bytes"),
                                             (b"\x30\x06\x02\x01\x01\x02\x01\x01", "is 8 bytes")])
async def test_malformed_remote_answer_is_an_upstream_error(answer, expected, pkis, keys):
    pki = pkis["ec"]

    async def sign(algorithm, digest):
        return answer

    ca = IssuingCA(pki.intermediate, (pki.root,), RemoteSigner(pki.intermediate_key.public_key(), sign))
    with pytest.raises(errors.UpstreamError) as caught:
        await issue_leaf(make_csr(keys.get("ec:leaf")), ca=ca)
    assert caught.value.step == "sign" and expected in str(caught.value)


async def test_remote_rsa_answer_of_wrong_length_is_an_upstream_error(pkis, keys):
    pki = pkis["rsa"]

    async def sign(algorithm, digest):
        return b"\x00" * 128

    ca = IssuingCA(pki.intermediate, (pki.root,), RemoteSigner(pki.intermediate_key.public_key(), sign))
    with pytest.raises(errors.UpstreamError, match="RSA-2048 signature is 256"):
        await issue_leaf(make_csr(keys.get("ec:leaf")), ca=ca)


async def test_kvca_errors_from_the_vault_pass_through_and_others_are_wrapped(pkis, keys):
    pki = pkis["ec"]

    async def throttled(algorithm, digest):
        raise errors.Throttled("keys API answered 429", retry_after=3)

    async def broken(algorithm, digest):
        raise ConnectionResetError("peer reset")

    public = pki.intermediate_key.public_key()
    with pytest.raises(errors.Throttled) as caught:
        await issue_leaf(make_csr(keys.get("ec:leaf")), ca=IssuingCA(pki.intermediate, (pki.root,),
                                                                     RemoteSigner(public, throttled)))
    assert caught.value.retry_after == 3
    with pytest.raises(errors.UpstreamError) as caught:
        await issue_leaf(make_csr(keys.get("ec:leaf")), ca=IssuingCA(pki.intermediate, (pki.root,),
                                                                     RemoteSigner(public, broken)))
    assert caught.value.step == "sign" and "ConnectionResetError" in str(caught.value)


@pytest.mark.parametrize("kind,algorithm", [("ec", "RS256"), ("ec", "ES384"), ("rsa", "ES256"), ("rsa", "HS256")])
def test_signature_algorithm_must_fit_the_key(kind, algorithm, keys):
    key = keys.get(f"{kind}:remote")
    with pytest.raises(errors.InvalidRequest):
        RemoteSigner(key.public_key(), keyvault_sign(key), algorithm=algorithm)


def test_signers_never_show_their_key(keys):
    key = keys.get("ec:remote")
    assert "PRIVATE" not in repr(LocalSigner(key)) and str(key.private_numbers().private_value) not in \
        repr(LocalSigner(key))


def test_issuing_ca_refuses_a_signer_for_another_key(pkis, keys):
    pki = pkis["ec"]
    with pytest.raises(errors.InvalidRequest, match="signer's key is not the certificate's key"):
        IssuingCA(pki.intermediate, (pki.root,), LocalSigner(keys.get("ec:someone-else")))


def test_issuing_ca_refuses_a_leaf_as_ca_and_a_chain_out_of_order(pkis, keys):
    import asyncio
    pki = pkis["ec"]
    leaf = asyncio.run(issue_leaf(make_csr(keys.get("ec:leaf")), ca=pki.ca())).leaf
    with pytest.raises(errors.InvalidRequest, match="is not a CA"):
        IssuingCA(leaf, (pki.intermediate, pki.root), LocalSigner(keys.get("ec:leaf")))
    with pytest.raises(errors.InvalidRequest, match="did not issue"):
        IssuingCA(pki.intermediate, (pkis["rsa"].root,), LocalSigner(pki.intermediate_key))


def _patched(certificate: x509.Certificate, old: bytes, new: bytes) -> x509.Certificate:
    from cryptography.hazmat.primitives.serialization import Encoding
    der = certificate.public_bytes(Encoding.DER)
    assert der.count(old) >= 1 and len(old) == len(new)
    return x509.load_der_x509_certificate(der.replace(old, new))


@pytest.mark.parametrize("part,old,new", [
    ("subject", b"kvca Test Issuing CA", b"kvca Test Issuing \xff\xfe"),  # not UTF-8
    ("key", b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01", b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x09"),  # unknown
    ("curve", b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07", b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x01"),  # P-192
])
def test_issuing_ca_refuses_a_malformed_vault_certificate_without_a_traceback(part, old, new, pkis):
    pki = pkis["ec"]
    broken = _patched(pki.intermediate, old, new)
    with pytest.raises(errors.InvalidRequest, match="has a malformed name, key or extension") as caught:
        IssuingCA(broken, (pki.root,), LocalSigner(pki.intermediate_key))
    assert caught.value.step == "load-ca"


def test_issuing_ca_refuses_a_chain_certificate_with_a_malformed_subject(pkis):
    pki = pkis["ec"]
    broken_root = _patched(pki.root, b"kvca Test Root", b"kvca Test \xff\xfe\xfd\xfc")
    with pytest.raises(errors.InvalidRequest, match="chain certificate 'serial [0-9a-f]+' has a malformed"):
        IssuingCA(pki.intermediate, (broken_root,), LocalSigner(pki.intermediate_key))


def test_ecdsa_signatures_from_the_vault_are_der_encoded():
    from kvca_core.signing.signers import raw_to_der_ecdsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    raw = (5).to_bytes(32, "big") + (7).to_bytes(32, "big")
    assert decode_dss_signature(raw_to_der_ecdsa(raw, ec.SECP256R1())) == (5, 7)


def test_splice_keeps_tbs_and_algorithm_and_replaces_only_the_signature(keys):
    import datetime as dt
    from kvca_core.signing.signers import splice_signature
    from cryptography.hazmat.primitives.serialization import Encoding
    key = keys.get("rsa:remote")
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x" * 60)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    spliced = x509.load_der_x509_certificate(splice_signature(cert.public_bytes(Encoding.DER), b"\xab" * 300))
    assert spliced.tbs_certificate_bytes == cert.tbs_certificate_bytes
    assert spliced.signature == b"\xab" * 300
    assert spliced.signature_algorithm_oid == cert.signature_algorithm_oid


def test_issuing_ca_refuses_a_weak_ca_key_it_would_refuse_in_a_csr():
    import datetime as dt
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Weak hand-imported CA")])
    weak = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    with pytest.raises(errors.PolicyViolation, match="'CN=Weak hand-imported CA': RSA key of 1024 bits is too small") \
            as caught:
        IssuingCA(weak, (), LocalSigner(key))
    assert caught.value.step == "load-ca"
