"""What the CLI prints: one Output per run (standard output and error, a closed pipe handled once),
and the printers of each result."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import os
import sys
from typing import Any, Callable, Sequence

from kvca_core import jsonshape
from kvca_core.operations.results import FAILED, SKIPPED


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
        if _descriptor(self.stdout) is None:  # not a file (a test's capture)
            self._to_stdout(lambda: self.stdout.write(text))
        else:
            self.binary(text.encode(getattr(self.stdout, "encoding", None) or "utf-8"))

    def binary(self, data: bytes) -> None:
        """Bytes to standard output, as they are (export-chain's DER and PKCS#7). To a file, by the
        descriptor until every byte is taken: a pipe whose reader leaves takes part of a large write
        and says nothing (the count is short); only the next write gets EPIPE. Python's buffered
        stream hides that short count, and `kvca --json list | head -c 100` then exited 0 with a
        document cut short."""
        fd = _descriptor(self.stdout)

        def write() -> None:
            self.stdout.flush()
            if fd is None:
                getattr(self.stdout, "buffer", self.stdout).write(data)
                return
            rest = memoryview(data)
            while rest:
                rest = rest[os.write(fd, rest):]
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


def _descriptor(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


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


def date_text(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def print_ca(out: Output, info: Any) -> None:
    rows = [
        ("CA", info.name),
        ("subject", info.subject),
        ("issuer", info.issuer),
        ("key", info.key + ("" if info.key_exportable is None
                            else (", exportable" if info.key_exportable else ", not exportable"))),
        ("origin", info.origin),
        ("valid", f"{date_text(info.not_before)} .. {date_text(info.not_after)}"),
        ("path length", "unlimited" if info.path_length is None else str(info.path_length)),
        ("name constraints", ", ".join(info.permitted_dns) if info.permitted_dns else "none"),
    ]
    if info.excluded_dns:
        rows.append(("excluded names", ", ".join(info.excluded_dns)))
    rows += [
        ("serial", info.serial),
        ("SHA-256", info.sha256),
        ("chain", " <- ".join(info.chain) if info.chain else "(self-signed)"),
        ("root", f"{info.root_subject} (until {date_text(info.root_not_after)})" if info.root_subject else "not held"),
        ("issued, still valid", str(info.issued_valid)),
        ("version", info.version or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.line(f"{key + ':':<{width + 1}} {value}")
    for note in info.notes:
        out.line(f"note: {note}")


def print_outcome(out: Output, result: Any) -> None:
    """One line: name, action, version, serial, not-after and the reason; warnings to stderr."""
    parts = [f"{result.name}: {result.action}"]
    if result.version:
        parts.append(f"version {result.version}")
    if result.serial:
        parts.append(f"serial {result.serial}")
    if result.not_after:
        parts.append(f"valid until {date_text(result.not_after)}")
    out.line(", ".join(parts) + (f" ({result.reason})" if result.reason else ""))
    for warning in result.warnings:
        out.warn(f"{result.name}: {warning}")


def urgency_style(info: Any) -> str:
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


_LIST_HEADER = ("NAME", "SUBJECT", "SANS", "CA", "NOT AFTER", "DAYS LEFT", "STATE", "WHERE")


def print_inventory(out: Output, items: Sequence[Any]) -> None:
    rows = [(i.name, i.subject, ", ".join(i.sans), i.ca,
             i.not_after.strftime("%Y-%m-%d") if i.not_after else "-",
             "" if i.days_left is None else str(i.days_left), i.state, i.location) for i in items]
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


def print_summary(out: Output, summary: Any) -> None:
    counts = ", ".join(f"{k} {getattr(summary, k)}" for k in ("scanned", "managed", "signed", "renewed",
                                                                "skipped", "failed"))
    out.line(("dry run, nothing changed: " if summary.dry_run else "") + f"sweep: {counts}")
    for outcome in summary.outcomes:
        if outcome.action not in (SKIPPED, FAILED):
            out.line(f"  {outcome.name}: {outcome.action}" + (f" ({outcome.reason})" if outcome.reason else ""))
    for name, reason in summary.failures:
        out.line(f"  {name}: failed ({reason})")
    if summary.left or summary.unchecked:
        out.line(f"left for the next run ({date_text(summary.next_run)}): {summary.left} due or pending, "
                 f"{summary.unchecked} not checked; the budget of {summary.budget_seconds:g} s was spent "
                 f"(KVCA_SWEEP_BUDGET_SECONDS)")
    out.line(f"vault calls: {summary.reads}, at most {summary.peak_reads} in {summary.read_window:g} s "
             f"(cap {summary.read_cap}, KVCA_SWEEP_READ_SHARE)")
    warn_cas(out, summary.ca_warnings)
    if summary.devices_due:
        expired = sum(1 for d in summary.devices_due if d.state == "expired")
        first = ", ".join(d.name for d in summary.devices_due[:5])
        out.warn(f"{len(summary.devices_due)} device(s) have not re-enrolled ({expired} expired), soonest first: "
                 f"{first}{', ...' if len(summary.devices_due) > 5 else ''} (hint: kvca list --expiring-within 30)")


def warn_cas(out: Output, warnings) -> None:
    """CAs nearing expiry (kvca_core/cawatch.py), on stderr: stdout stays the command's output."""
    for warning in warnings:
        out.warn(f"{warning.message} (hint: {warning.hint})")


def print_description(out: Output, desc: Any) -> None:
    info = desc.info
    rows = [
        ("certificate", info.name), ("subject", info.subject or "-"), ("issuer", desc.issuer or "-"),
        ("SANs", ", ".join(info.sans) or "-"), ("CA", info.ca or "-"),
        ("valid", f"{date_text(info.not_before)} .. {date_text(info.not_after)}"
                  + (f" ({info.days_left} days left)" if info.days_left is not None else "")),
        ("state", info.state), ("renews from", date_text(desc.renew_at)), ("serial", info.serial or "-"),
        ("SHA-256", desc.sha256 or "-"), ("version", info.version or "-"),
        ("chain", " <- ".join(desc.chain) or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in sorted(desc.tags.items())) or "-"),
        ("pending", desc.pending or "none"),
        ("managed", "yes" if desc.managed else f"no: {desc.why_not_managed}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.line(f"{key + ':':<{width + 1}} {value}")


def print_policy(out: Output, effective) -> None:
    out.line(f"CA:     {effective.ca}")
    out.line(f"source: {effective.source_text}")
    if effective.policy is None:
        out.line(f"policy: none: the CA issues nothing (hint: kvca ca policy set {effective.ca} --policy FILE)")
        return
    out.line("policy:")
    for key, value in effective.policy.to_mapping().items():
        shown = ", ".join(value) if isinstance(value, list) else json.dumps(value)
        out.line(f"  {key}: {shown if shown else '(none)'}")
