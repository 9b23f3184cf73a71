"""Key, CSR, certificate and container work for the emulator (cryptography only).

Everything here is pure: no state, no HTTP. The store calls it to make the keys
a vault would make, the CSRs it would hand out, the self-signed certificates of
issuer "Self", the PFX/PEM secret values, and the keys API's JWK and signatures.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID, ObjectIdentifier

from kvemulator._errors import KvError, bad_parameter
from kvemulator._kdf import check_kdf_rounds

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

RSA_SIZES = (2048, 3072, 4096)
# P-256K is accepted by Key Vault; cryptography calls it SECP256K1.
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
    "P-256K": ec.SECP256K1(),
}
CURVE_BY_SIZE = {256: "P-256", 384: "P-384", 521: "P-521"}
_CURVE_NAMES = {type(curve).__name__: name for name, curve in CURVES.items()}

# Key Vault's KeyUsageType spelling -> x509.KeyUsage argument.
KEY_USAGES = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}
# UPN SAN: Microsoft's otherName OID (the one Key Vault's `upns` produce).
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
# Key Vault subjects are written like .NET's X500DistinguishedName: "CN=a, O=b".
_NAME_OVERRIDES = {"E": NameOID.EMAIL_ADDRESS, "S": NameOID.STATE_OR_PROVINCE_NAME,
                   "SERIALNUMBER": NameOID.SERIAL_NUMBER}
_NAME_SPELLING = {NameOID.EMAIL_ADDRESS: "E", NameOID.STATE_OR_PROVINCE_NAME: "S"}


# ---------------------------------------------------------------- keys

def generate_key(kty: str, size: int | None, crv: str | None) -> PrivateKey:
    """A fresh private key for normalized key_props (slow for RSA: run off the loop)."""
    if kty.startswith("RSA"):
        return rsa.generate_private_key(public_exponent=65537, key_size=size or 2048)
    return ec.generate_private_key(CURVES[crv or "P-256"])


def key_spec_of(key: Any) -> tuple[str, int | None, str | None]:
    """(kty, key_size, crv) of a key object, Key Vault spelling."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RSA", key.key_size, None
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        name = _CURVE_NAMES.get(type(key.curve).__name__)
        if name is None:
            raise bad_parameter(f"The curve {key.curve.name} is not supported.")
        return "EC", None, name
    raise bad_parameter("Only RSA and EC keys are supported.")


def cert_has_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether `cert` certifies `key` (False, not an error, for a certificate whose key
    algorithm cryptography cannot load: an outside certificate may carry anything)."""
    try:
        cert_public = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return False
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    return (cert_public.public_bytes(serialization.Encoding.DER, fmt)
            == key.public_key().public_bytes(serialization.Encoding.DER, fmt))


def key_to_pem(key: PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def key_from_pem(text: str) -> PrivateKey:
    return serialization.load_pem_private_key(text.encode(), password=None)  # type: ignore[return-value]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(value: int, length: int | None = None) -> bytes:
    length = length or max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(length, "big")


def public_jwk(key: PrivateKey, kid: str, hsm: bool = False) -> dict[str, Any]:
    """The public JWK the keys API returns (no private members, ever)."""
    pub = key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        numbers = pub.public_numbers()
        return {"kid": kid, "kty": "RSA-HSM" if hsm else "RSA",
                "key_ops": ["sign", "verify", "wrapKey", "unwrapKey", "encrypt", "decrypt"],
                "n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e))}
    numbers = pub.public_numbers()
    _, _, crv = key_spec_of(pub)
    length = (pub.curve.key_size + 7) // 8
    return {"kid": kid, "kty": "EC-HSM" if hsm else "EC", "key_ops": ["sign", "verify"],
            "crv": crv, "x": b64url(_int_bytes(numbers.x, length)),
            "y": b64url(_int_bytes(numbers.y, length))}


_HASHES = {"256": (hashes.SHA256(), 32), "384": (hashes.SHA384(), 48), "512": (hashes.SHA512(), 64)}
# ES algorithms are tied to a curve in Key Vault (and in RFC 7518).
_ES_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "ES256K": "P-256K"}


def _algorithm(alg: str, key: Any) -> tuple[str, hashes.HashAlgorithm, int]:
    family, bits = alg[:2], alg[2:5]
    if alg in _ES_CURVES:
        bits = {"ES256K": "256"}.get(alg, bits)
    if family not in ("RS", "PS", "ES") or bits not in _HASHES:
        raise bad_parameter(f"Invalid algorithm '{alg}'.", status=400)
    kty, _, crv = key_spec_of(key)
    if (family == "ES") != (kty == "EC"):
        raise bad_parameter(f"Algorithm '{alg}' is not valid for a key of type {kty}.")
    if family == "ES" and _ES_CURVES[alg] != crv:
        raise bad_parameter(f"Algorithm '{alg}' is not valid for curve {crv}.")
    hash_alg, size = _HASHES[bits]
    return family, hash_alg, size


def sign_digest(key: PrivateKey, alg: str, digest: bytes) -> bytes:
    """Key Vault's sign: the caller sends the digest; EC answers raw r||s."""
    family, hash_alg, size = _algorithm(alg, key)
    if len(digest) != size:
        # The service's words (user reports of real answers: azure-cli#28027,
        # azure-sdk-for-js#12654).
        raise bad_parameter(f"Invalid length of 'value': {len(digest)} bytes. {alg} requires "
                            f"{size} bytes, encoded with base64url.")
    pre = utils.Prehashed(hash_alg)
    if family == "ES":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        der = key.sign(digest, ec.ECDSA(pre))
        r, s = utils.decode_dss_signature(der)
        length = (key.curve.key_size + 7) // 8
        return _int_bytes(r, length) + _int_bytes(s, length)
    assert isinstance(key, rsa.RSAPrivateKey)
    pad = (padding.PKCS1v15() if family == "RS"
           else padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size))
    return key.sign(digest, pad, pre)


