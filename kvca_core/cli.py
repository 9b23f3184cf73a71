"""`kvca`: the command line. Parse, call one kvca_core operation, print the result.

Every command is a thin call: `request`, `sign`, `renew`, `sweep`, `list` and
`show` call `kvca_core.operations` (the same functions the Functions app
runs); `ca *`, `export-chain` and `download` call `kvca_core.ca`.

Exit codes: 0 success, 1 the operation failed, 2 usage error (bad arguments,
missing or malformed settings such as the vault URL). Errors are one line on
stderr naming the object, the rule and the value; `--debug` adds the
traceback and the debug log.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import datetime as dt
import enum
import getpass
import json
import logging
import os
import sys
from typing import Any, Callable, Sequence

from kvca_core import ca as ca_ops
from kvca_core import jsonshape, operations
from kvca_core.context import Context
from kvca_core.errors import ConfigurationError, InvalidRequest, KvcaError
from kvca_core.settings import Settings

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports it
EXIT_CLOSED = 141  # standard output's reader went away (`kvca list | head`): 128 + SIGPIPE, as for any tool
KEY_TYPES = ("ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096")
PROFILES = ("server", "client", "server-client")
_MAX_FILE = 1024 * 1024


class UsageError(KvcaError):
    """Bad command-line input found after parsing (exit 2)."""

    exit_code = EXIT_USAGE


# ---------------------------------------------------------------------------
# Parsing


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other error
        raise UsageError(f"{self.prog}: {message}")


def _whole_number(minimum: int):
    """An argparse type: a whole number of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        return value
    return parse


_positive = _whole_number(1)
_non_negative = _whole_number(0)


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted before and after the command; SUPPRESS keeps
    # a sub-command's defaults from overwriting what was given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--vault", metavar="URL", default=argparse.SUPPRESS,
                        help="Key Vault URL (default: $KVCA_VAULT_URL)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="debug log and tracebacks on errors")

    parser = _Parser(prog="kvca", parents=[common],
                     description="A private CA for Azure Key Vault: create or import a CA, request, sign, "
                                 "renew and inspect certificates, export trust.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(subparsers, name: str, help_text: str):
        return subparsers.add_parser(name, help=help_text, description=help_text, parents=[common])

    ca = add(sub, "ca", "create, import and inspect CAs")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="CA_COMMAND", parser_class=_Parser)
    ca_sub.required = True
    p = add(ca_sub, "create", "create a root and an intermediate whose keys are generated in Key Vault")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--subject", required=True, help='e.g. "CN=Example CA, O=Example"')
    p.add_argument("--key", default="ec-p256", choices=KEY_TYPES)
    p.add_argument("--years", type=_positive, default=10, help="validity of the intermediate (default 10)")
    p.add_argument("--root-years", type=_positive, default=None, metavar="N",
                   help="validity of the root, at least --years (default: twice --years, at most 50)")
    p.add_argument("--root-subject", default=None, help='default: the subject with " Root" after its CN')
    p.add_argument("--permitted-dns", nargs="+", default=[], metavar="SUFFIX",
                   help="name constraints: the only DNS names the intermediate may sign")
    p.add_argument("--exportable", action="store_true",
                   help="make the intermediate's key exportable (the root's never is)")
    p = add(ca_sub, "import", "adopt an existing CA (PFX, or certificate and key PEM files)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--pfx", metavar="FILE")
    p.add_argument("--cert", metavar="FILE", help="the CA certificate (PEM; may include the chain)")
    p.add_argument("--key", metavar="FILE", help="its private key (PEM, PKCS#8, encrypted or not)")
    p.add_argument("--chain", metavar="FILE", help="the certificates above it, up to the root (PEM)")
    p.add_argument("--password-file", metavar="FILE",
                   help="file whose first line is the PFX or key password (default: prompt if needed)")
    p = add(ca_sub, "show", "show one CA")
    p.add_argument("name", metavar="NAME")
    add(ca_sub, "list", "list the CAs in the vault")
    _add_policy_commands(ca_sub, add)
    _add_ca_rotate(ca_sub, add)

    p = add(sub, "request", "create a certificate request in Key Vault (issuer Unknown, tag kvca-ca)")
    p.add_argument("name", metavar="NAME", nargs="?")
    p.add_argument("--dns", nargs="+", default=[], metavar="NAME")
    p.add_argument("--ip", nargs="+", default=[], metavar="ADDRESS")
    p.add_argument("--subject", help="default: CN=<first DNS name>")
    p.add_argument("--profile", choices=PROFILES, default=None, help="default: server")
    p.add_argument("--key", default=None, choices=KEY_TYPES, help="default: ec-p256")
    p.add_argument("--months", type=_positive, default=None, help="default: 12")
    p.add_argument("--ca", help="the issuing CA (default: the only CA in the vault)")
    p.add_argument("--sign", action="store_true", help="sign it at once")
    _add_request_options(p)

    p = add(sub, "sign", "sign a pending request")
    p.add_argument("name", metavar="NAME")
    p = add(sub, "renew", "start a new version of a certificate and sign it")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--if-due", action="store_true", help="only when it is due (as the sweep decides)")
    p.add_argument("--force", action="store_true",
                   help="renew even if a renewal completed moments ago (otherwise that is an error)")
    p = add(sub, "cancel", "withdraw the pending request of a certificate kvca manages")
    p.add_argument("name", metavar="NAME")
    p = add(sub, "sweep", "sign every pending request and renew every due certificate")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    p = add(sub, "list", "the certificates kvca manages, most urgent first")
    p.add_argument("--expiring-within", type=_non_negative, metavar="DAYS")
    p = add(sub, "show", "one certificate: chain, SANs, validity, serial, fingerprint, tags")
    p.add_argument("name", metavar="NAME")
    p = add(sub, "export-chain", "the CA's trust certificates: root, intermediate or both; PEM, DER or PKCS#7")
    p.add_argument("name", metavar="CA")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--include-root", action="store_true", help="the same as --which both")
    p.add_argument("--which", choices=ca_ops.TRUST_WHICH, default=None,
                   help="intermediate (default): the CA that issues leaves, the one an Event Grid namespace "
                        "takes; root: the self-signed root alone; both: the whole chain, root last")
    p.add_argument("--format", choices=ca_ops.TRUST_FORMATS, default="pem",
                   help="pem (default), der (.cer: exactly one certificate) or p7b (PKCS#7)")
    p = add(sub, "download", "an exportable certificate with its private key and chain (file mode 0600)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--out", metavar="FILE", required=True)
    p.add_argument("--format", choices=ca_ops.DOWNLOAD_FORMATS, default="pem")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--password-file", metavar="FILE",
                   help="pfx only: encrypt it with the first line of FILE (default: no password)")
    _add_revocation_commands(sub, add)
    return parser


