"""Helpers for the signing engine's tests: CSRs, a Key Vault-like remote sign,
re-parsing checks of every extension, `openssl verify`, pkilint, TLS."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from kvca_core.signing import Profile, parse_subject

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


def make_csr(key, *, subject: str | None = "CN=api.kvca.test", dns: Sequence[str] = ("api.kvca.test",),
             ips: Sequence[str] = (), ekus: Sequence[x509.ObjectIdentifier] | None = None,
             extensions: Iterable[tuple[x509.ExtensionType, bool]] = ()) -> bytes:
    import ipaddress
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        parse_subject(subject) if subject else x509.Name([]))
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(DER)


_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def keyvault_sign(private_key):
    """An async `sign(algorithm, digest)` that answers the way Key Vault's keys API does:
    it signs a digest it is given (never the data), RS* PKCS#1 v1.5, PS* PSS with salt =
    digest length, ES* raw r||s of the curve's size. `.calls` records what it was sent."""
    calls: list[tuple[str, bytes]] = []

    async def sign(algorithm: str, digest: bytes) -> bytes:
        calls.append((algorithm, digest))
        hash_ = _HASHES[algorithm[2:]]()
        assert len(digest) == hash_.digest_size, "Key Vault refuses a digest of the wrong length"
        if algorithm.startswith("ES"):
            der = private_key.sign(digest, ec.ECDSA(Prehashed(hash_)))
            r, s = decode_dss_signature(der)
            size = (private_key.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if algorithm.startswith("PS"):
            return private_key.sign(digest, padding.PSS(mgf=padding.MGF1(hash_), salt_length=hash_.digest_size),
                                    Prehashed(hash_))
        return private_key.sign(digest, padding.PKCS1v15(), Prehashed(hash_))

    sign.calls = calls
    return sign


def extension(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def expected_signature_oid(issuer_public_key) -> x509.ObjectIdentifier:
    if isinstance(issuer_public_key, rsa.RSAPublicKey):
        return SignatureAlgorithmOID.RSA_WITH_SHA256
    return {"secp256r1": SignatureAlgorithmOID.ECDSA_WITH_SHA256, "secp384r1": SignatureAlgorithmOID.ECDSA_WITH_SHA384,
            "secp521r1": SignatureAlgorithmOID.ECDSA_WITH_SHA512}[issuer_public_key.curve.name]


def _common(cert: x509.Certificate, issuer: x509.Certificate) -> x509.Certificate:
    cert = x509.load_der_x509_certificate(cert.public_bytes(DER))  # re-parse what a client would read
    assert cert.version is x509.Version.v3
    assert 1 << 63 < cert.serial_number < 1 << 159, "serial: positive, >= 64 random bits, <= 20 octets"
    assert cert.issuer == issuer.subject
    assert cert.signature_algorithm_oid == expected_signature_oid(issuer.public_key())
    ski = extension(cert, x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = extension(cert, x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == extension(issuer, x509.SubjectKeyIdentifier).value.digest
    cert.verify_directly_issued_by(issuer)
    return cert


def assert_is_ca(cert: x509.Certificate, *, issuer: x509.Certificate | None = None, path_length: int,
                 permitted_dns: Sequence[str] = ()) -> None:
    cert = _common(cert, issuer or cert)
    bc = extension(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == path_length
    ku = extension(cert, x509.KeyUsage)
    assert ku.critical
    assert (ku.value.key_cert_sign, ku.value.crl_sign, ku.value.digital_signature, ku.value.key_encipherment,
            ku.value.content_commitment, ku.value.data_encipherment, ku.value.key_agreement) == \
        (True, True, False, False, False, False, False)
    expected = {ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE, ExtensionOID.SUBJECT_KEY_IDENTIFIER,
                ExtensionOID.AUTHORITY_KEY_IDENTIFIER}
    if permitted_dns:
        nc = extension(cert, x509.NameConstraints)
        assert nc.critical
        assert [n.value for n in nc.value.permitted_subtrees] == list(permitted_dns)
        assert nc.value.excluded_subtrees is None
        expected.add(ExtensionOID.NAME_CONSTRAINTS)
    assert {e.oid for e in cert.extensions} == expected


def assert_is_leaf(cert: x509.Certificate, *, issuer: x509.Certificate, public_key,
                   profile: Profile = Profile.SERVER, dns: Sequence[str] = ("api.kvca.test",),
                   crl: str | None = None, aia: str | None = None) -> None:
    cert = _common(cert, issuer)
    assert cert.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        public_key.public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    bc = extension(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca and bc.value.path_length is None
    ku = extension(cert, x509.KeyUsage)
    assert ku.critical
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    assert (ku.value.digital_signature, ku.value.key_encipherment, ku.value.key_cert_sign, ku.value.crl_sign,
            ku.value.content_commitment, ku.value.data_encipherment, ku.value.key_agreement) == \
        (True, is_rsa, False, False, False, False, False)
    eku = extension(cert, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == list(profile.ekus)
    expected = {ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE, ExtensionOID.SUBJECT_KEY_IDENTIFIER,
                ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.EXTENDED_KEY_USAGE,
                ExtensionOID.SUBJECT_ALTERNATIVE_NAME}
    san = extension(cert, x509.SubjectAlternativeName)
    assert san.critical == (len(cert.subject) == 0)
    assert san.value.get_values_for_type(x509.DNSName) == list(dns)
    if crl:
        expected.add(ExtensionOID.CRL_DISTRIBUTION_POINTS)
        dp = extension(cert, x509.CRLDistributionPoints)
        assert not dp.critical and dp.value[0].full_name[0].value == crl
    if aia:
        expected.add(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
        info = extension(cert, x509.AuthorityInformationAccess)
        assert not info.critical and info.value[0].access_location.value == aia
    assert {e.oid for e in cert.extensions} == expected
    assert cert.not_valid_after_utc <= issuer.not_valid_after_utc


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(PEM) for c in certs))
    return path


def openssl_verify(tmp: Path, *, root: x509.Certificate, untrusted: Sequence[x509.Certificate],
                   leaf: x509.Certificate, purpose: str | None = None) -> subprocess.CompletedProcess:
    """The system openssl: the root alone is trusted, the intermediates are only offered."""
    args = ["openssl", "verify", "-x509_strict", "-CAfile", str(write_pem(tmp / "root.pem", root))]
    if untrusted:
        args += ["-untrusted", str(write_pem(tmp / "untrusted.pem", *untrusted))]
    if purpose:
        args += ["-purpose", purpose]
    args.append(str(write_pem(tmp / "leaf.pem", leaf)))
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


_pkix_validator = None


def pkilint_findings(cert: x509.Certificate, minimum: str = "ERROR") -> list[tuple[str, str, str | None]]:
    """pkilint's RFC 5280 linter (what its `lint_pkix_cert` CLI runs), findings at `minimum` or worse."""
    global _pkix_validator
    from pkilint import loader
    from pkilint.pkix import certificate, extension as pkix_extension, name
    from pkilint.validation import ValidationFindingSeverity

    if _pkix_validator is None:
        _pkix_validator = certificate.create_pkix_certificate_validator_container(
            certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, pkix_extension.EXTENSION_MAPPINGS),
            [certificate.create_issuer_validator_container([]), certificate.create_validity_validator_container(),
             certificate.create_subject_validator_container([]), certificate.create_extensions_validator_container([]),
             certificate.create_spki_validator_container([])])
    threshold = ValidationFindingSeverity[minimum]
    document = loader.RFC5280CertificateDocumentLoader().load_der_document(cert.public_bytes(DER), "certificate")
    return [(fd.finding.severity.name, fd.finding.code, fd.message)
            for result in _pkix_validator.validate(document.root)
            for fd in result.finding_descriptions if fd.finding.severity <= threshold]


def write_key(path: Path, key) -> Path:
    """Python's ssl only loads keys from files: test keys go to pytest's tmp dir, mode 0600."""
    path.touch(mode=0o600)
    path.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def tls_handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str) -> dict:
    """One real TLS handshake over loopback; returns what each side saw (or the error)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome: dict = {}

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                outcome["server_peer"] = tls.getpeercert()
                tls.sendall(b"hello")
        except (ssl.SSLError, OSError) as exc:
            outcome["server_error"] = exc
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                outcome["client_peer"] = tls.getpeercert()
                outcome["data"] = tls.recv(5)
    except (ssl.SSLError, OSError) as exc:
        outcome["client_error"] = exc
    thread.join(timeout=10)
    return outcome


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