def verify_digest(key: PrivateKey, alg: str, digest: bytes, signature: bytes) -> bool:
    family, hash_alg, _ = _algorithm(alg, key)
    pub = key.public_key()
    pre = utils.Prehashed(hash_alg)
    try:
        if family == "ES":
            assert isinstance(pub, ec.EllipticCurvePublicKey)
            length = (pub.curve.key_size + 7) // 8
            if len(signature) != 2 * length:
                return False
            r = int.from_bytes(signature[:length], "big")
            s = int.from_bytes(signature[length:], "big")
            pub.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(pre))
        else:
            assert isinstance(pub, rsa.RSAPublicKey)
            pad = (padding.PKCS1v15() if family == "RS"
                   else padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=padding.PSS.AUTO))
            pub.verify(signature, digest, pad, pre)
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------- names and extensions

def parse_subject(text: str) -> x509.Name:
    """"CN=a, O=b" -> x509.Name (RFC 4514 order, which is also .NET's display order)."""
    try:
        return x509.Name.from_rfc4514_string(text.strip(), attr_name_overrides=_NAME_OVERRIDES)
    except ValueError:
        pass
    # Tolerate the ", " separators Key Vault shows by trimming around each part.
    parts = [p.strip() for p in _split_unescaped(text, ",")]
    try:
        return x509.Name.from_rfc4514_string(",".join(parts), attr_name_overrides=_NAME_OVERRIDES)
    except ValueError as exc:
        raise bad_parameter(f"Invalid subject name '{text}'.") from exc


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, escaped = [], [], False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            cur.append(ch)
            escaped = True
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def subject_text(name: x509.Name) -> str:
    """x509.Name -> Key Vault's "CN=a, O=b" spelling."""
    return ", ".join(part.strip() for part in _split_unescaped(
        name.rfc4514_string(_NAME_SPELLING), ","))


def build_extensions(x509_props: dict[str, Any],
                     key: PrivateKey | None = None) -> list[tuple[x509.ExtensionType, bool]]:
    """The extensions a policy asks for: SANs, key usage (critical), EKUs, and basicConstraints
    when the policy has them (a created one does): CA:FALSE, not critical, as in the CSR and the
    Self certificate of the Python recording test_get_pending_certificate_signing_request (7.3)."""
    out: list[tuple[x509.ExtensionType, bool]] = []
    sans = x509_props.get("sans") or {}
    names: list[x509.GeneralName] = []
    for dns in sans.get("dns_names") or []:
        names.append(x509.DNSName(dns))
    for email in sans.get("emails") or []:
        names.append(x509.RFC822Name(email))
    for upn in sans.get("upns") or []:
        # otherName UPN: an ASN.1 UTF8String (tag 0x0C) holding the name.
        raw = upn.encode()
        names.append(x509.OtherName(UPN_OID, b"\x0c" + _der_length(len(raw)) + raw))
    for uri in sans.get("uris") or []:
        names.append(x509.UniformResourceIdentifier(uri))
    for ip in sans.get("ipAddresses") or []:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as exc:
            raise bad_parameter(f"Invalid IP address '{ip}' in sans.") from exc
    if names:
        out.append((x509.SubjectAlternativeName(names), False))
    usages = x509_props.get("key_usage") or []
    if usages:
        flags = {arg: False for arg in KEY_USAGES.values()}
        for usage in usages:
            flags[KEY_USAGES[usage]] = True
        if not flags["key_agreement"]:
            flags["encipher_only"] = flags["decipher_only"] = False
        out.append((x509.KeyUsage(**flags), True))
    ekus = x509_props.get("ekus") or []
    if ekus:
        out.append((x509.ExtendedKeyUsage([ObjectIdentifier(oid) for oid in ekus]), False))
    constraints = x509_props.get("basic_constraints")
    if constraints is not None:
        out.append((x509.BasicConstraints(ca=bool(constraints.get("ca")), path_length=None), False))
    return out


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = _int_bytes(n)
    return bytes([0x80 | len(body)]) + body