def _add_request_options(p: argparse.ArgumentParser) -> None:
    """`kvca request`'s options for consumers and fleets (issue 9)."""
    p.add_argument("--email", nargs="+", default=[], metavar="ADDRESS", help="rfc822Name SANs (client profile)")
    p.add_argument("--uri", nargs="+", default=[], metavar="URI", help="URI SANs, e.g. spiffe://fleet.example/device-1")
    p.add_argument("--exportable", action=argparse.BooleanOptionalAction, default=None,
                   help="may the private key leave Key Vault in the certificate's secret (PFX/PEM)? "
                        "default: yes for the server, client and server-client profiles, which "
                        "Application Gateway, API Management, App Service and devices need")
    p.add_argument("--include-root", action=argparse.BooleanOptionalAction, default=None,
                   help="merge the root into the chain after the intermediates (API Management and App "
                        "Service require the full chain); default: yes for server and server-client, no for client")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="many certificates: a CSV file with a header row, or JSON lines (see below)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = """\
--from FILE issues one certificate per row. The columns (CSV header) or keys (JSON lines) are
those of POST /api/certificates: name, ca, subject, dns_names, emails, uris, profile, key,
validity_months, content_type, exportable, include_root. In CSV, list columns hold
space-separated values and booleans are true/false; options given on the command line (--ca,
--profile, --key, --months, --exportable, --include-root) fill the cells a row leaves empty.
Example CSV:
    name,dns_names,uris
    device-001,device-001.fleet.example,spiffe://fleet.example/device-001
The whole file is checked first (a bad row is exit 2, naming the line and the field, and nothing
is created). Requests then run concurrently within Key Vault's create limit (20 per 10 s).
Resuming: run the same command again. A certificate already issued for the same request is
reported "skipped" and left alone; one left pending by an interrupted run is signed; failed
rows are tried again; a name held by a different certificate fails. --json prints one JSON
result per line, in the file's order. Exit 0 when every row is issued or skipped, 1 when any
failed, 2 for bad arguments or a bad file."""


# ---------------------------------------------------------------------------
# Files


def _read_file(path: str, what: str, limit: int = _MAX_FILE) -> bytes:
    try:
        with open(path, "rb") as fh:
            # Read one byte past the limit rather than trust a size: a pipe or /dev/stdin has none.
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path!r} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path!r} is a directory") from None
    except PermissionError:
        raise UsageError(f"{what} {path!r} cannot be read (permission denied)") from None
    except OSError as exc:
        raise UsageError(f"{what} {path!r} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > limit:
        raise UsageError(f"{what} {path!r} is more than {limit} bytes"
                         + ("; a CA's files are a few KB" if limit == _MAX_FILE else ""))
    return data


def _ask_password(path: str) -> str:
    try:
        return getpass.getpass(f"password for {path}: ")
    except EOFError:  # Ctrl-D at the prompt
        raise UsageError(f"no password given for {path!r} (use --password-file FILE)") from None


def _read_password(path: str) -> str:
    data = _read_file(path, "password file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"password file {path!r} is not UTF-8 text") from None
    lines = text.splitlines()
    return lines[0] if lines else ""


def write_private_file(path: str, data: bytes, *, force: bool = False) -> None:
    """Create `path` with mode 0600 from the first byte on (never widened, never world-readable)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    if force and os.path.lexists(path):
        try:
            os.unlink(path)
        except OSError as exc:  # a directory, or a read-only directory
            raise UsageError(f"cannot replace {path!r}: {exc.strerror}") from None
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"file {path!r} exists; give --force to replace it") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path!r}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # the umask could only narrow it, but say it outright
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


def _write_public_file(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path!r}: {exc.strerror}") from None


# ---------------------------------------------------------------------------
# Fleet files (`kvca request --from FILE`)

# The columns are the fields of `POST /api/certificates` (IssueRequest.from_mapping), so a row
# means the same in a file, an HTTP body and on the command line. `sign` is the command's --sign.
FLEET_LIST_FIELDS = ("dns_names", "emails", "uris")
FLEET_BOOL_FIELDS = ("exportable", "include_root")
FLEET_FIELDS = tuple(f for f in operations.IssueRequest.FIELDS if f != "sign")
_MAX_FLEET_FILE = 64 * 1024 * 1024  # about half a million rows
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _fleet_cell(path: str, line: int, field: str, text: str) -> Any:
    """A CSV cell as the JSON value the request takes: lists are space-separated (no DNS name,
    email address or URI holds a space), booleans true/false, months a whole number."""
    if field in FLEET_LIST_FIELDS:
        return text.split()
    if field in FLEET_BOOL_FIELDS:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise UsageError(f"{path} line {line}, field {field!r}: {text!r} is not true or false")
    if field == "validity_months":
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"{path} line {line}, field {field!r}: {text!r} is not a whole number") from None
    return text


