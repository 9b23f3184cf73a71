"""`kvca ledger list|show|export|import`, and `kvca show --serial`: the CA's ledger from the command
line (kvca_core/operations/ledger_view.py)."""

from __future__ import annotations

import csv
import io
import json

from kvca_core import jsonshape, revocation
from kvca_core.cli.commands import Run, command
from kvca_core.cli.errors import EXIT_OK, UsageError
from kvca_core.cli.files import write_public_file
from kvca_core.cli.output import Output, date_text
from kvca_core.ledger import serial_text
from kvca_core.operations import ledger_view
from kvca_core.vocabulary import check_name

_HEADER = ("CA", "SERIAL", "SUBJECT", "NAME", "WHERE", "NOT AFTER", "STATE")
EXPORT_FIELDS = ("ca", "ca_version", "serial", "subject", "sans", "not_before", "not_after", "sha256", "profile",
                 "location", "name", "version", "requested_by", "recorded_at", "state", "revoked_at",
                 "revocation_reason", "revoked_by")


def _filters(args) -> dict:
    """The filters of `ledger list` and `ledger export`, checked before the ledger is opened."""
    if args.ca is not None:
        check_name(args.ca, "CA")
    if args.serial is not None:
        serial_text(args.serial)
    return dict(ca=args.ca, serial=args.serial, state=args.state, expiring_within_days=args.expiring_within,
                location=args.location)


def print_entries(out: Output, entries) -> None:
    rows = [(e.record.ca, e.record.serial, e.record.subject or "-", e.record.name, e.record.location,
             e.record.not_after.strftime("%Y-%m-%d"), e.state) for e in entries]
    widths = [max(len(c[i]) for c in [_HEADER, *rows]) for i in range(len(_HEADER))]
    for cells in [_HEADER, *rows]:
        out.line("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
    if not rows:
        out.line("(no certificates in the ledger match)")


@command("ledger", "list")
def ledger_list(args) -> Run:
    filters = _filters(args)

    async def run(ctx, out: Output) -> int:
        found = await ledger_view.listing(ctx, **filters)
        out.json(jsonshape.of(found)) if out.as_json else print_entries(out, found.entries)
        return EXIT_OK
    return run


def _flat(entry) -> dict[str, str]:
    body = entry.to_dict()
    revoked = body.pop("revocation") or {}
    body["sans"] = " ".join(body["sans"])
    body.update(revoked_at=revoked.get("revoked_at", ""), revocation_reason=revoked.get("reason", ""),
                revoked_by=revoked.get("revoked_by", ""))
    return {k: "" if body.get(k) is None else str(body[k]) for k in EXPORT_FIELDS}


@command("ledger", "export")
def ledger_export(args) -> Run:
    filters = _filters(args)

    async def run(ctx, out: Output) -> int:
        text = io.StringIO(newline="")
        count = 0
        writer = csv.DictWriter(text, fieldnames=EXPORT_FIELDS, lineterminator="\n") if args.format == "csv" else None
        if writer is not None:
            writer.writeheader()
        async for entry in ledger_view.entries(ctx, **filters):
            count += 1
            if writer is not None:
                writer.writerow(_flat(entry))
            else:
                text.write(json.dumps(jsonshape.of(entry), sort_keys=True) + "\n")
        if args.out:
            write_public_file(args.out, text.getvalue().encode("utf-8"))
            if out.as_json:
                out.json(jsonshape.document("ledger_export", {"file": args.out, "format": args.format,
                                                              "certificates": count}))
            else:
                out.line(f"wrote {count} certificate(s) of the ledger ({args.format}) to {args.out}")
        else:
            out.write(text.getvalue())
        return EXIT_OK
    return run


def show_entry(out: Output, entry) -> int:
    if out.as_json:
        out.json(jsonshape.of(entry))
        return EXIT_OK
    r, v = entry.record, entry.revocation
    rows = [("CA", f"{r.ca} (key version {r.ca_version})"), ("serial", r.serial), ("subject", r.subject or "-"),
            ("SANs", ", ".join(r.sans) or "-"), ("valid", f"{date_text(r.not_before)} .. {date_text(r.not_after)}"),
            ("state", entry.state), ("profile", r.profile),
            ("where", f"Key Vault certificate '{r.name}'" if r.location == "vault" else f"outside the vault: {r.name}"),
            ("SHA-256", r.sha256), ("requested by", f"{r.requested_by}, {date_text(r.recorded_at)}")]
    if v is not None:
        rows.append(("revoked", f"{v.reason}, {date_text(v.revoked_at)}, by {v.revoked_by}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.line(f"{key + ':':<{width + 1}} {value}")
    return EXIT_OK


@command("ledger", "show")
def ledger_show(args) -> Run:
    if args.ca is not None:
        check_name(args.ca, "CA")
    serial_text(args.serial)

    async def run(ctx, out: Output) -> int:
        return show_entry(out, await ledger_view.entry(ctx, serial=args.serial, ca=args.ca))
    return run


@command("ledger", "import")
def ledger_import(args) -> Run:
    async def run(ctx, out: Output) -> int:
        result = await revocation.import_vault_records(ctx)
        if out.as_json:
            out.json(jsonshape.of(result))
            return EXIT_OK
        out.line(f"ledger import: {result.certificates_seen} certificate version(s) in the vault, "
                 f"{result.certificates_recorded} newly recorded; {result.revocations_seen} revocation(s) in "
                 f"its tags, {result.revocations_recorded} newly recorded")
        for problem in result.problems:
            out.warn(problem)
        return EXIT_OK
    return run


def show_serial(args) -> Run:
    """`kvca show --serial S [--ca CA]`: a certificate the ledger holds, in the vault or not."""
    if args.name:
        raise UsageError("show: give NAME or --serial S, not both")
    return ledger_show(args)
