"""The ledger's records, and how each becomes the flat row a store keeps and comes back from it.

A row is a `dict[str, str | bytes]`: every value a string, the DER as bytes. Times are
`YYYY-MM-DDTHH:MM:SS.ffffffZ` strings in UTC, fixed width, so that comparing two as text
compares the instants (a store can filter "expiring before" on the text, server-side). Both
stores keep exactly these rows, so the checks below are the only ones there are:

- `certificate_row` / `revocation_row` check a record before it is written (InvalidRequest
  naming the field, the rule and the value: a caller's bug, nothing is written);
- `certificate_of` / `revocation_of` read a row back. Stored data is untrusted (another writer,
  a hand edit, a future version of kvca): a row that is not what this module writes is an
  UpstreamError naming the row, never a crash and never a half-read record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kvca_core.errors import InvalidRequest, UpstreamError
from kvca_core.events import VERSION_RE
from kvca_core.vocabulary import NAME_RE
from kvca_core.signing.crl import REASONS

Row = dict[str, "str | bytes"]

VAULT, EXTERNAL = "vault", "external"
# The CA version of a certificate kvca signed before it recorded versions (an import of old tags).
UNKNOWN_VERSION = "unknown"
LOCATIONS = (VAULT, EXTERNAL)
SAN_PREFIXES = ("DNS:", "IP:", "URI:", "email:")
# Azure Table Storage: a binary property holds at most 64 KiB, a string 64 KiB of UTF-16
# (32 Ki characters) (learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model,
# "Property types"). A certificate is a few KiB; one that is not is refused before it is signed into the
# ledger rather than failing at the table.
MAX_DER = 64 * 1024
MAX_TEXT = 32 * 1024 - 1
_SHORT_TEXT = 256

# RFC 5280 4.1.2.2: a serial is positive and at most 20 octets; kvca writes it as lower-case
# hex without leading zeros (what `format(serial, "x")` gives), so one serial has one key.
_SERIAL = re.compile(r"[1-9a-f][0-9a-f]{0,39}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PROFILE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class CertificateRecord:
    """One certificate kvca signed."""

    ca: str  # the CA's name as kvca knows it; keys use its lower-case form (vault names are case-insensitive)
    ca_version: str  # the CA certificate version whose key signed it
    serial: str  # lower-case hex, no leading zeros
    subject: str  # RFC 4514
    sans: tuple[str, ...]  # "DNS:..", "IP:..", "URI:..", "email:.."
    not_before: dt.datetime  # aware, UTC
    not_after: dt.datetime
    sha256: str  # hex of the DER's SHA-256
    profile: str
    location: str  # VAULT or EXTERNAL
    name: str  # the vault certificate's name, or the device's / service's
    version: str | None  # the vault version, or None
    requested_by: str  # a principal, "timer", "event", "cli"
    recorded_at: dt.datetime
    der: bytes  # public data, kept so that show, export and re-enrollment checks need nothing else

    @classmethod
    def of(cls, certificate: x509.Certificate, *, ca: str, ca_version: str, profile: str, location: str,
           name: str, version: str | None, requested_by: str, recorded_at: dt.datetime) -> "CertificateRecord":
        """The record of `certificate`: serial, subject, names, dates and digest taken from it."""
        der = certificate.public_bytes(Encoding.DER)
        return cls(ca=ca, ca_version=ca_version, serial=serial_text(certificate.serial_number),
                   subject=certificate.subject.rfc4514_string(), sans=san_strings(certificate),
                   not_before=certificate.not_valid_before_utc, not_after=certificate.not_valid_after_utc,
                   sha256=hashlib.sha256(der).hexdigest(), profile=profile, location=location, name=name,
                   version=version, requested_by=requested_by, recorded_at=recorded_at, der=der)


@dataclass(frozen=True)
class RevocationRecord:
    """One revocation: the first one recorded for a serial stands."""

    ca: str
    serial: str
    reason: str  # RFC 5280 spelling, a key of signing/crl.py REASONS
    revoked_at: dt.datetime
    revoked_by: str
    recorded_at: dt.datetime
    # From the certificate's record, so that a CRL is built from the revocations alone: the CA version
    # whose key signed it (each key version has its own CRL) and when it expires (a CRL stops listing
    # it some time after, RFC 5280 3.3).
    ca_version: str = UNKNOWN_VERSION
    not_after: dt.datetime | None = None

    @classmethod
    def of(cls, certificate: "CertificateRecord", *, reason: str, revoked_at: dt.datetime, revoked_by: str,
           recorded_at: dt.datetime) -> "RevocationRecord":
        return cls(ca=certificate.ca, serial=certificate.serial, reason=reason, revoked_at=revoked_at,
                   revoked_by=revoked_by, recorded_at=recorded_at, ca_version=certificate.ca_version,
                   not_after=certificate.not_after)


# --- keys -----------------------------------------------------------------------------------------
def serial_text(value: int | str) -> str:
    """A serial as the ledger keys it (lower-case hex, no leading zeros), from an int or from hex
    text in any case, with or without colons; InvalidRequest otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = format(value, "x") if value > 0 else "-"
    elif isinstance(value, str):
        text = value.strip().replace(":", "").lower().lstrip("0")
    else:
        text = "-"
    if not _SERIAL.fullmatch(text):
        raise InvalidRequest(f"serial {str(value)[:80]!r} is not a positive hexadecimal serial of at most "
                             f"20 octets (RFC 5280 4.1.2.2)", subject="ledger")
    return text