def _fleet_rows(path: str, text: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, fields) per row; CSV with a header row, or JSON lines (one object a line)."""
    import csv
    import io

    rows: list[tuple[int, dict[str, Any]]] = []
    first = text.lstrip()[:1]
    if path.lower().endswith((".jsonl", ".ndjson", ".json")) or first == "{":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise UsageError(f"{path} line {number}: not a JSON object ({getattr(exc, 'msg', exc)})") from None
            except RecursionError:  # hostile nesting; a request is one flat object
                raise UsageError(f"{path} line {number}: not a JSON object (nested too deeply)") from None
            if not isinstance(row, dict):
                raise UsageError(f"{path} line {number}: a JSON line must be an object, got {type(row).__name__}")
            unknown = sorted(set(row) - set(FLEET_FIELDS))
            if unknown:
                raise UsageError(f"{path} line {number}, field {unknown[0]!r}: unknown field "
                                 f"(known: {', '.join(FLEET_FIELDS)})")
            rows.append((number, {k: v for k, v in row.items() if v is not None}))
        return rows
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
        unknown = [h for h in header if (h or "").strip() not in FLEET_FIELDS]
        if unknown:
            raise UsageError(f"{path} line 1, column {unknown[0]!r}: unknown column "
                             f"(known: {', '.join(FLEET_FIELDS)})")
        if "name" not in [h.strip() for h in header]:
            raise UsageError(f"{path} line 1: the header row has no 'name' column (CSV needs a header row: "
                             f"{', '.join(FLEET_FIELDS)})")
        for raw in reader:
            number = reader.line_num
            if None in raw:  # more cells than the header has columns
                raise UsageError(f"{path} line {number}: {len(header) + len(raw[None])} cells for "
                                 f"{len(header)} columns")
            cells = {k.strip(): (v or "").strip() for k, v in raw.items()}
            if not any(cells.values()):
                continue
            rows.append((number, {k: _fleet_cell(path, number, k, v) for k, v in cells.items() if v}))
    except csv.Error as exc:
        raise UsageError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    return rows


def read_fleet(path: str, defaults: dict[str, Any]) -> list[operations.IssueRequest]:
    """Every row of a fleet file as an IssueRequest, or a UsageError naming the line and the field.
    `defaults`: the options given on the command line, for the fields a row leaves out. Nothing
    is sent to the vault until the whole file has been read and checked."""
    from kvca_core.events import NAME_RE
    from kvca_core.model import KeySpec
    from kvca_core.signing import Profile, parse_subject

    data = _read_file(path, "input file", _MAX_FLEET_FILE)
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's CSV may start with a byte-order mark
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    requests: list[operations.IssueRequest] = []
    seen: dict[str, int] = {}
    for number, row in _fleet_rows(path, text):
        fields = {**defaults, **row}
        where = f"{path} line {number}"
        name = fields.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise UsageError(f"{where}, field 'name': {str(name)[:130]!r} is not a Key Vault certificate name "
                             f"(1-127 letters, digits and '-')")
        if name in seen:
            raise UsageError(f"{where}, field 'name': {name!r} is already on line {seen[name]}")
        seen[name] = number
        try:
            request = operations.IssueRequest.from_mapping(fields)
        except KvcaError as exc:
            raise UsageError(f"{where}: {exc.message}") from None
        # The parts a request can get wrong on its own, checked now rather than row by row in
        # the vault (the issue operation checks them again, with the CA's policy).
        for field, check in (("key", KeySpec.parse), ("profile", Profile.parse), ("subject", parse_subject)):
            value = getattr(request, field)
            if value:
                try:
                    check(value)
                except KvcaError as exc:
                    raise UsageError(f"{where}, field {field!r}: {exc.message}") from None
        if not (request.dns_names or request.subject or getattr(request, "emails", ()) or
                getattr(request, "uris", ())):
            raise UsageError(f"{where}: give a subject or at least one of dns_names, emails, uris")
        requests.append(request)
    if not requests:
        raise UsageError(f"{path}: no requests in the file (CSV needs a header row, then one row per certificate)")
    return requests


# ---------------------------------------------------------------------------
# Output


def to_jsonable(value):
    """Datetimes, enums, tuples and bytes -> JSON-ready values, inside a document's body."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


class Output:
    """Standard output and error of one run. A reader that goes away (`kvca list | head`) closes
    the pipe: what is still to be printed is dropped, the command itself runs to its end (an
    operation is never cut short by its output), and the exit code says so (EXIT_CLOSED)."""

    def __init__(self, as_json: bool, stdout=None, stderr=None) -> None:
        self.as_json = as_json
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.closed = False  # standard output's reader went away

    @property
    def is_terminal(self) -> bool:
        return hasattr(self.stdout, "isatty") and self.stdout.isatty()

    def json(self, document: dict[str, Any], *, indent: int | None = 2) -> None:
        """One document of kvca's JSON contract (kvca_core/jsonshape.py): it says what it is."""
        if document.get("schema_version") != jsonshape.SCHEMA_VERSION or "object" not in document:
            raise TypeError("a --json document must come from jsonshape.document()")
        self.write(json.dumps(to_jsonable(document), indent=indent, sort_keys=True) + "\n")

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def write(self, text: str) -> None:
        self._to_stdout(lambda: self.stdout.write(text))

    def binary(self, data: bytes) -> None:
        """Bytes to standard output, as they are (export-chain's DER and PKCS#7)."""
        def write() -> None:
            self.stdout.flush()
            getattr(self.stdout, "buffer", self.stdout).write(data)
        self._to_stdout(write)

    def flush(self) -> None:
        self._to_stdout(self.stdout.flush)

    def _to_stdout(self, write: Callable[[], object]) -> None:
        if not self.closed and not _written(self.stdout, write):
            self.closed = True

    def error(self, text: str) -> None:
        _written(self.stderr, lambda: self.stderr.write(text))

    def warn(self, text: str) -> None:
        self.error(f"kvca: warning: {text}\n")


def _written(stream, write: Callable[[], object]) -> bool:
    """`write()` to `stream`; False when its reader has gone (the pipe is closed), which is then
    silenced (`_silence`) rather than raised: a closed pipe never cuts a command short."""
    try:
        write()
        return True
    except BrokenPipeError:
        _silence(stream)
        return False


