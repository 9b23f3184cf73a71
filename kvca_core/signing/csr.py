"""The first three steps: parse a CSR, verify its own signature, check its key.

A CSR is untrusted input from start to end (Key Vault builds it from a policy
that anyone with certificate-create rights can write). It contributes its
public key and the names the policy allows, nothing else; what it asks for
is read into `InsecureRequest` (smallstep keeps CSR data under an `Insecure`
key for the same reason) and checked by the next steps.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kvca_core.errors import InvalidRequest, PolicyViolation
from kvca_core.signing.policy import IssuancePolicy

# A CSR for an RSA-4096 key with a hundred SANs is under 8 KiB; 64 KiB leaves
# ample room and keeps a hostile upload from costing more than a parse.
MAX_CSR_BYTES = 64 * 1024
# RSA above this takes seconds per verification and no client needs it.
MAX_RSA_BITS = 8192
_CURVES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}
# A CSR's self-signature only proves possession of the key, but a CSR signed
# with SHA-1 or MD5 is not something Key Vault or any current tool produces.
_CSR_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


def _pem_or_der(data: bytes) -> x509.CertificateSigningRequest:
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        first_line = stripped.split(b"\n", 1)[0].strip()
        if first_line not in (b"-----BEGIN CERTIFICATE REQUEST-----", b"-----BEGIN NEW CERTIFICATE REQUEST-----"):
            label = first_line.decode("ascii", "replace")[:60]
            raise InvalidRequest(f"PEM block {label!r} is not a CERTIFICATE REQUEST", step="parse")
        return x509.load_pem_x509_csr(stripped)
    if data[:1] == b"\x30":
        return x509.load_der_x509_csr(data)
    # The base64 DER that Key Vault's REST API returns in `csr`.
    try:
        der = base64.b64decode(b"".join(stripped.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("CSR is neither PEM, DER nor base64 DER", step="parse") from None
    if der[:1] != b"\x30":
        raise InvalidRequest("CSR is neither PEM, DER nor base64 DER (the decoded base64 is not a DER SEQUENCE)",
                             step="parse")
    return x509.load_der_x509_csr(der)


def parse_csr(data: bytes | bytearray | str | x509.CertificateSigningRequest) -> x509.CertificateSigningRequest:
    """PEM, DER, or base64 DER -> a CSR whose every part has been decoded once.

    cryptography decodes extensions lazily; touching them here means a
    malformed extension is a parse error now rather than a traceback later.
    """
    if isinstance(data, x509.CertificateSigningRequest):
        csr = data
    else:
        if isinstance(data, str):
            if not data.isascii():
                raise InvalidRequest("CSR text is not ASCII (expected PEM or base64)", step="parse")
            data = data.encode("ascii")
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidRequest(f"CSR must be bytes or text, not {type(data).__name__}", step="parse")
        data = bytes(data)
        if not data.strip():
            raise InvalidRequest("CSR is empty", step="parse")
        if len(data) > MAX_CSR_BYTES:
            raise InvalidRequest(f"CSR is {len(data)} bytes (at most {MAX_CSR_BYTES})", step="parse")
        try:
            csr = _pem_or_der(data)
        except InvalidRequest:
            raise
        except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
            raise InvalidRequest(f"CSR is not a valid PKCS#10 request ({_reason(exc)})", step="parse") from None
        except Exception as exc:  # noqa: BLE001 - hostile bytes must never become a traceback
            raise InvalidRequest(f"CSR is not a valid PKCS#10 request ({type(exc).__name__})", step="parse") from None
    try:
        with warnings.catch_warnings():
            # cryptography warns about over-long attributes; check-names refuses them with a reason.
            warnings.simplefilter("ignore", UserWarning)
            csr.subject
        csr.extensions
        csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise InvalidRequest("CSR is signed with an unsupported signature algorithm", step="parse") from None
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise InvalidRequest(f"CSR has a malformed part ({_reason(exc)})", step="parse") from None
    return csr


def _reason(exc: Exception) -> str:
    # cryptography's messages name the ASN.1 location, never key material; keep them short.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def load_public_key(csr: x509.CertificateSigningRequest):
    try:
        return csr.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise PolicyViolation(f"the CSR's public key algorithm is not supported ({_reason(exc)}); "
                              f"kvca issues for RSA and EC P-256/P-384/P-521 keys", step="check-key") from None


def verify_csr_signature(csr: x509.CertificateSigningRequest):
    """Proof that the requester holds the private key (RFC 2986 3). Returns that public key."""
    public_key = load_public_key(csr)
    algorithm = csr.signature_hash_algorithm
    # None: EdDSA, whose hash is part of the algorithm; its key is refused at check-key.
    if algorithm is not None and not isinstance(algorithm, _CSR_HASHES):
        name = algorithm.name
        raise PolicyViolation(f"CSR is signed with {name!r}; kvca accepts SHA-256, SHA-384 or SHA-512",
                              step="verify-signature")
    try:
        valid = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise InvalidRequest(f"CSR signature cannot be checked ({_reason(exc)})", step="verify-signature") from None
    if not valid:
        raise InvalidRequest("CSR signature does not verify with the CSR's own public key "
                             "(the request was altered after signing, or is corrupt)", step="verify-signature")
    return public_key


def check_key(public_key, policy: IssuancePolicy) -> str:
    """The key kind ("rsa", "ec-p256", ...) if the policy allows it."""
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        if bits < policy.min_rsa_bits:
            raise PolicyViolation(f"RSA key of {bits} bits is too small (at least {policy.min_rsa_bits})",
                                  step="check-key")
        if bits > MAX_RSA_BITS:
            raise PolicyViolation(f"RSA key of {bits} bits is too large (at most {MAX_RSA_BITS})", step="check-key")
        exponent = public_key.public_numbers().e
        # NIST SP 800-89 5.3.3 / CA/B BR 6.1.6: odd, at least 2^16+1.
        if exponent < 65537 or exponent % 2 == 0:
            raise PolicyViolation(f"RSA public exponent {exponent} is not allowed (odd and at least 65537)",
                                  step="check-key")
        kind = "rsa"
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        kind = _CURVES.get(public_key.curve.name, "")
        if not kind:
            raise PolicyViolation(f"EC curve {public_key.curve.name!r} is not supported (use P-256, P-384 or "
                                  f"P-521; P-256K/secp256k1 is not accepted by TLS clients)", step="check-key")
    else:
        raise PolicyViolation(f"{type(public_key).__name__.replace('PublicKey', '')} keys are not supported "
                              f"(use RSA or EC P-256/P-384/P-521)", step="check-key")
    return check_key_kind(kind, public_key.key_size if kind == "rsa" else None, policy)


def check_key_kind(kind: str, rsa_bits: int | None, policy: IssuancePolicy) -> str:
    """The policy's rules for a kind of key ("rsa" with its bits, "ec-p256", ...): shared by
    check_key (a CSR's key) and issue.precheck (a key the vault is still to make)."""
    if kind == "rsa" and rsa_bits is not None and rsa_bits < policy.min_rsa_bits:
        raise PolicyViolation(f"RSA key of {rsa_bits} bits is too small (at least {policy.min_rsa_bits})",
                              step="check-key")
    if kind not in policy.key_types:
        raise PolicyViolation(f"key type {kind!r} is not allowed by this CA's policy "
                              f"(allowed: {', '.join(policy.key_types)})", step="check-key")
    return kind


@dataclass(frozen=True)
class InsecureRequest:
    """What a CSR asks for, unchecked. Never copied into a certificate as is."""

    subject: x509.Name
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    emails: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    other_names: tuple[str, ...] = ()  # descriptions of SAN kinds kvca never issues (otherName/UPN, ...)
    ekus: tuple[str, ...] = ()  # dotted OIDs
    asks_ca: bool = False  # basicConstraints CA:TRUE
    asks_cert_sign: tuple[str, ...] = ()  # keyCertSign / cRLSign requested


def read_request(csr: x509.CertificateSigningRequest) -> InsecureRequest:
    """The CSR's subject and requested extensions (PKCS#9 extensionRequest)."""
    extensions = csr.extensions
    dns: list[str] = []
    ips: list = []
    emails: list[str] = []
    uris: list[str] = []
    others: list[str] = []
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    for name in san or ():
        if isinstance(name, x509.DNSName):
            dns.append(name.value)
        elif isinstance(name, x509.IPAddress):
            ips.append(name.value)
        elif isinstance(name, x509.RFC822Name):
            emails.append(name.value)
        elif isinstance(name, x509.UniformResourceIdentifier):
            uris.append(name.value)
        elif isinstance(name, x509.OtherName):
            label = "UPN" if name.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3" else name.type_id.dotted_string
            others.append(f"otherName {label}")
        else:
            others.append(type(name).__name__)
    try:
        ekus = tuple(o.dotted_string for o in extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        ekus = ()
    try:
        asks_ca = extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        asks_ca = False
    cert_sign: tuple[str, ...] = ()
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
        cert_sign = tuple(n for n, on in (("keyCertSign", usage.key_cert_sign), ("cRLSign", usage.crl_sign)) if on)
    except x509.ExtensionNotFound:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        subject = csr.subject
    return InsecureRequest(subject=subject, dns_names=tuple(dns), ip_addresses=tuple(ips), emails=tuple(emails),
                           uris=tuple(uris), other_names=tuple(others), ekus=ekus, asks_ca=asks_ca,
                           asks_cert_sign=cert_sign)
