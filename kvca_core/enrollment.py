"""Who may enroll a device over EST: a one-time enrollment code for its first certificate, its current
certificate for the next ones.

One-time codes (`kvca enroll-codes`; RFC 7030 3.2.3: HTTP Basic, user = device ID, password = code):

- A code is 128 random bits (secrets.token_bytes), shown once, in the codes file the command
  writes (mode 0600), and stored nowhere but as a hash: SHA-256 over a label, the CA, the device ID
  and the code. A plain one-way hash, no slow KDF and no HMAC secret: NIST SP 800-63B 5.1.2.2 asks
  for an approved one-way hash for look-up secrets of at least 112 bits, and a slow KDF only for
  weaker ones; a guess at 128 random bits costs the same against either, while a slow KDF would cost
  CPU on every enrollment attempt (anyone may try) and an HMAC key would be one more secret for the
  app to read and rotate. The hash binds the code to its CA and device, so a code is valid only
  for the device it was made for.
- The ledger (insert-only) holds three markers per code, all under the key `<ca>~<hash>` (':' is
  not a marker-key character, and the key stays within the table's 1 KiB):

      enroll-code   the device, the names it may hold besides its ID, the expiry, who made it
      enroll-used   spending it: the first insert wins, so single use is the table's insert conflict,
                    whatever number of instances try at once; it holds the public key that spent it
      enroll-done   the serial of the certificate it bought

  A request that spent the code and then failed (the vault was throttled, the answer was lost) is
  retried by the same device with the same key: it is let through, and once a certificate was
  recorded it gets that certificate again rather than a second one. Another key is refused.

A code is refused when unknown, made for another device or CA, expired, or spent by another key:
NotAuthenticated (HTTP 401 with a Basic challenge). A CSR whose names are not the device's is
Forbidden (403): its CN must be the device ID, and every SAN the device ID itself or one of the
names the code was made for.

Re-enrollment (RFC 7030 4.2.2) is authorized by the device's current certificate: one the ledger
holds for the CA, external, byte for byte the same, not revoked, within its validity; the new CSR
keeps its subject and names exactly (`SameNames`).
"""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import hashlib
import io
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Sequence

from cryptography import x509

from kvca_core import clock, telemetry
from kvca_core.errors import Forbidden, InvalidRequest, KvcaError
from kvca_core.ledger import EXTERNAL, CertificateRecord, ca_key
from kvca_core.ledger.records import SAN_PREFIXES, time_text
from kvca_core.operations.external import Admission
from kvca_core.signing.names import DEVICE_ID, normalize_dns_name, normalize_email, normalize_uri

CODE_KIND, USED_KIND, DONE_KIND = "enroll-code", "enroll-used", "enroll-done"
CODE_BYTES = 16  # 128 bits
_CODE_LETTERS = 26  # base32 of 16 bytes, without padding
_LABEL = b"kvca enrollment code v1"
MAX_DAYS = 365
_MAKERS = 16  # markers written at once by make_codes


class NotAuthenticated(Forbidden):
    """The caller proved no identity kvca accepts for this request: an enrollment code unknown, expired
    or used, or none. HTTP 401 with a challenge (RFC 7235 3.1), where Forbidden is a known caller
    refused."""

    http_status = 401


# --- codes ---------------------------------------------------------------------------------------
def new_code() -> str:
    """128 random bits as 26 base32 letters and digits in groups of four: ABCD-EFGH-... (no 0/1/8/9 to
    misread; case and dashes are ignored when it is entered)."""
    text = base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode("ascii").rstrip("=")
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def normalise_code(text: str) -> str | None:
    """The code's 26 base32 characters, upper case without dashes or spaces; None when it is no code."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    bare = "".join(text.split()).replace("-", "").upper()
    if len(bare) != _CODE_LETTERS or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in bare):
        return None
    return bare


def code_key(ca: str, device: str, code: str) -> str:
    """The markers' key: the CA, and the hash of (label, CA, device, code); the code itself is never kept."""
    bare = normalise_code(code)
    if bare is None:
        raise NotAuthenticated("the password is not an enrollment code (26 letters and digits)",
                               subject=_device(device))
    digest = hashlib.sha256(b"\0".join([_LABEL, ca_key(ca).encode(), device.encode("utf-8"), bare.encode()]))
    return f"{ca_key(ca)}~{digest.hexdigest()}"