def ca_key(ca: str) -> str:
    """The CA's name as the ledger keys it: Key Vault names are case-insensitive, so `Corp-CA`
    and `corp-ca` are one CA."""
    if not isinstance(ca, str) or not NAME_RE.match(ca):
        raise InvalidRequest(f"CA name {str(ca)[:130]!r} is not a Key Vault certificate name "
                             f"(1-127 letters, digits and '-')", subject="ledger")
    return ca.lower()


def time_text(when: dt.datetime) -> str:
    """Fixed-width UTC text: text order is time order."""
    if not isinstance(when, dt.datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise InvalidRequest(f"time {str(when)[:60]!r} is not a timezone-aware datetime", subject="ledger")
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def san_strings(certificate: x509.Certificate) -> tuple[str, ...]:
    """The certificate's subjectAltName entries as "DNS:..", "IP:..", "URI:..", "email:.." strings
    (other kinds kvca never issues are left out)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    kinds = ((x509.DNSName, "DNS:"), (x509.IPAddress, "IP:"), (x509.UniformResourceIdentifier, "URI:"),
             (x509.RFC822Name, "email:"))
    return tuple(f"{prefix}{value}" for kind, prefix in kinds for value in names.get_values_for_type(kind))


# --- checks shared by writing and reading ----------------------------------------------------------
class _Bad(Exception):
    def __init__(self, field: str, rule: str, value: Any) -> None:
        super().__init__(f"field {field!r} {rule} (got {str(value)[:80]!r})")


def _text(field: str, value: Any, *, limit: int = _SHORT_TEXT, pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _Bad(field, f"must be text of 1 to {limit} characters", value)
    if pattern is not None and not pattern.fullmatch(value):
        raise _Bad(field, f"must match {pattern.pattern}", value)
    if _CONTROL.search(value):
        raise _Bad(field, "must not hold control characters", value)
    return value


def _time(field: str, value: Any) -> dt.datetime:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise _Bad(field, "must be a UTC time YYYY-MM-DDTHH:MM:SS.ffffffZ", value)
    try:
        return dt.datetime.fromisoformat(value[:-1]).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise _Bad(field, "must be a valid date and time", value) from None


def _sans(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (tuple, list)):
        raise _Bad("sans", "must be a list of strings", value)
    for san in value:
        _text("sans", san, limit=1024)
        if not san.startswith(SAN_PREFIXES):
            raise _Bad("sans", f"entries must start with one of {', '.join(SAN_PREFIXES)}", san)
        if san.startswith("IP:"):
            try:
                ipaddress.ip_address(san[3:])
            except ValueError:
                raise _Bad("sans", "IP entries must hold an IP address", san) from None
    return tuple(value)


def _certificate_fields(get: Callable[[str], Any], when: Callable[[str], dt.datetime]) -> CertificateRecord:
    """The record from `get(field)`, every field checked; `when` reads a time field."""
    location = get("location")
    if location not in LOCATIONS:
        raise _Bad("location", f"must be one of {', '.join(LOCATIONS)}", location)
    name_rule = NAME_RE if location == VAULT else None
    version = get("version")
    if version is not None:
        _text("version", version, pattern=VERSION_RE)
    der = get("der")
    if not isinstance(der, bytes) or not 0 < len(der) <= MAX_DER:
        raise _Bad("der", f"must be 1 to {MAX_DER} bytes", type(der).__name__)
    sha256 = _text("sha256", get("sha256"), pattern=_SHA256)
    if hashlib.sha256(der).hexdigest() != sha256:
        raise _Bad("sha256", "must be the SHA-256 of der", sha256)
    record = CertificateRecord(
        ca=_text("ca", get("ca"), pattern=NAME_RE), ca_version=_text("ca_version", get("ca_version"),
                                                                     pattern=VERSION_RE),
        serial=_text("serial", get("serial"), pattern=_SERIAL), subject=_text("subject", get("subject"),
                                                                              limit=MAX_TEXT),
        sans=_sans(get("sans")), not_before=when("not_before"), not_after=when("not_after"), sha256=sha256,
        profile=_text("profile", get("profile"), pattern=_PROFILE), location=location,
        name=_text("name", get("name"), pattern=name_rule), version=version,
        requested_by=_text("requested_by", get("requested_by")), recorded_at=when("recorded_at"), der=der)
    if record.not_after < record.not_before:
        raise _Bad("not_after", "must not be before not_before", get("not_after"))
    return record


def _revocation_fields(get: Callable[[str], Any], when: Callable[[str], dt.datetime]) -> RevocationRecord:
    reason = get("reason")
    if reason not in REASONS:
        raise _Bad("reason", f"must be one of {', '.join(REASONS)} (RFC 5280 5.3.1)", reason)
    not_after = get("not_after")
    return RevocationRecord(ca=_text("ca", get("ca"), pattern=NAME_RE),
                            serial=_text("serial", get("serial"), pattern=_SERIAL), reason=reason,
                            revoked_at=when("revoked_at"), revoked_by=_text("revoked_by", get("revoked_by")),
                            recorded_at=when("recorded_at"),
                            ca_version=_text("ca_version", get("ca_version") or UNKNOWN_VERSION, pattern=VERSION_RE),
                            not_after=when("not_after") if not_after is not None else None)


# --- writing ----------------------------------------------------------------------------------------
def _checked(what: str, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except _Bad as exc:
        raise InvalidRequest(f"{what}: {exc}", subject="ledger") from None


def _given_time(record: Any) -> Callable[[str], dt.datetime]:
    def when(field: str) -> dt.datetime:
        value = getattr(record, field)
        if not isinstance(value, dt.datetime) or value.utcoffset() is None:
            raise _Bad(field, "must be a timezone-aware datetime", value)
        return value.astimezone(dt.timezone.utc)
    return when


def certificate_row(record: CertificateRecord) -> Row:
    """The row of a certificate record, or InvalidRequest naming the field that is wrong."""
    checked = _checked(f"certificate record of serial {str(record.serial)[:80]!r}",
                       lambda: _certificate_fields(lambda f: getattr(record, f), _given_time(record)))
    row: Row = {"kind": "certificate", "ca": checked.ca, "ca_version": checked.ca_version, "serial": checked.serial,
                "subject": checked.subject, "sans": json.dumps(list(checked.sans)),
                "not_before": time_text(checked.not_before), "not_after": time_text(checked.not_after),
                "sha256": checked.sha256, "profile": checked.profile, "location": checked.location,
                "name": checked.name, "requested_by": checked.requested_by,
                "recorded_at": time_text(checked.recorded_at), "der": checked.der}
    if checked.version is not None:
        row["version"] = checked.version
    if len(row["sans"]) > MAX_TEXT:
        raise InvalidRequest(f"certificate record of serial {checked.serial}: its names take more than "
                             f"{MAX_TEXT} characters", subject="ledger")
    return row


def revocation_row(record: RevocationRecord) -> Row:
    checked = _checked(f"revocation record of serial {str(record.serial)[:80]!r}",
                       lambda: _revocation_fields(lambda f: getattr(record, f), _given_time(record)))
    row: Row = {"kind": "revocation", "ca": checked.ca, "serial": checked.serial, "reason": checked.reason,
                "revoked_at": time_text(checked.revoked_at), "revoked_by": checked.revoked_by,
                "recorded_at": time_text(checked.recorded_at), "ca_version": checked.ca_version}
    if checked.not_after is not None:
        row["not_after"] = time_text(checked.not_after)
    return row


# --- reading (untrusted) ----------------------------------------------------------------------------
def malformed(where: str, problem: str) -> UpstreamError:
    return UpstreamError(f"malformed row: {problem}", subject=where,
                         hint="the ledger holds a row kvca did not write this way; it is left as it is")


def _read(where: str, kind: str, row: Mapping[str, Any], fields: Callable) -> Any:
    if row.get("kind") != kind:
        raise malformed(where, f"not a {kind} record (kind {str(row.get('kind'))[:40]!r})")
    try:
        return fields(row.get, lambda field: _time(field, row.get(field)))
    except _Bad as exc:
        raise malformed(where, str(exc)) from None


def certificate_of(row: Mapping[str, Any], where: str) -> CertificateRecord:
    """The certificate record a stored row holds, or UpstreamError naming `where` (table and key)."""
    def fields(get, when):
        sans = get("sans")
        try:
            parsed = json.loads(sans) if isinstance(sans, str) else None
        except ValueError:
            parsed = None
        return _certificate_fields(lambda f: parsed if f == "sans" else get(f), when)
    return _read(where, "certificate", row, fields)


def revocation_of(row: Mapping[str, Any], where: str) -> RevocationRecord:
    return _read(where, "revocation", row, _revocation_fields)
