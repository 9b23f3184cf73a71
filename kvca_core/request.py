"""The one reader of certificate requests: `POST /api/certificates`, every item of
`POST /api/certificates/batch`, every row of `kvca request --from FILE` and `kvca request`'s own
options are read and checked here, by the same code, so the same input gets the same answer.

    parse_request(mapping, where="request")     -> IssueRequest, or InvalidRequest naming the field
    parse_requests([(where, mapping), ...])     -> [IssueRequest], also refusing repeated names
    fleet_rows(text, label)                     -> [(where, mapping)] from a CSV or JSON-lines file

What needs no vault is checked here: the fields and their types, every name's syntax, the key
type, the profile, the subject, the rule that a request names something Key Vault's policy can
hold, and names that repeat (Key Vault names are case-insensitive). What needs the CA (its stored
policy, its name constraints) is checked by `operations.issuance.check_requests` for every request
before the first is created. A refusal is an InvalidRequest whose `subject` says where (`request`,
`certificates[3]`, `devices.csv line 4`) and whose message names the field and the rule; the
message is the same wherever the request came from.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from kvca_core import jsontext
from kvca_core.errors import InvalidRequest, KvcaError
from kvca_core.model import KeySpec
from kvca_core.signing.names import normalize_dns_name, normalize_email, normalize_uri, parse_subject
from kvca_core.signing.policy import LEAF_PROFILES
from kvca_core.vocabulary import TAG_VALUE_MAX, check_free, check_name

CONTENT_TYPES = ("application/x-pkcs12", "application/x-pem-file")
MAX_MONTHS = 120
MAX_NAMES = 1000


@dataclass(frozen=True)
class IssueRequest:
    """A new certificate, checked for everything that needs no vault."""

    name: str
    ca: str  # "" when the caller may leave it out (the CLI: the vault's only CA)
    dns_names: tuple[str, ...] = ()
    subject: str | None = None
    profile: str = "server"
    key: str = "ec-p256"
    validity_months: int = 12
    content_type: str = "application/x-pkcs12"
    emails: tuple[str, ...] = ()  # email SANs (Key Vault's x509_props.sans.emails)
    uris: tuple[str, ...] = ()  # URI SANs: kept in the URIS_TAG tag (vocabulary.py)
    exportable: bool | None = None  # None: the profile's default (operations.common.EXPORTABLE_BY_DEFAULT)
    include_root: bool | None = None  # None: the profile's default (operations.common.ROOT_IN_CHAIN_BY_DEFAULT)
    ip_addresses: tuple[str, ...] = ()  # IP address SANs: kept in the IPS_TAG tag (vocabulary.py)

    FIELDS = ("name", "ca", "dns_names", "ip_addresses", "subject", "profile", "key", "validity_months",
              "content_type", "emails", "uris", "exportable", "include_root")

    @classmethod
    def from_mapping(cls, data: Any, where: str = "request", *, ca_optional: bool = False) -> "IssueRequest":
        return parse_request(data, where, ca_optional=ca_optional)

    def to_mapping(self) -> dict[str, Any]:
        """The request as the fields `parse_request` reads (lists as lists, unset fields left out)."""
        values = {f: getattr(self, f) for f in self.FIELDS}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v not in (None, "", ())}


def _refuse(where: str, field: str, problem: str, hint: str | None = None) -> InvalidRequest:
    """`problem` is a rule ("must be ...", "is required": read after the field's name) or what is
    wrong with the value (read after a colon)."""
    joined = f"field {field!r} {problem}" if problem.startswith(("must ", "is required")) \
        else f"field {field!r}: {problem}"
    return InvalidRequest(joined, subject=where, hint=hint)


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidRequest(f"{text[:60]!r} is not an IPv4 or IPv6 address (one address, not a range)") from None


class _Fields:
    """One request's fields, each read and checked by its type; a refusal names the field."""

    def __init__(self, data: Mapping, where: str):
        self.data, self.where = data, where

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip() or len(value) > 1024:
            raise _refuse(self.where, key, "must be a non-empty string")
        return value.strip()

    def strings(self, key: str, check) -> tuple[str, ...]:
        values = self.data.get(key)
        if values is None:
            return ()
        if isinstance(values, str) or not isinstance(values, (list, tuple)) \
                or not all(isinstance(v, str) for v in values) or len(values) > MAX_NAMES:
            raise _refuse(self.where, key, f"must be a list of strings (at most {MAX_NAMES})")
        return tuple(self.checked(key, value.strip(), check) for value in values)

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise _refuse(self.where, key, f"must be true or false, got {str(value)[:40]!r}")
        return value

    def checked(self, key: str, value: str | None, check):
        """`check(value)`'s answer; a KvcaError it raises becomes a refusal of the field."""
        if value is None:
            return None
        try:
            return check(value)
        except KvcaError as exc:
            raise _refuse(self.where, key, exc.message, exc.hint) from None


def parse_request(data: Any, where: str = "request", *, ca_optional: bool = False) -> IssueRequest:
    """Strict: unknown fields and wrong types are refused, naming the field."""
    if not isinstance(data, Mapping):
        raise InvalidRequest("a request must be a JSON object", subject=where)
    unknown = sorted(set(data) - set(IssueRequest.FIELDS))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(map(repr, unknown))}", subject=where,
                             hint=f"known fields: {', '.join(IssueRequest.FIELDS)}")
    fields = _Fields(data, where)
    text, strings, flag, checked = fields.text, fields.strings, fields.flag, fields.checked
    name = text("name")
    if name is None:
        raise _refuse(where, "name", "is required")
    checked("name", name, check_free)
    ca = text("ca")
    if ca is None and not ca_optional:
        raise _refuse(where, "ca", "is required")
    checked("ca", ca, lambda v: check_name(v, "CA"))
    profile = text("profile", "server").lower()
    if profile not in {p.value for p in LEAF_PROFILES}:
        raise _refuse(where, "profile", f"{profile[:40]!r} is not one of "
                                        f"{', '.join(p.value for p in LEAF_PROFILES)}")
    key = text("key", "ec-p256").lower()
    checked("key", key, KeySpec.parse)
    subject = text("subject")
    checked("subject", subject, parse_subject)
    months = data.get("validity_months", 12)
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= MAX_MONTHS:
        raise _refuse(where, "validity_months", f"must be a whole number from 1 to {MAX_MONTHS}, got {months!r}")
    content = text("content_type", CONTENT_TYPES[0])
    if content not in CONTENT_TYPES:
        raise _refuse(where, "content_type", f"must be {' or '.join(CONTENT_TYPES)}, got {content!r}")
    request = IssueRequest(
        name=name, ca=ca or "", subject=subject, profile=profile, key=key, validity_months=months,
        content_type=content, exportable=flag("exportable"), include_root=flag("include_root"),
        # Single-label names pass here; only a CA whose policy lists them issues them.
        dns_names=strings("dns_names", lambda v: normalize_dns_name(v, single_label=True)),
        ip_addresses=strings("ip_addresses", _ip), emails=strings("emails", normalize_email),
        uris=strings("uris", normalize_uri))
    check_names_something(request, where)
    for field, values in (("uris", request.uris), ("ip_addresses", request.ip_addresses)):
        size = len(" ".join(values))
        if size > TAG_VALUE_MAX:
            raise _refuse(where, field, f"take {size} characters; Key Vault keeps them in a tag, which holds at "
                                        f"most {TAG_VALUE_MAX}")
    return request