def _silence(stream) -> None:
    """Point a closed pipe's file descriptor at /dev/null, so that Python's own flush at exit does
    not fail again and print "Exception ignored ... BrokenPipeError" (the Python documentation's
    advice: https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _date(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def _print_ca(out: Output, info: ca_ops.CAInfo) -> None:
    rows = [
        ("CA", info.name),
        ("subject", info.subject),
        ("issuer", info.issuer),
        ("key", info.key + ("" if info.key_exportable is None
                            else (", exportable" if info.key_exportable else ", not exportable"))),
        ("origin", info.origin),
        ("valid", f"{_date(info.not_before)} .. {_date(info.not_after)}"),
        ("path length", "unlimited" if info.path_length is None else str(info.path_length)),
        ("name constraints", ", ".join(info.permitted_dns) if info.permitted_dns else "none"),
    ]
    if info.excluded_dns:
        rows.append(("excluded names", ", ".join(info.excluded_dns)))
    rows += [
        ("serial", info.serial),
        ("SHA-256", info.sha256),
        ("chain", " <- ".join(info.chain) if info.chain else "(self-signed)"),
        ("root", f"{info.root_subject} (until {_date(info.root_not_after)})" if info.root_subject else "not held"),
        ("issued, still valid", str(info.issued_valid)),
        ("version", info.version or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.line(f"{key + ':':<{width + 1}} {value}")
    for note in info.notes:
        out.line(f"note: {note}")


def _print_outcome(out: Output, result: operations.Outcome) -> None:
    """One line: name, action, version, serial, not-after and the reason; warnings to stderr."""
    parts = [f"{result.name}: {result.action}"]
    if result.version:
        parts.append(f"version {result.version}")
    if result.serial:
        parts.append(f"serial {result.serial}")
    if result.not_after:
        parts.append(f"valid until {_date(result.not_after)}")
    out.line(", ".join(parts) + (f" ({result.reason})" if result.reason else ""))
    for warning in result.warnings:
        out.warn(f"{result.name}: {warning}")


def urgency_style(info: operations.CertificateInfo) -> str:
    """The colour of a `kvca list` row. 30 days is Key Vault's NearExpiry point and the default
    renewal window: a certificate inside it should have been renewed already, so it is yellow;
    inside its last week renewal has evidently failed: red."""
    if info.state in ("expired", "disabled") or (info.days_left is not None and info.days_left < 0):
        return "bold red"
    if info.state == "pending" or info.days_left is None:
        return "cyan"
    if info.days_left <= 7:
        return "red"
    if info.state == "due" or info.days_left <= 30:
        return "yellow"
    return "green"


_LIST_HEADER = ("NAME", "SUBJECT", "SANS", "CA", "NOT AFTER", "DAYS LEFT", "STATE")


def _print_inventory(out: Output, items: Sequence[operations.CertificateInfo]) -> None:
    rows = [(i.name, i.subject, ", ".join(i.sans), i.ca,
             i.not_after.strftime("%Y-%m-%d") if i.not_after else "-",
             "" if i.days_left is None else str(i.days_left), i.state) for i in items]
    if out.is_terminal:
        from rich.console import Console
        from rich.table import Table

        table = Table()
        for column in _LIST_HEADER:
            table.add_column(column, justify="right" if column == "DAYS LEFT" else "left")
        for item, row in zip(items, rows):
            table.add_row(*row, style=urgency_style(item))
        Console(file=out.stdout).print(table)
        return
    # Not a terminal (a pipe, a log): plain aligned columns, no colour, no wrapping.
    widths = [max(len(cells[i]) for cells in [_LIST_HEADER, *rows]) for i in range(len(_LIST_HEADER))]
    for cells in [_LIST_HEADER, *rows]:
        out.line("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
    if not rows:
        out.line("(no managed certificates)")


# ---------------------------------------------------------------------------
# Commands (each one call into kvca_core)


async def _cmd_ca_create(ctx, args, out: Output) -> int:
    info = await ca_ops.create_ca(ctx, args.name, subject=args.subject, key=args.key, years=args.years,
                                  permitted_dns=tuple(args.permitted_dns), exportable=args.exportable,
                                  policy=_policy_argument(args.policy, args.name),
                                  root_subject=args.root_subject, root_years=args.root_years)
    out.json(jsonshape.document("ca", {"action": "created", **info.to_dict()})) if out.as_json else _print_ca(out, info)
    return EXIT_OK


def _import_inputs(args) -> dict[str, Any]:
    """Read the files; ask for a password when a key needs one and none was given."""
    if args.pfx and (args.cert or args.key or args.chain):
        raise UsageError("ca import: give either --pfx or --cert/--key, not both")
    if not args.pfx and not (args.cert and args.key):
        raise UsageError("ca import: give --pfx FILE, or --cert FILE and --key FILE")
    password = _read_password(args.password_file) if args.password_file else None
    # Without --password-file, ask on a terminal (never on a pipe: scripts give the file).
    prompt = password is None and sys.stdin.isatty()
    if args.pfx:
        pfx = _read_file(args.pfx, "PFX file")
        if prompt and ca_ops.pfx_needs_password(pfx):
            password = _ask_password(args.pfx)
        return dict(pfx=pfx, password=password)
    key_pem = _read_file(args.key, "key file")
    if prompt and ca_ops.key_is_encrypted(key_pem):
        password = _ask_password(args.key)
    return dict(cert_pem=_read_file(args.cert, "certificate file"), key_pem=key_pem,
                chain_pem=_read_file(args.chain, "chain file") if args.chain else None, password=password)


async def _cmd_ca_import(ctx, args, out: Output, inputs: dict[str, Any]) -> int:
    info = await ca_ops.import_ca(ctx, args.name, **inputs, policy=_policy_argument(args.policy, args.name))
    inputs.clear()
    out.json(jsonshape.document("ca", {"action": "imported", **info.to_dict()})) if out.as_json else _print_ca(out, info)
    return EXIT_OK


async def _cmd_ca_show(ctx, args, out: Output) -> int:
    info = await ca_ops.show_ca(ctx, args.name)
    out.json(jsonshape.of(info)) if out.as_json else _print_ca(out, info)
    return EXIT_OK


async def _cmd_ca_list(ctx, args, out: Output) -> int:
    infos = await ca_ops.list_cas(ctx)
    if out.as_json:
        out.json(jsonshape.document("ca_list", {"cas": [i.to_dict() for i in infos]}))
        return EXIT_OK
    if not infos:
        out.line("(no CAs in the vault: `kvca ca create` or `kvca ca import` makes one)")
    for info in infos:
        constraints = ", ".join(info.permitted_dns) or "no name constraints"
        out.line(f"{info.name}  {info.subject}  {info.key}  until {_date(info.not_after)}  "
                 f"pathlen {info.path_length if info.path_length is not None else '-'}  {constraints}  "
                 f"{info.issued_valid} valid issued")
    return EXIT_OK


async def _default_ca(ctx) -> str:
    """`--ca` left out: the vault's only CA, or a usage error listing the choices."""
    names = await ca_ops.ca_names(ctx)  # names only: no CA's certificate or secret is read
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError("request: the vault holds no CA; create or import one first (`kvca ca create`)")
    raise UsageError(f"request: the vault holds {len(names)} CAs ({', '.join(names)}); choose one with --ca")