def _device(device: str) -> str:
    return f"device '{str(device)[:64]}'"


def check_device_id(device: str, where: str = "request") -> str:
    if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
        raise InvalidRequest(f"device ID {str(device)[:70]!r} is not letters, digits and '.', '_', ':', '-' inside, "
                             f"at most 64 characters (it becomes the certificate's CN)", subject=where)
    return device


def general_name(text: str) -> x509.GeneralName:
    """A SAN as the ledger spells it ("DNS:x", "URI:x", "IP:x", "email:x") as a GeneralName, normalised
    as the signer normalises a CSR's names; InvalidRequest otherwise."""
    kind, _, value = text.partition(":")
    kind = f"{kind}:"
    if kind not in SAN_PREFIXES or not value:
        raise InvalidRequest(f"{text[:80]!r} is not a name of the form {', '.join(p + '...' for p in SAN_PREFIXES)}")
    if kind == "DNS:":
        return x509.DNSName(normalize_dns_name(value, single_label=True))
    if kind == "URI:":
        return x509.UniformResourceIdentifier(normalize_uri(value))
    if kind == "email:":
        return x509.RFC822Name(normalize_email(value))
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidRequest(f"{text[:80]!r} does not hold an IP address") from None


def _name_text(name: x509.GeneralName) -> str:
    prefix = {x509.DNSName: "DNS:", x509.UniformResourceIdentifier: "URI:", x509.RFC822Name: "email:",
              x509.IPAddress: "IP:"}[type(name)]
    return f"{prefix}{name.value}"


@dataclass(frozen=True)
class DeviceEntry:
    """One row of a devices file: the device ID and the names it may hold besides it."""

    device_id: str
    sans: tuple[str, ...] = ()


COLUMNS = ("device_id", "sans")


def read_devices(text: str, label: str) -> list[DeviceEntry]:
    """A devices file: CSV with a header row, `device_id` and optionally `sans` (names separated by
    spaces, as DNS:..., URI:..., IP:..., email:...). InvalidRequest naming the line and the column."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    devices: list[DeviceEntry] = []
    seen: dict[str, int] = {}
    try:
        header = [(h or "").strip() for h in reader.fieldnames or []]
        unknown = [h for h in header if h not in COLUMNS]
        if unknown or "device_id" not in header:
            raise InvalidRequest(f"the header row must name device_id (and optionally sans), not "
                                 f"{', '.join(map(repr, unknown or header)) or 'nothing'}", subject=f"{label} line 1")
        for raw in reader:
            where = f"{label} line {reader.line_num}"
            if None in raw:
                raise InvalidRequest(f"more cells than the {len(header)} columns", subject=where)
            cells = {k.strip(): (v or "").strip() for k, v in raw.items()}
            if not any(cells.values()):
                continue
            device = check_device_id(cells.get("device_id", ""), where)
            if device in seen:
                raise InvalidRequest(f"device {device!r} is already on line {seen[device]}", subject=where)
            seen[device] = reader.line_num
            try:
                sans = tuple(_name_text(general_name(entry)) for entry in cells.get("sans", "").split())
            except KvcaError as exc:
                raise InvalidRequest(f"column 'sans': {exc.message}", subject=where) from None
            devices.append(DeviceEntry(device, sans))
    except csv.Error as exc:
        raise InvalidRequest(f"not valid CSV ({exc})", subject=f"{label} line {reader.line_num}") from None
    if not devices:
        raise InvalidRequest("no devices in the file (a header row device_id, then one device a line)", subject=label)
    return devices


@dataclass(frozen=True)
class IssuedCode:
    device_id: str
    code: str  # shown once, written to the codes file, never stored
    expires: dt.datetime


async def make_codes(ctx, ca: str, devices: Sequence[DeviceEntry], *, days: int) -> list[IssuedCode]:
    """A code per device, valid for `days`, for a CA that signs external CSRs (checked first: a code for
    a CA that would refuse its CSR helps no one). Only the hashes reach the ledger."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidRequest(f"days={days!r} must be a whole number from 1 to {MAX_DAYS}", subject="request")
    loaded = await ctx.authority.load(ca)
    (await ctx.authority.policy(loaded)).external_profile(None)
    now = clock.now()
    expires = now + dt.timedelta(days=days)
    limit = asyncio.Semaphore(_MAKERS)

    async def one(device: DeviceEntry) -> IssuedCode:
        data = {"ca": ca, "device": device.device_id, "sans": " ".join(device.sans), "expires": time_text(expires),
                "made_by": telemetry.actor(), "made_at": time_text(now)}
        async with limit:
            while True:  # another code only if 128 random bits ever met an earlier code's hash
                code = new_code()
                if await ctx.ledger.insert_once(CODE_KIND, code_key(ca, device.device_id, code), data):
                    return IssuedCode(device.device_id, code, expires)

    issued = list(await asyncio.gather(*(one(device) for device in devices)))
    telemetry.record("enroll_codes", "made", ca=ca,
                     reason=f"{len(issued)} device(s), valid until {expires.isoformat()}")
    return issued