def check_names_something(request: IssueRequest, where: str) -> None:
    """Key Vault's policy needs a subject, or a SAN it can hold itself (DNS names, emails); URIs and
    IP addresses travel in tags (vocabulary.py) and alone would leave the policy naming nothing."""
    if not (request.subject or request.dns_names or request.emails):
        raise InvalidRequest("give a subject, or at least one DNS name or email (URIs and IP addresses "
                             "go with one of them)", subject=where)


def parse_requests(items: Iterable[tuple[str, Any]], *, ca_optional: bool = False) -> list[IssueRequest]:
    """Every (where, mapping) as an IssueRequest; a name given twice (Key Vault names are
    case-insensitive: `dev1` and `DEV1` are one certificate) is refused, naming both places."""
    requests: list[IssueRequest] = []
    seen: dict[str, str] = {}
    for where, data in items:
        request = parse_request(data, where, ca_optional=ca_optional)
        first = seen.setdefault(request.name.lower(), where)
        if first != where:
            raise _refuse(where, "name", f"{request.name!r} is already requested at {first} (Key Vault names are "
                                         f"case-insensitive)")
        requests.append(request)
    return requests


# --- fleet files ---------------------------------------------------------------------------------
# The columns are the request's fields, so a row means the same in a file, an HTTP body and on the
# command line. In CSV, list columns hold space-separated values (no DNS name, address, email or
# URI holds a space) and booleans are true/false.
LIST_FIELDS = ("dns_names", "ip_addresses", "emails", "uris")
BOOL_FIELDS = ("exportable", "include_root")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _cell(where: str, field: str, text: str) -> Any:
    if field in LIST_FIELDS:
        return text.split()
    if field in BOOL_FIELDS:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise _refuse(where, field, f"{text!r} is not true or false")
    if field == "validity_months":
        try:
            return int(text)
        except ValueError:
            raise _refuse(where, field, f"{text!r} is not a whole number") from None
    return text