async def _cmd_request(ctx, args, out: Output) -> int:
    if args.from_file:
        return await _cmd_request_many(ctx, args, out)
    if not args.name:
        raise UsageError("kvca request: the following arguments are required: NAME (or --from FILE for many)")
    if not args.dns and not args.ip and not args.subject and not args.email and not args.uri:
        raise UsageError("request: give at least one --dns name, --email or --uri, or --subject")
    if args.ip:
        # The key and its CSR are made inside Key Vault, whose certificate policy can ask
        # only for DNS names, emails and UPNs (x509_props.sans); kvca signs what the CSR
        # asks for, so there is no honest way to put an IP address in the certificate.
        raise UsageError(f"request: --ip {args.ip[0]!r}: Key Vault certificate policies cannot request IP "
                         f"address SANs (only DNS names, emails and UPNs); use a DNS name")
    fields = {"name": args.name, "ca": args.ca or _ONLY_CA, "dns_names": list(args.dns),
              "subject": args.subject, **_request_defaults(args)}
    if args.email:
        fields["emails"] = list(args.email)
    if args.uri:
        fields["uris"] = list(args.uri)
    # The request is checked before the vault is asked for its only CA: a malformed one is a
    # usage error (exit 2) that reached nothing.
    request = operations.IssueRequest.from_mapping(fields)
    if request.ca == _ONLY_CA:
        request = dataclasses.replace(request, ca=await _default_ca(ctx))
    result = await operations.issue(ctx, request, sign=args.sign)
    out.json(jsonshape.of(result)) if out.as_json else _print_outcome(out, result)
    return _outcome_exit(result)


def _request_defaults(args) -> dict[str, Any]:
    """The options given on the command line; those left out take the request's own defaults."""
    given = {"ca": args.ca, "profile": args.profile, "key": args.key, "validity_months": args.months,
             "exportable": args.exportable, "include_root": args.include_root}
    return {k: v for k, v in given.items() if v is not None}


# A placeholder for rows that name no CA, replaced by the vault's only CA once the file is known
# to be good (no vault call is made for a file that is refused).
_ONLY_CA = "(the vault's only CA)"


async def _cmd_request_many(ctx, args, out: Output) -> int:
    if args.name:
        raise UsageError(f"request: give NAME or --from FILE, not both (got {args.name!r})")
    per_row = [flag for flag, value in (("--dns", args.dns), ("--ip", args.ip), ("--subject", args.subject),
                                        ("--email", args.email), ("--uri", args.uri)) if value]
    if per_row:
        raise UsageError(f"request --from: {per_row[0]} belongs in the file, one value per row "
                         f"(columns dns_names, emails, uris, subject)")
    requests = read_fleet(args.from_file, {"ca": _ONLY_CA, **_request_defaults(args)})
    if any(r.ca == _ONLY_CA for r in requests):
        only = await _default_ca(ctx)
        requests = [dataclasses.replace(r, ca=only) if r.ca == _ONLY_CA else r for r in requests]
    outcomes = await _issue_many_with_progress(ctx, requests, out, sign=args.sign)
    for outcome in outcomes:
        if out.as_json:
            out.json(jsonshape.of(outcome), indent=None)  # JSON lines: one outcome document a line
        else:
            _print_outcome(out, outcome)
    failed = sum(1 for o in outcomes if o.action == operations.FAILED)
    if not out.as_json:
        counts: dict[str, int] = {}
        for o in outcomes:
            counts[o.action] = counts.get(o.action, 0) + 1
        out.line(f"request: {len(outcomes)} rows: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                 + ("; run the same command again to retry the failed rows" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


async def _issue_many_with_progress(ctx, requests, out: Output, *, sign: bool) -> list:
    """operations.issue_many, with a progress bar on stderr when it is a terminal."""
    if hasattr(out.stderr, "isatty") and out.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("request"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      TimeElapsedColumn(), transient=True, console=_console(out), redirect_stdout=False,
                      redirect_stderr=False) as bar:
            task = bar.add_task("", total=len(requests))
            return list(await operations.issue_many(ctx, requests, sign=sign,
                                                    progress=_progress_callback(bar, task)))
    return list(await operations.issue_many(ctx, requests, sign=sign))


async def _cmd_sign(ctx, args, out: Output) -> int:
    result = await operations.sign_pending(ctx, args.name)
    out.json(jsonshape.of(result)) if out.as_json else _print_outcome(out, result)
    return _outcome_exit(result)


async def _cmd_renew(ctx, args, out: Output) -> int:
    # A person asking explicitly renews now: a renewal completed moments ago is an error saying so
    # (the operation raises Conflict, exit 1), overridden by --force. --if-due asks the sweep's
    # question instead, and "not due" is then the answer, not a failure.
    if args.force and args.if_due:
        raise UsageError("renew: --force and --if-due contradict each other")
    result = await operations.renew(ctx, args.name, now=not args.if_due, force=args.force)
    out.json(jsonshape.of(result)) if out.as_json else _print_outcome(out, result)
    if not args.if_due and result.action == operations.SKIPPED:
        # Never a silent exit 0 without a new version (the operation should have raised).
        return EXIT_FAILED
    return _outcome_exit(result)


async def _cmd_cancel(ctx, args, out: Output) -> int:
    result = await operations.cancel(ctx, args.name)
    out.json(jsonshape.of(result)) if out.as_json else _print_outcome(out, result)
    return _outcome_exit(result)


def _outcome_exit(result: operations.Outcome) -> int:
    # An outcome that reports failure (rather than raising) still fails the command.
    return EXIT_FAILED if result.action == operations.FAILED else EXIT_OK


async def _cmd_sweep(ctx, args, out: Output) -> int:
    # The bar goes to stderr (stdout stays the summary), so it is stderr that must be a terminal.
    if not out.as_json and hasattr(out.stderr, "isatty") and out.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      TimeElapsedColumn(), transient=True, console=_console(out)) as bar:
            task = bar.add_task("", total=None)
            summary = await operations.sweep(ctx, dry_run=args.dry_run,
                                             progress=_progress_callback(bar, task))
    else:
        summary = await operations.sweep(ctx, dry_run=args.dry_run)
    if out.as_json:
        out.json(jsonshape.of(summary))
    else:
        _print_summary(out, summary)
    return EXIT_FAILED if summary.failed else EXIT_OK


def _console(out: Output):
    from rich.console import Console

    return Console(file=out.stderr)


def _progress_callback(bar, task) -> Callable[..., None]:
    """operations.sweep calls progress(outcome) once per managed certificate, as it finishes
    (the total is not known while the vault is listed page by page)."""
    def progress(outcome) -> None:
        bar.update(task, advance=1, description=f"{outcome.name}: {outcome.action}")
    return progress


def _print_summary(out: Output, summary: operations.SweepSummary) -> None:
    counts = ", ".join(f"{k} {getattr(summary, k)}" for k in ("scanned", "managed", "signed", "renewed",
                                                                "skipped", "failed"))
    out.line(("dry run, nothing changed: " if summary.dry_run else "") + f"sweep: {counts}")
    for outcome in summary.outcomes:
        if outcome.action not in (operations.SKIPPED, operations.FAILED):
            out.line(f"  {outcome.name}: {outcome.action}" + (f" ({outcome.reason})" if outcome.reason else ""))
    for name, reason in summary.failures:
        out.line(f"  {name}: failed ({reason})")
    _warn_cas(out, summary.ca_warnings)


