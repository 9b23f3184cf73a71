"""Generate the hostile CSR corpus: `python tests/corpus/make_corpus.py`.

Every file under csr/ is a request kvca must refuse; index.json says, for each,
which errors.py kind and which signing step must refuse it, a fragment of the
message, and the policy / CA to try it under. Any layer can run the corpus:
the signing engine's tests do (tests/signing/test_sign_corpus.py), and the
CLI and the Functions app can feed the same files through their own doors.

The private keys that sign these requests exist only in this process's
memory: no file here holds a private key (a test checks). Re-running the
script makes new keys, so the bytes change but the cases do not.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import subprocess
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

HERE = Path(__file__).resolve().parent
OUT = HERE / "csr"
DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM

_EC = ec.generate_private_key(ec.SECP256R1())
_RSA = None


def rsa2048():
    global _RSA
    if _RSA is None:
        _RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _RSA


def cn(value: str, validate: bool = True) -> x509.NameAttribute:
    with warnings.catch_warnings():  # the over-long CN case is over-long on purpose
        warnings.simplefilter("ignore", UserWarning)
        return x509.NameAttribute(NameOID.COMMON_NAME, value, _validate=validate)


def name(*attributes: x509.NameAttribute) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName([a]) for a in attributes])


def csr(subject: x509.Name, sans=(), *, key=None, extensions=(), hash_=hashes.SHA256()) -> bytes:
    key = key or _EC
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        hash_ = None
    return builder.sign(key, hash_).public_bytes(DER)


def simple(host: str = "api.kvca.test", **kwargs) -> bytes:
    return csr(name(cn(host)), [x509.DNSName(host)], **kwargs)


def dns(*hosts: str, subject_cn: str | None = None) -> bytes:
    return csr(name(cn(subject_cn)) if subject_cn else x509.Name([]), [x509.DNSName(h) for h in hosts])


def openssl_sha1_csr() -> bytes:
    """cryptography (>= 45) refuses to sign with SHA-1; OpenSSL still does. The key goes through a pipe."""
    key_pem = _EC.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return subprocess.run(["openssl", "req", "-new", "-key", "/dev/stdin", "-subj", "/CN=sha1.kvca.test",
                           "-addext", "subjectAltName=DNS:sha1.kvca.test", "-sha1", "-outform", "DER"],
                          input=key_pem, capture_output=True, check=True).stdout


def flip_last_byte(der: bytes) -> bytes:
    return der[:-1] + bytes([der[-1] ^ 0x01])


def tamper_subject(der: bytes) -> bytes:
    assert der.count(b"api.kvca.test") >= 1
    return der.replace(b"api.kvca.test", b"evi.kvca.test", 1)


def pem(der: bytes) -> bytes:
    return x509.load_der_x509_csr(der).public_bytes(PEM)


def self_signed_certificate_der() -> bytes:
    import datetime as dt
    now = dt.datetime.now(dt.timezone.utc)
    subject = name(cn("not-a-csr.kvca.test"))
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(_EC.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(_EC, hashes.SHA256()).public_bytes(DER))


INVALID, POLICY = "InvalidRequest", "PolicyViolation"
CONSTRAINED_POLICY = {"allowed_domains": ["mycompany.local"]}


def cases():
    """(file name, bytes, kind, step, message fragment, extra) for every case."""
    c = []

    def add(file, data, kind, step, contains, **extra):
        c.append((file, data, kind, step, contains, extra))

    # --- parse
    add("empty.der", b"", INVALID, "parse", "empty")
    add("garbage-der.bin", b"\x30\x82\x01\x00" + os.urandom(252), INVALID, "parse", "not a valid PKCS#10")
    add("text-not-csr.txt", b"hello, this is not a certificate request\n", INVALID, "parse", "neither PEM")
    add("base64-not-der.b64", base64.b64encode(b"hello world, not DER"), INVALID, "parse", "not a DER SEQUENCE")
    good = simple()
    add("truncated.der", good[: len(good) // 2], INVALID, "parse", "not a valid PKCS#10")
    add("trailing-garbage.der", good + b"\x00\x00\x00\x00", INVALID, "parse", "not a valid PKCS#10")
    add("pem-bad-base64.pem", b"-----BEGIN CERTIFICATE REQUEST-----\n!!!not*base64!!!\n"
                              b"-----END CERTIFICATE REQUEST-----\n", INVALID, "parse", "not a valid PKCS#10")
    add("pem-wrong-label.pem", x509.load_der_x509_certificate(self_signed_certificate_der()).public_bytes(PEM),
        INVALID, "parse", "is not a CERTIFICATE REQUEST")
    add("certificate-as-der.der", self_signed_certificate_der(), INVALID, "parse", "not a valid PKCS#10")
    add("oversized.pem", pem(good) + b"\n" + b"A" * (70 * 1024), INVALID, "parse", "at most 65536")
    version_at = good.find(b"\x02\x01\x00")  # CertificationRequestInfo.version INTEGER 0
    add("version-5.der", good[:version_at] + b"\x02\x01\x05" + good[version_at + 3:], INVALID, "parse",
        "not a valid CSR version")
    add("length-claims-4-gib.der", b"\x30\x84\xff\xff\xff\xff" + good[4:], INVALID, "parse", "not a valid PKCS#10")
    add("indefinite-length-ber.der", b"\x30\x80" + good[3:] + b"\x00\x00", INVALID, "parse", "not a valid PKCS#10")
    add("malformed-san-extension.der",
        csr(name(cn("api.kvca.test")), extensions=[(x509.UnrecognizedExtension(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x04\x02zz"), False)]), INVALID, "parse", "malformed part")
    # --- verify-signature
    add("broken-signature.der", flip_last_byte(good), INVALID, "verify-signature", "does not verify")
    add("subject-altered-after-signing.der", tamper_subject(simple()), INVALID, "verify-signature",
        "does not verify")
    add("sha1-signature.der", openssl_sha1_csr(), POLICY, "verify-signature", "'sha1'")
    # --- check-key
    add("rsa-1024.der", simple(key=rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        POLICY, "check-key", "1024 bits is too small")
    add("rsa-exponent-3.der", simple(key=rsa.generate_private_key(public_exponent=3, key_size=2048)),
        POLICY, "check-key", "exponent 3")
    add("ec-secp256k1.der", simple(key=ec.generate_private_key(ec.SECP256K1())), POLICY, "check-key",
        "'secp256k1' is not supported")
    add("ec-brainpoolp256r1.der", simple(key=ec.generate_private_key(ec.BrainpoolP256R1())), POLICY, "check-key",
        "'brainpoolP256r1' is not supported")
    add("ed25519.der", simple(key=ed25519.Ed25519PrivateKey.generate()), POLICY, "check-key",
        "Ed25519 keys are not supported")
    add("ed448.der", simple(key=ed448.Ed448PrivateKey.generate()), POLICY, "check-key", "Ed448 keys are not supported")
    add("dsa-2048.der", simple(key=dsa.generate_private_key(key_size=2048)), POLICY, "check-key",
        "DSA keys are not supported")
    add("rsa-key-not-in-policy.der", simple(key=rsa2048()), POLICY, "check-key", "key type 'rsa' is not allowed",
        policy={"key_types": ["ec-p256"]})
    # --- check-names: what the request asks for
    add("ca-true-request.der", csr(name(cn("api.kvca.test")), [x509.DNSName("api.kvca.test")],
                                   extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]),
        POLICY, "check-names", "CA powers")
    add("keycertsign-request.der", csr(name(cn("api.kvca.test")), [x509.DNSName("api.kvca.test")], extensions=[(
        x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                      key_agreement=False, key_cert_sign=True, crl_sign=False, encipher_only=False,
                      decipher_only=False), True)]), POLICY, "check-names", "keyCertSign")
    add("codesigning-eku-request.der", csr(name(cn("api.kvca.test")), [x509.DNSName("api.kvca.test")],
                                           extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
                                                        False)]),
        POLICY, "check-names", "'codeSigning' is not issued")
    add("client-profile-not-allowed.der", csr(name(cn("api.kvca.test")), [x509.DNSName("api.kvca.test")],
                                              extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                                           False)]),
        POLICY, "check-names", "profile 'client' is not allowed", policy={"profiles": ["server"]})
    # --- check-names: the subject
    add("empty-subject-no-sans.der", csr(x509.Name([])), INVALID, "check-names", "names nothing")
    add("cn-not-in-sans.der", csr(name(cn("evil.kvca.test")), [x509.DNSName("good.kvca.test")]), POLICY,
        "check-names", "'evil.kvca.test' is not one of the SANs")
    add("cn-over-64-characters.der", csr(name(cn("a" * 52 + ".kvca.test.xyz", validate=False)),
                                    [x509.DNSName("api.kvca.test")]), INVALID, "check-names", "at most 64")
    add("two-common-names.der", csr(name(cn("api.kvca.test"), cn("web.kvca.test")), [x509.DNSName("api.kvca.test"),
                                                                                       x509.DNSName("web.kvca.test")]),
        INVALID, "check-names", "more than one CN")
    add("email-in-subject.der", csr(name(cn("api.kvca.test"), x509.NameAttribute(NameOID.EMAIL_ADDRESS,
                                                                                  "ops@kvca.test")),
                                    [x509.DNSName("api.kvca.test")]), POLICY, "check-names", "'emailAddress'")
    add("multi-valued-rdn.der", csr(x509.Name([x509.RelativeDistinguishedName(
        [cn("api.kvca.test"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kvca")])]),
        [x509.DNSName("api.kvca.test")]), INVALID, "check-names", "multi-valued")
    add("control-character-in-cn.der", csr(name(cn("api.kvca.test\x00.evil.test")), [x509.DNSName("api.kvca.test")]),
        INVALID, "check-names", "control characters")
    # --- check-names: DNS syntax
    add("nested-wildcard.der", dns("*.*.kvca.test"), INVALID, "check-names", "only be the leftmost label")
    add("partial-wildcard.der", dns("f*o.kvca.test"), INVALID, "check-names", "partial wildcard")
    add("wildcard-not-leftmost.der", dns("api.*.kvca.test"), INVALID, "check-names", "only be the leftmost label")
    add("underscore-label.der", dns("bad_name.kvca.test"), INVALID, "check-names", "'bad_name'")
    add("label-64-characters.der", dns("a" * 64 + ".kvca.test"), INVALID, "check-names", "label of 64 characters")
    add("empty-label.der", dns("api..kvca.test"), INVALID, "check-names", "empty label")
    add("trailing-dot.der", dns("api.kvca.test."), INVALID, "check-names", "ends with a dot")
    # A single label is well-formed; only a CA whose policy lists it in allowed_names issues it.
    add("single-label.der", dns("localhost"), POLICY, "check-names", "single label")
    add("ip-as-dns-name.der", dns("10.0.0.1"), INVALID, "check-names", "looks like an IP address")
    add("hyphen-edge-label.der", dns("-api.kvca.test"), INVALID, "check-names", "'-api'")
    # --- check-names: policy
    add("dns-outside-allowed-domains.der", dns("api.example.com", subject_cn="api.example.com"), POLICY,
        "check-names", "'api.example.com' is outside the allowed domains (*.mycompany.local)",
        policy=CONSTRAINED_POLICY)
    add("suffix-lookalike-domain.der", dns("api.evilmycompany.local"), POLICY, "check-names",
        "outside the allowed domains", policy=CONSTRAINED_POLICY)
    add("wildcard-when-disallowed.der", dns("*.kvca.test"), POLICY, "check-names", "allow_wildcards is false",
        policy={"allow_wildcards": False})
    add("wildcard-over-tld.der", dns("*.test"), POLICY, "check-names", "whole top-level domain")
    add("ip-san-not-allowed.der", csr(x509.Name([]), [x509.DNSName("api.kvca.test"),
                                                      x509.IPAddress(ipaddress.ip_address("10.1.2.3"))]),
        POLICY, "check-names", "IP address SAN '10.1.2.3'")
    add("email-san-not-allowed.der", csr(x509.Name([]), [x509.DNSName("api.kvca.test"),
                                                         x509.RFC822Name("ops@kvca.test")]),
        POLICY, "check-names", "allow_email is false")
    add("uri-san-not-allowed.der", csr(x509.Name([]), [x509.DNSName("api.kvca.test"),
                                                       x509.UniformResourceIdentifier("spiffe://kvca.test/api")]),
        POLICY, "check-names", "allow_uri is false")
    add("upn-othername-san.der", csr(x509.Name([]), [x509.DNSName("api.kvca.test"), x509.OtherName(
        x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x0fadmin@kvca.test")]),
        POLICY, "check-names", "otherName UPN")
    add("registered-id-san.der", csr(x509.Name([]), [x509.DNSName("api.kvca.test"),
                                                     x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4"))]),
        POLICY, "check-names", "RegisteredID")
    add("directory-name-san.der", csr(x509.Name([]), [x509.DNSName("api.kvca.test"),
                                                      x509.DirectoryName(name(cn("admin")))]),
        POLICY, "check-names", "DirectoryName")
    add("empty-dns-name.der", dns(""), INVALID, "check-names", "DNS name is empty")
    add("cn-is-ip-without-sans.der", csr(name(cn("10.9.8.7"))), POLICY, "check-names", "IP address SAN '10.9.8.7'")
    add("malformed-email-san.der", csr(x509.Name([]), [x509.DNSName("api.kvca.test"), x509.RFC822Name("no-at-sign")]),
        INVALID, "check-names", "'no-at-sign' is not local@domain", policy={"allow_email": True})
    add("uri-san-without-host.der", csr(x509.Name([]), [x509.DNSName("api.kvca.test"),
                                                        x509.UniformResourceIdentifier("urn:kvca:api")]),
        INVALID, "check-names", "needs a scheme and a host", policy={"allow_uri": True})
    add("ip-san-address-range.der", csr(x509.Name([]), [x509.DNSName("api.kvca.test"),
                                                        x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))]),
        INVALID, "check-names", "'10.0.0.0/8' is an address range", policy={"allow_ip": True})
    add("email-san-with-specials.der", csr(x509.Name([]), [x509.DNSName("api.kvca.test"),
                                                           x509.RFC822Name._init_without_validation("@@kvca.test")]),
        INVALID, "check-names", "unquoted ASCII local part", policy={"allow_email": True})
    add("email-san-control-character.der", csr(x509.Name([]), [
        x509.DNSName("api.kvca.test"), x509.RFC822Name._init_without_validation("ops\x01@kvca.test")]),
        INVALID, "check-names", "unquoted ASCII local part", policy={"allow_email": True})
    add("uri-san-port-out-of-range.der", csr(x509.Name([]), [
        x509.DNSName("api.kvca.test"), x509.UniformResourceIdentifier("https://api.kvca.test:99999/")]),
        INVALID, "check-names", "port from 0 to 65535", policy={"allow_uri": True})
    add("subject-dc-not-ascii.der", csr(name(x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "\u00e9",
                                                                 _type=_ASN1Type.UTF8String), cn("api.kvca.test")),
                                        [x509.DNSName("api.kvca.test")]), INVALID, "check-names",
        "DC='\u00e9' is not ASCII")
    add("subject-dc-not-a-domain.der", csr(name(x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "0"), cn("api.kvca.test")),
                                           [x509.DNSName("api.kvca.test")]), INVALID, "check-names",
        "DC components '0' do not form a DNS name")
    add("101-sans-by-default.der", dns(*(f"h{i}.kvca.test" for i in range(101))), POLICY, "check-names",
        "101 SANs (at most 100)")
    add("too-many-sans.der", dns("a.kvca.test", "b.kvca.test", "c.kvca.test", "d.kvca.test"), POLICY,
        "check-names", "4 SANs (at most 3)", policy={"max_sans": 3})
    add("outside-ca-name-constraints.der", dns("api.example.com"), POLICY, "check-names",
        "outside the name constraints of CA", ca="constrained")
    add("wildcard-wider-than-ca-name-constraints.der", dns("*.local"), POLICY, "check-names",
        "whole top-level domain", ca="constrained")
    add("wildcard-above-ca-name-constraints.der", dns("*.corp.example"), POLICY, "check-names",
        "outside the name constraints of CA", ca="constrained")
    # --- names that once passed (each a finding of a security review)
    add("idna-label-not-punycode.der", dns("xn--zz.kvca.test"), INVALID, "check-names",
        "'xn--zz' is not a valid IDNA A-label")
    add("idna-label-forbidden-code-point.der", dns("xn--ls8h.kvca.test"), INVALID, "check-names",
        "'xn--ls8h' is not a valid IDNA A-label")
    add("idna-label-in-cn-only.der", csr(name(cn("xn--a.kvca.test"))), INVALID, "check-names",
        "not a valid IDNA A-label")
    add("bidi-override-in-organization.der", csr(name(x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                                         "kvca \u202egnp.exe"), cn("api.kvca.test")),
                                                 [x509.DNSName("api.kvca.test")]), INVALID, "check-names",
        "invisible character U+202E")
    add("zero-width-space-in-ou.der", csr(name(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Pay\u200bments"),
                                               cn("api.kvca.test")), [x509.DNSName("api.kvca.test")]),
        INVALID, "check-names", "invisible character U+200B")
    add("subject-42-kib.der", csr(name(*(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit {i:04d} " + "x" * 54)
                                         for i in range(650)), cn("api.kvca.test")), [x509.DNSName("api.kvca.test")]),
        INVALID, "check-names", "bytes of DER (at most 1024)")
    add("wildcard-public-suffix-co-uk.der", dns("*.co.uk"), POLICY, "check-names", "public suffix 'co.uk'")
    add("wildcard-private-public-suffix.der", dns("*.azurewebsites.net"), POLICY, "check-names",
        "public suffix 'azurewebsites.net'")
    # The subject of the test PKI's intermediate (tests/signing/conftest.py), as it is encoded and case-folded.
    issuer = (x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kvca tests"), cn("kvca Test Issuing CA"))
    add("subject-repeats-issuer.der", csr(name(*issuer), [x509.DNSName("api.kvca.test")]), POLICY, "check-names",
        "repeats the subject of CA")
    add("subject-repeats-issuer-other-case.der", csr(name(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "KVCA Tests"),
                                                          cn("KVCA test  issuing ca")),
                                                     [x509.DNSName("api.kvca.test")]), POLICY, "check-names",
        "repeats the subject of CA")
    add("wildcard-over-excluded-subtree.der", dns("*.corp.internal"), POLICY, "check-names",
        "excluded by the name constraints of CA", ca="excluding")
    add("wildcard-inside-excluded-subtree.der", dns("*.secret.corp.internal"), POLICY, "check-names",
        "excluded by the name constraints of CA", ca="excluding")
    return c


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    index = []
    for file, data, kind, step, contains, extra in cases():
        assert b"PRIVATE KEY" not in data
        (OUT / file).write_bytes(data)
        entry = {"file": f"csr/{file}", "kind": kind, "step": step, "contains": contains}
        entry.update(extra)
        index.append(entry)
    doc = {
        "about": "Hostile CSRs: each must be refused with `kind` (kvca_core.errors) at signing step `step`, "
                 "with `contains` in the message. `policy` (optional): IssuancePolicy fields to use; "
                 "`ca` (optional): 'constrained' = an intermediate whose nameConstraints permit only "
                 "mycompany.local; 'excluding' = one that permits corp.internal and excludes secret.corp.internal; "
                 "else an unconstrained one. Regenerate with make_corpus.py.",
        "cases": index,
    }
    (HERE / "index.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(index)} cases to {OUT}")


if __name__ == "__main__":
    main()