def fleet_rows(text: str, label: str, *, json_lines: bool) -> list[tuple[str, dict[str, Any]]]:
    """(where, fields) per row of a fleet file: CSV with a header row, or JSON lines (one object a
    line, `#` comments and blank lines skipped). `where` is "<label> line N"."""
    rows: list[tuple[str, dict[str, Any]]] = []
    if json_lines:
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{label} line {number}"
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = jsontext.loads(line, what="the line")
            except (jsontext.TooDeep, jsontext.DuplicateKey) as exc:
                raise InvalidRequest(str(exc), subject=where) from None
            except ValueError as exc:
                raise InvalidRequest(f"not a JSON object ({getattr(exc, 'msg', exc)})", subject=where) from None
            if not isinstance(row, dict):
                raise InvalidRequest(f"a JSON line must be an object, got {type(row).__name__}", subject=where)
            rows.append((where, {k: v for k, v in row.items() if v is not None}))
        return rows
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [(h or "").strip() for h in reader.fieldnames or []]
        unknown = [h for h in header if h not in IssueRequest.FIELDS]
        if unknown:
            raise InvalidRequest(f"column {unknown[0]!r} is not a request field (known: "
                                 f"{', '.join(IssueRequest.FIELDS)})", subject=f"{label} line 1")
        if "name" not in header:
            raise InvalidRequest(f"the header row has no 'name' column (CSV needs a header row: "
                                 f"{', '.join(IssueRequest.FIELDS)})", subject=f"{label} line 1")
        for raw in reader:
            where = f"{label} line {reader.line_num}"
            if None in raw:  # more cells than the header has columns
                raise InvalidRequest(f"{len(header) + len(raw[None])} cells for {len(header)} columns",
                                     subject=where)
            cells = {k.strip(): (v or "").strip() for k, v in raw.items()}
            if any(cells.values()):
                rows.append((where, {k: _cell(where, k, v) for k, v in cells.items() if v}))
    except csv.Error as exc:
        raise InvalidRequest(f"not valid CSV ({exc})", subject=f"{label} line {reader.line_num}") from None
    return rows


def read_fleet(text: str, label: str, defaults: Mapping[str, Any]) -> tuple[list[IssueRequest], list[str]]:
    """Every row of a fleet file as an IssueRequest, the rows' empty cells filled from `defaults`
    (the command line's options). JSON lines when the file is named .jsonl, .ndjson or .json or
    starts with '{'; CSV otherwise. Nothing is sent anywhere until the whole file has been read.
    -> (the requests, where each is: "<label> line N")."""
    json_lines = label.lower().endswith((".jsonl", ".ndjson", ".json")) or text.lstrip()[:1] == "{"
    rows = [(where, {**defaults, **row}) for where, row in fleet_rows(text, label, json_lines=json_lines)]
    if not rows:
        raise InvalidRequest("no requests in the file (CSV needs a header row, then one row per certificate)",
                             subject=label)
    return parse_requests(rows, ca_optional=True), [where for where, _ in rows]


__all__ = ["CONTENT_TYPES", "IssueRequest", "check_names_something", "fleet_rows", "parse_request",
           "parse_requests", "read_fleet"]