def _warn_cas(out: Output, warnings) -> None:
    """CAs nearing expiry (kvca_core/cawatch.py), on stderr: stdout stays the command's output."""
    for warning in warnings:
        out.warn(f"{warning.message} (hint: {warning.hint})")


async def _cmd_list(ctx, args, out: Output) -> int:
    report = await operations.inventory_report(ctx, expiring_within_days=args.expiring_within)
    _warn_cas(out, report.ca_warnings)
    if out.as_json:
        out.json(jsonshape.of(report))
    else:
        _print_inventory(out, report.certificates)
    return EXIT_OK


def _print_description(out: Output, desc: Any) -> None:
    info = desc.info
    rows = [
        ("certificate", info.name), ("subject", info.subject or "-"), ("issuer", desc.issuer or "-"),
        ("SANs", ", ".join(info.sans) or "-"), ("CA", info.ca or "-"),
        ("valid", f"{_date(info.not_before)} .. {_date(info.not_after)}"
                  + (f" ({info.days_left} days left)" if info.days_left is not None else "")),
        ("state", info.state), ("renews from", _date(desc.renew_at)), ("serial", info.serial or "-"),
        ("SHA-256", desc.sha256 or "-"), ("version", info.version or "-"),
        ("chain", " <- ".join(desc.chain) or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in sorted(desc.tags.items())) or "-"),
        ("pending", desc.pending or "none"),
        ("managed", "yes" if desc.managed else f"no: {desc.why_not_managed}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.line(f"{key + ':':<{width + 1}} {value}")


async def _cmd_show(ctx, args, out: Output) -> int:
    result = await operations.describe(ctx, args.name)
    out.json(jsonshape.of(result)) if out.as_json else _print_description(out, result)
    return EXIT_OK


async def _cmd_export_chain(ctx, args, out: Output) -> int:
    if args.include_root and args.which not in (None, "both"):
        raise UsageError(f"export-chain: --include-root contradicts --which {args.which}")
    which = "both" if args.include_root else (args.which or "intermediate")
    data = await ca_ops.export_trust(ctx, args.name, which, args.format)
    count = len(_certificates_in(data, args.format))
    if args.out:
        _write_public_file(args.out, data)
        if out.as_json:
            out.json(jsonshape.document("trust_export", {"ca": args.name, "file": args.out, "which": which,
                                                         "format": args.format, "certificates": count}))
        else:
            out.line(f"wrote {count} certificate(s) of CA '{args.name}' ({which}, {args.format}) to {args.out}")
    elif out.as_json:
        out.json(jsonshape.document("trust_export", {
            "ca": args.name, "which": which, "format": args.format, "certificates": count,
            **({"pem": data.decode("ascii")} if args.format == "pem" else {"base64": data})}))
    elif args.format == "pem":
        out.write(data.decode("ascii"))
    elif out.is_terminal:
        raise UsageError(f"export-chain: --format {args.format} is binary; give --out FILE (or redirect "
                         f"standard output)")
    else:
        out.binary(data)
    return EXIT_OK


def _certificates_in(data: bytes, fmt: str) -> list:
    """Parse what export-chain is about to hand out (its count is reported)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import pkcs7

    if fmt == "pem":
        return x509.load_pem_x509_certificates(data)
    if fmt == "p7b":
        return pkcs7.load_der_pkcs7_certificates(data)
    return [x509.load_der_x509_certificate(data)]


async def _cmd_download(ctx, args, out: Output) -> int:
    password = None
    if args.password_file:
        if args.format != "pfx":
            raise UsageError("download: --password-file applies to --format pfx only (a PEM key is written "
                             "unencrypted, mode 0600)")
        password = _read_password(args.password_file).encode("utf-8")
        if not password:
            raise UsageError(f"password file {args.password_file!r} is empty; leave --password-file out for a "
                             f"PFX without a password")
    data = await ca_ops.download(ctx, args.name, args.format, password=password)
    try:
        write_private_file(args.out, data, force=args.force)
    finally:
        del data, password
    out.warn(f"{args.out} contains the private key of '{args.name}' (mode 0600): keep it safe and "
             "delete it when done")
    if out.as_json:
        out.json(jsonshape.document("download", {"name": args.name, "file": args.out, "format": args.format,
                                                 "mode": "0600", "encrypted": bool(args.password_file)}))
    else:
        out.line(f"wrote '{args.name}' ({args.format}, key and chain) to {args.out}")
    return EXIT_OK


_COMMANDS = {
    ("ca", "create"): _cmd_ca_create, ("ca", "show"): _cmd_ca_show, ("ca", "list"): _cmd_ca_list,
    ("request", None): _cmd_request, ("sign", None): _cmd_sign, ("renew", None): _cmd_renew,
    ("sweep", None): _cmd_sweep, ("list", None): _cmd_list, ("show", None): _cmd_show,
    ("export-chain", None): _cmd_export_chain, ("download", None): _cmd_download,
    ("cancel", None): _cmd_cancel,
}


# --- issuance policy (kvca_core/capolicy.py) --------------------------------
_POLICY_HELP = "the CA's issuance policy: a JSON file, or the JSON itself (starting with '{')"


def _add_policy_commands(ca_sub, add) -> None:
    """`kvca ca policy show|set`, and --policy on `ca create` and `ca import`. Not `--json TEXT`
    as a policy's spelling: --json is every command's output switch."""
    for command in ("create", "import"):
        ca_sub.choices[command].add_argument("--policy", metavar="FILE|JSON", help=_POLICY_HELP + (
            "; default: KVCA_ISSUANCE_POLICY's policy for the CA, else its name constraints as allowed "
            "domains, else none (it issues nothing until `kvca ca policy set`)"))
    policy = add(ca_sub, "policy", "show or set the issuance policy stored with a CA")
    policy_sub = policy.add_subparsers(dest="policy_command", metavar="POLICY_COMMAND", parser_class=_Parser)
    policy_sub.required = True
    p = add(policy_sub, "show", "the policy a CA signs under now, and where it comes from")
    p.add_argument("name", metavar="NAME")
    p = add(policy_sub, "set", "validate a policy and store it with the CA (in force at the next signing)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--policy", metavar="FILE|JSON", help=_POLICY_HELP + "; the whole policy (fields left out "
                                                                     "take their defaults)")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one field of the policy in force (or of --policy), e.g. allowed_domains=a.example,"
                        "b.example  max_validity_days=90  allow_wildcards=false; repeatable")


def _policy_argument(value: str | None, ca: str, assignments: Sequence[str] = ()) -> Any:
    """--policy FILE|JSON (and --set FIELD=VALUE) -> the policy mapping, or None. A policy that is
    not valid JSON or not a valid policy is a bad input file: a usage error (exit 2), before any call."""
    if value is None:
        return None
    mapping = _policy_json(value)
    if not isinstance(mapping, dict):
        raise UsageError("--policy must hold a JSON object")
    return _checked_policy(ca, mapping, assignments)


def _checked_policy(ca: str, mapping: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    from kvca_core import capolicy

    mapping = dict(capolicy.policy_fields(mapping))
    for assignment in assignments:
        _assign(mapping, assignment)
    try:
        capolicy.parse_policy(mapping, what=f"CA '{ca}': issuance policy")
    except KvcaError as exc:
        raise UsageError(str(exc)) from None
    return mapping


def _policy_json(value: str) -> Any:
    """What --policy holds: the JSON itself when it starts with '{', else a file's JSON."""
    text = value if value.lstrip().startswith("{") else None
    where = "--policy"
    if text is None:
        where = f"policy file {value!r}"
        try:
            text = _read_file(value, "policy file", limit=64 * 1024).decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{where} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def _assign(mapping: dict[str, Any], assignment: str) -> None:
    """FIELD=VALUE: VALUE as JSON when it parses (true, 90, ["a"]), else a list field's
    comma-separated entries, else the text itself. The field is checked with the whole policy."""
    from kvca_core.signing.policy import IssuancePolicy

    field, sep, raw = assignment.partition("=")
    field = field.strip()
    if not sep or not field:
        raise UsageError(f"--set {assignment!r} is not FIELD=VALUE (e.g. allowed_domains=corp.internal)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.strip()
    default = IssuancePolicy.__dataclass_fields__.get(field)
    if default is not None and isinstance(default.default, tuple) and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    mapping[field] = value


def _print_policy(out: Output, effective) -> None:
    out.line(f"CA:     {effective.ca}")
    out.line(f"source: {effective.source_text}")
    if effective.policy is None:
        out.line(f"policy: none: the CA issues nothing (hint: kvca ca policy set {effective.ca} --policy FILE)")
        return
    out.line("policy:")
    for key, value in effective.policy.to_mapping().items():
        shown = ", ".join(value) if isinstance(value, list) else json.dumps(value)
        out.line(f"  {key}: {shown if shown else '(none)'}")


async def _cmd_ca_policy(ctx, args, out: Output) -> int:
    from kvca_core import capolicy

    if args.policy_command == "show":
        effective = await capolicy.show_policy(ctx, args.name)
    else:
        if args.policy is None and not args.assignments:
            raise UsageError("ca policy set: give --policy FILE|JSON, or --set FIELD=VALUE")
        if args.policy is not None:
            mapping = _policy_argument(args.policy, args.name, args.assignments)
        else:  # --set alone: a change to the policy in force (or to the field defaults)
            current = await capolicy.show_policy(ctx, args.name)
            mapping = _checked_policy(args.name, current.policy.to_mapping() if current.policy else {},
                                      args.assignments)
        effective = await capolicy.set_policy(ctx, args.name, mapping)
    if out.as_json:
        out.json(jsonshape.of(effective))
    else:
        _print_policy(out, effective)
    return EXIT_OK


_COMMANDS[("ca", "policy")] = _cmd_ca_policy
# --- CA rotation (kvca_core/rotation.py) -----------------------------------
def _add_ca_rotate(ca_sub, add) -> None:
    p = add(ca_sub, "rotate", "a new intermediate version with a new key made in Key Vault, signed by the same "
                              "root; the sweep moves the leaves onto it (KVCA_ROTATION_WINDOW_HOURS)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--years", type=_positive, default=None,
                   help="validity of the new intermediate (default: the current one's, ending no later than the root)")


async def _cmd_ca_rotate(ctx, args, out: Output) -> int:
    from kvca_core import rotation

    result = await rotation.rotate_ca(ctx, args.name, years=args.years)
    if out.as_json:
        out.json(jsonshape.of(result))
        return EXIT_OK
    if result.previous_version:
        out.line(f"rotated CA '{args.name}': version {result.previous_version} (serial {result.previous_serial}) "
                 f"-> version {result.ca.version} (serial {result.ca.serial})")
    _print_ca(out, result.ca)
    return EXIT_OK


_COMMANDS[("ca", "rotate")] = _cmd_ca_rotate


# --- revocation (kvca_core/revocation.py) ----------------------------------
def _add_revocation_commands(sub, add) -> None:
    from kvca_core.signing.crl import REASONS

    p = add(sub, "revoke", "revoke a certificate version: recorded in the vault, listed on its CA's CRL")
    p.add_argument("name", metavar="NAME")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", metavar="V", help="the version to revoke (default: the current one)")
    which.add_argument("--serial", metavar="S", help="the version whose certificate has this serial (hex)")
    p.add_argument("--reason", required=True, metavar="REASON", help=f"RFC 5280 reason: {', '.join(REASONS)}")
    p = add(sub, "crl", "sign a CA's CRL now and write it (PEM)")
    p.add_argument("name", metavar="CA")
    p.add_argument("--out", metavar="FILE", required=True)
    p.add_argument("--root", action="store_true",
                   help="the root's CRL over the intermediate, signed with the root's key (your identity "
                        "needs Crypto User on CA-root; the app has none), valid for a year")
    p.add_argument("--revoke-intermediate", metavar="REASON", help="with --root: list the intermediate as revoked")
    p = add(sub, "ocsp-responder", "issue the CA's delegated OCSP responder certificate CA-ocsp (needs KVCA_OCSP_URL)")
    p.add_argument("name", metavar="CA")


async def _cmd_revoke(ctx, args, out: Output) -> int:
    from kvca_core import revocation

    result = await revocation.revoke(ctx, args.name, reason=args.reason, version=args.version, serial=args.serial)
    if out.as_json:
        out.json(jsonshape.of(result))
    else:
        out.line(f"{result.name}: {result.action} (version {result.version}, serial {result.serial}, "
                 f"{result.reason}, {result.revoked_at.isoformat()}); listed on CA '{result.ca}''s CRL")
        if result.published:
            out.line(f"CRL published: {result.published}")
        if result.publish_error:
            out.line(f"CRL not published ({result.publish_error}); the revocation stands, and the CRL "
                     f"timer publishes it")
    return EXIT_OK


async def _cmd_crl(ctx, args, out: Output) -> int:
    from kvca_core import revocation

    if args.revoke_intermediate and not args.root:
        raise UsageError("crl: --revoke-intermediate needs --root")
    if args.root:
        crl = await revocation.sign_root_crl(ctx, args.name, revoke_intermediate=args.revoke_intermediate)
    else:
        crl = await revocation.publish_crl(ctx, args.name)
    _write_public_file(args.out, revocation.crl_pem(crl).encode("ascii"))  # PEM: what nginx's ssl_crl and mosquitto read
    entries = len(crl)
    if out.as_json:
        out.json(jsonshape.document("crl", {"ca": args.name, "root": args.root, "file": args.out,
                                            "entries": entries, "next_update": crl.next_update_utc.isoformat()}))
    else:
        out.line(f"wrote the {'root ' if args.root else ''}CRL of CA '{args.name}' ({entries} entries, next "
                 f"update {crl.next_update_utc:%Y-%m-%d %H:%M}) to {args.out}")
    return EXIT_OK


async def _cmd_ocsp_responder(ctx, args, out: Output) -> int:
    from kvca_core import revocation

    result = await revocation.ensure_responder(ctx, args.name)
    out.json(jsonshape.of(result)) if out.as_json else _print_outcome(out, result)
    return _outcome_exit(result)


_COMMANDS.update({("revoke", None): _cmd_revoke, ("crl", None): _cmd_crl,
                  ("ocsp-responder", None): _cmd_ocsp_responder})


# ---------------------------------------------------------------------------
# Running


def settings_for(vault: str | None, environ=None):
    env = dict(os.environ if environ is None else environ)
    if vault:
        if not vault.lower().startswith("https://"):
            raise UsageError(f"--vault {vault!r} must be an https:// URL (e.g. https://myvault.vault.azure.net)")
        env["KVCA_VAULT_URL"] = vault
    if not env.get("KVCA_VAULT_URL"):
        raise ConfigurationError("no vault URL: give --vault URL or set KVCA_VAULT_URL",
                                 subject="settings", hint="e.g. --vault https://myvault.vault.azure.net")
    return Settings.from_env(env)


async def _run(args, out: Output, credential=None) -> int:
    settings = settings_for(getattr(args, "vault", None))
    command = (args.command, getattr(args, "ca_command", None))
    log.debug("kvca cli command=%s vault=%s", " ".join(c for c in command if c), settings.vault_name)
    inputs = _import_inputs(args) if command == ("ca", "import") else None
    async with Context.open(settings, credential=credential) as ctx:
        try:
            if inputs is not None:
                return await _cmd_ca_import(ctx, args, out, inputs)
            handler = _COMMANDS[command]
            return await handler(ctx, args, out)
        except KvcaError as exc:
            # Errors from deep inside (the signing engine's steps) may not say which object they
            # are about; the command line knows, and the one error line must name it.
            if exc.subject is None and not isinstance(exc, (UsageError, ConfigurationError)):
                exc.subject = _object_of(args)
            if isinstance(exc, InvalidRequest) and not ctx.vault.transport.requests_sent:
                # Malformed before anything was sent to Key Vault: the command line is what is
                # wrong (a name, a subject, a number of years), a usage error. The same kind
                # after the vault was read (a malformed CSR in a pending request, a request Key
                # Vault refused) is the operation failing: exit 1.
                exc.exit_code = EXIT_USAGE
            raise


def _object_of(args) -> str | None:
    name = getattr(args, "name", None)
    if not name:
        return None
    if args.command in ("ca", "export-chain"):
        return f"CA '{name}'"
    return f"certificate '{name}'"


def exit_code(error: BaseException) -> int:
    """Each error kind carries its exit code (errors.py): usage errors and missing settings,
    the user's to fix before anything ran, are 2; anything else that failed is 1."""
    return error.exit_code if isinstance(error, KvcaError) else EXIT_FAILED


def _report(out: Output, error: BaseException, debug: bool) -> int:
    code = exit_code(error)
    if isinstance(error, KvcaError):
        text = str(error)
    else:
        text = f"unexpected {type(error).__name__}" + ("" if debug else " (run with --debug for details)")
    # One line, whatever the message held.
    text = " ".join(text.split())
    if debug:
        import traceback

        out.error("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    out.error(f"kvca: error: {text}\n")
    if out.as_json:
        body = error.to_dict() if isinstance(error, KvcaError) else {"error": "InternalError", "message": text}
        out.json(jsonshape.document("error", {**body, "exit_code": code}))
    return code


def _setup_logging(debug: bool) -> None:
    """--debug: everything, with timestamps. Otherwise only ERROR records: the operations log a
    WARNING line for every refusal (for the Functions log), and the CLI already says it in its
    one error line; warnings that matter to a user come back in the results and are printed."""
    root = logging.getLogger()
    if debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        root.setLevel(logging.DEBUG)
    elif not root.handlers:
        # The handler itself passes ERROR only: quiet_azure_logging (vault.py) sets the SDK's
        # loggers to WARNING for the Functions log, and azure-identity's multi-line "credential
        # failed" warning would otherwise come before the CLI's one error line, which says it.
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.ERROR)
        handler.setFormatter(logging.Formatter("kvca: %(levelname)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None, *, credential=None) -> int:
    """The console script. Returns the exit code (setuptools' wrapper passes it to sys.exit).

    `credential` is for in-process callers that already hold one; the command
    line uses DefaultAzureCredential, as the Functions app does.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    debug = "--debug" in argv
    out = Output(as_json)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, or argparse's own exit
            return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
        as_json = bool(getattr(args, "json", False))
        debug = bool(getattr(args, "debug", False))
        out = Output(as_json)
        _setup_logging(debug)
        code = asyncio.run(_run(args, out, credential))
    except KeyboardInterrupt:
        out.error("kvca: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # a write that did not go through Output (argparse's help, rich)
        _silence(out.stdout)
        return EXIT_CLOSED
    except BaseException as exc:  # noqa: BLE001 - the one place that turns any error into an exit code
        if isinstance(exc, SystemExit):
            raise
        code = _report(out, exc, debug)
    out.flush()
    # The reader went away: the command ran to its end, but not all of its output was read. A
    # failure keeps its own code; success says the output was cut short, as `git log | head` does.
    return EXIT_CLOSED if out.closed and code == EXIT_OK else code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