def _hash_for(key: Any) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size, hashes.SHA256())
    return hashes.SHA256()


def build_csr(key: PrivateKey, x509_props: dict[str, Any]) -> bytes:
    """A real PKCS#10 request (DER) carrying the policy's subject and extensions."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        parse_subject(x509_props.get("subject") or ""))
    for ext, critical in build_extensions(x509_props, key):
        builder = builder.add_extension(ext, critical=critical)
    csr = builder.sign(key, _hash_for(key))
    return csr.public_bytes(serialization.Encoding.DER)


def add_months(when: dt.datetime, months: int) -> dt.datetime:
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    for day in (when.day, 30, 29, 28):
        try:
            return when.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


# A Self certificate completed at `created` runs from created - 600 s to created + the
# policy's months (Python recording test_get_pending_certificate_signing_request, 7.3:
# created 15:09:45, notBefore 14:59:44, notAfter a year after 15:09:44).
SELF_BACKDATE = dt.timedelta(seconds=600)


def self_signed(key: PrivateKey, x509_props: dict[str, Any], created: dt.datetime) -> x509.Certificate:
    """Issuer "Self": what Key Vault makes from the policy, completed at `created`."""
    subject = parse_subject(x509_props.get("subject") or "")
    created = created.replace(microsecond=0)
    public = key.public_key()
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(public).serial_number(x509.random_serial_number())
               .not_valid_before(created - SELF_BACKDATE)
               .not_valid_after(add_months(created, int(x509_props.get("validity_months") or 12))))
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
    for ext, critical in build_extensions(x509_props, key):
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(key, _hash_for(key))


def x509_props_of(cert: x509.Certificate) -> dict[str, Any]:
    """The policy's x509_props that describe an imported certificate."""
    props: dict[str, Any] = {"subject": subject_text(cert.subject)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans: dict[str, list[str]] = {}
        dns = san.get_values_for_type(x509.DNSName)
        emails = san.get_values_for_type(x509.RFC822Name)
        if dns:
            sans["dns_names"] = dns
        if emails:
            sans["emails"] = emails
        if sans:
            props["sans"] = sans
    except x509.ExtensionNotFound:
        pass
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        usages = []
        for name, attr in KEY_USAGES.items():
            try:
                if getattr(ku, attr):
                    usages.append(name)
            except ValueError:  # encipher_only/decipher_only without key_agreement
                continue
        props["key_usage"] = usages
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        props["ekus"] = [oid.dotted_string for oid in eku]
    except x509.ExtensionNotFound:
        pass
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    props["validity_months"] = max(1, round((na - nb).days / 30.44))
    return props


def thumbprint(cert: x509.Certificate) -> bytes:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest()  # noqa: S324 (x5t is SHA-1 by definition)


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# ---------------------------------------------------------------- inbound certificate content

def _load_pem_certs(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise bad_parameter("The specified X.509 certificate content is invalid. "
                            "Error: one or more x509 certificates could not be parsed.") from exc


def parse_x5c(entries: Any) -> list[x509.Certificate]:
    """Merge's x5c: per entry base64 of the DER, or base64 of PEM text (JS recording, 2019),
    or base64 of the DER's base64 text (Python recording test_merge_certificate, 7.3)."""
    if not isinstance(entries, list) or not entries:
        raise bad_parameter("Property x5c is required and must be a non-empty array.")
    certs: list[x509.Certificate] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise bad_parameter("Each x5c entry must be a base64 string.")
        try:
            raw = base64.b64decode(entry, validate=True)
        except ValueError as exc:
            raise bad_parameter("The specified X.509 certificate content is invalid: "
                                "an x5c entry is not base64.") from exc
        if raw.lstrip().startswith(b"-----BEGIN"):
            certs.extend(_load_pem_certs(raw))
            continue
        certs.append(_load_der_or_its_base64(raw))
    return certs


def _load_der_or_its_base64(raw: bytes) -> x509.Certificate:
    if not raw.startswith(b"\x30"):  # not a DER SEQUENCE: the DER's base64 text, once more
        try:
            raw = base64.b64decode(b"".join(raw.split()), validate=True)
        except ValueError:
            pass  # neither: the DER parse below says so
    try:
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise bad_parameter("The specified X.509 certificate content is invalid. "
                            "Error: one or more x509 certificates could not be parsed.") from exc


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)

def parse_import(value: Any, password: str | None) -> tuple[PrivateKey | None, list[x509.Certificate], str]:
    """Import's value: base64 PFX, or PEM (base64 of PEM text, or PEM text itself)."""
    if not isinstance(value, str) or not value:
        raise bad_parameter("Property value is required.")
    if value.lstrip().startswith("-----BEGIN"):
        raw = value.encode()
    else:
        try:
            raw = base64.b64decode(value, validate=False)
        except ValueError as exc:
            raise bad_parameter("The specified certificate content is not valid base64.") from exc
    if raw.lstrip().startswith(b"-----BEGIN"):
        certs = _load_pem_certs(raw) if b"CERTIFICATE-----" in raw else []
        key = None
        for match in _PEM_BLOCK.finditer(raw):
            if b"PRIVATE KEY" not in match.group(1):
                continue
            if match.group(1) == b"ENCRYPTED PRIVATE KEY":
                try:
                    der = base64.b64decode(b"".join(match.group(0).splitlines()[1:-1]), validate=True)
                except ValueError:
                    raise bad_parameter("The private key in the specified PEM content could not "
                                        "be read (malformed).") from None
                check_kdf_rounds(der, "PEM private key")
            try:
                key = serialization.load_pem_private_key(
                    match.group(0), password.encode() if password else None)
            except (ValueError, TypeError) as exc:
                raise bad_parameter("The private key in the specified PEM content could not be "
                                    "read (malformed, or a wrong or missing password).") from exc
            break
        if not certs:
            raise bad_parameter("The specified PEM X.509 certificate content is missing a certificate.")
        return key, certs, "application/x-pem-file"  # type: ignore[return-value]
    check_kdf_rounds(raw, "PKCS#12 X.509 certificate")
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(
            raw, password.encode() if password else None)
    except ValueError as exc:
        raise bad_parameter("The specified PKCS#12 X.509 certificate content can not be read. "
                            "Please check if certificate is in valid PKCS#12 format and the "
                            "password is correct.") from exc
    if cert is None:
        raise bad_parameter("The specified PKCS#12 X.509 certificate content is missing a certificate.")
    return key, [cert, *extra], "application/x-pkcs12"  # type: ignore[return-value]


def order_chain(leaf: x509.Certificate, rest: list[x509.Certificate]) -> list[x509.Certificate]:
    """Leaf first, then each issuer in turn (what the secret holds)."""
    remaining = list(rest)
    out, cur = [leaf], leaf
    while remaining:
        nxt = next((c for c in remaining if c.subject == cur.issuer and c is not cur), None)
        if nxt is None:
            break
        remaining.remove(nxt)
        out.append(nxt)
        cur = nxt
    return out + remaining


# ---------------------------------------------------------------- secret values

def secret_value(key: PrivateKey | None, chain: list[x509.Certificate], content_type: str,
                 name: str) -> str:
    """The certificate's secret: key (if exportable) plus chain, PFX (base64) or PEM."""
    if content_type == "application/x-pem-file":
        parts = []
        if key is not None:
            parts.append(key_to_pem(key))
        parts.extend(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
        return "".join(parts)
    pfx = pkcs12.serialize_key_and_certificates(
        name.encode(), key, chain[0], chain[1:] or None, serialization.NoEncryption())
    return base64.b64encode(pfx).decode()


def import_leaf(key: PrivateKey | None, certs: list[x509.Certificate]) -> x509.Certificate:
    """The certificate of the imported key (a PFX or PEM may list its chain in any order)."""
    if key is None:
        raise bad_parameter("Private key is not specified in the specified X.509 certificate content. "
                            "Please specify private key in the X.509 certificate content.")
    leaf = next((cert for cert in certs if cert_has_key(cert, key)), None)
    if leaf is None:
        raise KvError(400, "BadParameter", MISMATCH_MESSAGE)
    return leaf


MISMATCH_MESSAGE = ("The public key of the end-entity certificate in the specified X.509 "
                    "certificate content does not match the public part of the specified "
                    "private key. Please check if certificate is valid.")