async def code_gate(ctx, ca: str, device: str, code: str) -> "CodeGate":
    """Authentication by an enrollment code, before the CSR is read: the code exists for this CA and
    device and has not expired. Spending it is the gate's `admit`, once the CSR passed the policy."""
    if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
        raise NotAuthenticated("the user name is not a device ID", subject=_device(device))
    key = code_key(ca, device, code)
    data = await ctx.ledger.get(CODE_KIND, key)
    if data is None or data.get("device") != device or ca_key(str(data.get("ca", ""))) != ca_key(ca):
        raise NotAuthenticated(f"no enrollment code like this was made for this device and CA '{ca}'",
                               subject=_device(device), hint="make one with `kvca enroll-codes`")
    try:
        expires = dt.datetime.fromisoformat(data["expires"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        raise NotAuthenticated("the enrollment code's record has no readable expiry", subject=_device(device)) from None
    if clock.now() >= expires:
        raise NotAuthenticated(f"the enrollment code expired on {expires:%Y-%m-%d %H:%M}Z", subject=_device(device))
    allowed = tuple(general_name(entry) for entry in data.get("sans", "").split())
    return CodeGate(ctx, ca, device, key, allowed)


class CodeGate:
    """The CSR's names must be the device's; then the code is spent (operations.external.Gate)."""

    def __init__(self, ctx, ca: str, device: str, key: str, allowed: Sequence[x509.GeneralName]) -> None:
        self.ctx, self.ca, self.device, self.key = ctx, ca, device, key
        # The device ID is always its own name: as a DNS name when it is one (a host-named device).
        self.allowed = set(allowed)
        try:
            self.allowed.add(x509.DNSName(normalize_dns_name(device, single_label=True)))
        except KvcaError:
            pass

    async def admit(self, admission: Admission) -> CertificateRecord | None:
        where = _device(self.device)
        if admission.common_name != self.device:
            raise Forbidden(f"the CSR's CN is {admission.common_name!r}, not the device ID", subject=where)
        foreign = [_name_text(n) for n in admission.sans if n not in self.allowed]
        if foreign:
            raise Forbidden(f"the CSR names {foreign[0]!r}, which is not one of the device's names "
                            f"({', '.join(sorted(_name_text(n) for n in self.allowed)) or 'none besides its ID'})",
                            subject=where)
        ledger = self.ctx.ledger
        if await ledger.insert_once(USED_KIND, self.key, {"spki": admission.spki_sha256, "at": time_text(clock.now())}):
            return None
        used = await ledger.get(USED_KIND, self.key)
        if used is None or used.get("spki") != admission.spki_sha256:
            raise NotAuthenticated(f"the enrollment code was already used (at {(used or {}).get('at', '?')})",
                                   subject=where, hint="re-enroll with the device's certificate, or make a new code")
        done = await ledger.get(DONE_KIND, self.key)
        return await ledger.certificate(self.ca, done["serial"]) if done and done.get("serial") else None

    async def signed(self, record: CertificateRecord) -> None:
        await self.ctx.ledger.insert_once(DONE_KIND, self.key, {"serial": record.serial})


# --- re-enrollment ---------------------------------------------------------------------------------
async def current_certificate(ctx, ca: str, der: bytes) -> CertificateRecord:
    """The device's current certificate, presented over TLS, as the ledger holds it for CA `ca`;
    Forbidden when it is not one, was revoked, or is outside its validity."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        serial = certificate.serial_number
    except ValueError:
        raise InvalidRequest("the client certificate is not a DER X.509 certificate", subject="request") from None
    where = f"client certificate serial {serial:x}"
    record = await ctx.ledger.certificate(ca, serial) if serial > 0 else None
    if record is None or record.der != der:
        raise Forbidden(f"is not a certificate CA '{ca}' issued", subject=where)
    if record.location != EXTERNAL:
        raise Forbidden(f"is a Key Vault certificate ('{record.name}'), renewed in the vault, not over EST",
                        subject=where)
    revoked = await ctx.ledger.revocation(ca, serial)
    if revoked is not None:
        raise Forbidden(f"was revoked ({revoked.reason}, {revoked.revoked_at:%Y-%m-%d %H:%M}Z)", subject=where,
                        hint="enroll the device again with a new enrollment code")
    now = clock.now()
    if not record.not_before <= now < record.not_after:
        raise Forbidden(f"is not valid now (valid {record.not_before:%Y-%m-%d} to {record.not_after:%Y-%m-%d})",
                        subject=where, hint="an expired device enrolls again with a new enrollment code")
    return record


class SameNames:
    """Re-enrollment keeps the subject and the names of the certificate it replaces, exactly
    (RFC 7030 4.2.2: "MUST be identical")."""

    def __init__(self, current: CertificateRecord) -> None:
        self.current = current
        certificate = x509.load_der_x509_certificate(current.der)
        self.subject = certificate.subject
        try:
            self.sans = set(certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            self.sans = set()

    async def admit(self, admission: Admission) -> CertificateRecord | None:
        if admission.subject != self.subject or set(admission.sans) != self.sans:
            asked = ", ".join([admission.subject.rfc4514_string(), *sorted(_name_text(n) for n in admission.sans)])
            held = ", ".join([self.current.subject, *self.current.sans])
            raise Forbidden(f"the CSR asks for {asked!r}; re-enrollment keeps the certificate's subject and names "
                            f"({held!r})", subject=f"device '{self.current.name}'")
        return None

    async def signed(self, record: CertificateRecord) -> None:
        return None


def code_rows(codes: Sequence[IssuedCode]) -> str:
    """The codes file: CSV device_id,code,expires."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["device_id", "code", "expires"])
    for issued in codes:
        writer.writerow([issued.device_id, issued.code, issued.expires.isoformat()])
    return out.getvalue()


__all__ = ["CODE_KIND", "DONE_KIND", "USED_KIND", "CodeGate", "DeviceEntry", "IssuedCode", "NotAuthenticated",
           "SameNames", "code_gate", "code_key", "code_rows", "current_certificate", "make_codes", "new_code",
           "normalise_code", "read_devices"]

