"""The commands on certificates: request, sign, renew, cancel, sweep, list, show, export-chain,
download, revoke, crl, ledger. Each is two steps (`command`): `prepare(args)` checks
everything that needs no vault and returns `run(ctx, out)`, which makes one call into kvca_core
and prints its result. A refusal in `prepare` is a usage error (exit 2): nothing reached the vault.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Awaitable, Callable

from kvca_core import ca as ca_ops
from kvca_core import jsonshape, operations, revocation
from kvca_core.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from kvca_core.cli.files import MAX_FILE, read_file, read_password, write_private_file, write_public_file
from kvca_core.cli.output import (
    Output,
    print_description,
    print_inventory,
    print_outcome,
    print_summary,
    warn_cas,
)
from kvca_core.request import parse_request, read_fleet
from kvca_core.signing.crl import parse_reason
from kvca_core.vocabulary import check_name

Run = Callable[[Any, Output], Awaitable[int]]
COMMANDS: dict[tuple[str, str | None], Callable[[argparse.Namespace], Run]] = {}


def command(name: str, sub: str | None = None):
    def register(prepare: Callable[[argparse.Namespace], Run]):
        COMMANDS[(name, sub)] = prepare
        return prepare
    return register


def outcome_exit(result: operations.Outcome) -> int:
    # An outcome that reports failure (rather than raising) still fails the command.
    return EXIT_FAILED if result.action == operations.FAILED else EXIT_OK


def show_outcome(out: Output, result: operations.Outcome) -> int:
    out.json(jsonshape.of(result)) if out.as_json else print_outcome(out, result)
    return outcome_exit(result)


def _on_named(operation: Callable[..., Awaitable[operations.Outcome]]):
    def prepare(args) -> Run:
        name = check_name(args.name)

        async def run(ctx, out: Output) -> int:
            return show_outcome(out, await operation(ctx, name))
        return run
    return prepare


command("sign")(_on_named(operations.sign_pending))
command("cancel")(_on_named(operations.cancel))


# --- request -------------------------------------------------------------------------------------
def _request_defaults(args) -> dict[str, Any]:
    """The options given on the command line; those left out take the request's own defaults."""
    given = {"ca": args.ca, "profile": args.profile, "key": args.key, "validity_months": args.months,
             "exportable": args.exportable, "include_root": args.include_root}
    return {k: v for k, v in given.items() if v is not None}


async def _only_ca(ctx) -> str:
    """`--ca` left out: the vault's only CA, or a usage error listing the choices (the command line is
    incomplete; nothing changed)."""
    names = await ca_ops.ca_names(ctx)  # names only: no CA's certificate or secret is read
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError("the vault holds no CA; create or import one first (`kvca ca create`)", subject="request")
    raise UsageError(f"the vault holds {len(names)} CAs ({', '.join(names)}); choose one with --ca", subject="request")


@command("request")
def request(args) -> Run:
    if args.from_file:
        return _request_many(args)
    if not args.name:
        raise UsageError("kvca request: the following arguments are required: NAME (or --from FILE for many)")
    fields = {"name": args.name, "dns_names": list(args.dns), "ip_addresses": list(args.ip),
              "emails": list(args.email), "uris": list(args.uri), "subject": args.subject, **_request_defaults(args)}
    asked = parse_request({k: v for k, v in fields.items() if v not in (None, [])}, ca_optional=True)

    async def run(ctx, out: Output) -> int:
        req = asked if asked.ca else dataclasses.replace(asked, ca=await _only_ca(ctx))
        return show_outcome(out, await operations.issue(ctx, req, sign=args.sign))
    return run


def _request_many(args) -> Run:
    if args.name:
        raise UsageError(f"request: give NAME or --from FILE, not both (got {args.name!r})")
    per_row = [flag for flag, value in (("--dns", args.dns), ("--ip", args.ip), ("--subject", args.subject),
                                        ("--email", args.email), ("--uri", args.uri)) if value]
    if per_row:
        raise UsageError(f"request --from: {per_row[0]} belongs in the file, one value per row "
                         f"(columns dns_names, ip_addresses, emails, uris, subject)")
    data = read_file(args.from_file, "input file", 64 * MAX_FILE)  # about half a million rows
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's CSV may start with a byte-order mark
    except UnicodeDecodeError as exc:
        raise UsageError(f"{args.from_file}: not UTF-8 text (byte {exc.start})") from None
    requests, labels = read_fleet(text, args.from_file, _request_defaults(args))

    async def run(ctx, out: Output) -> int:
        reqs = requests
        if any(not r.ca for r in reqs):
            only = await _only_ca(ctx)
            reqs = [r if r.ca else dataclasses.replace(r, ca=only) for r in reqs]
        outcomes = await _issue_many_with_progress(ctx, reqs, labels, out, sign=args.sign)
        return _print_many(out, outcomes)
    return run


def _print_many(out: Output, outcomes) -> int:
    for outcome in outcomes:
        if out.as_json:
            out.json(jsonshape.of(outcome), indent=None)  # JSON lines: one outcome document a line
        else:
            print_outcome(out, outcome)
    failed = sum(1 for o in outcomes if o.action == operations.FAILED)
    if not out.as_json:
        counts: dict[str, int] = {}
        for o in outcomes:
            counts[o.action] = counts.get(o.action, 0) + 1
        out.line(f"request: {len(outcomes)} rows: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                 + ("; run the same command again to retry the failed rows" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def _progress_bar(out: Output, label: str, total: int | None):
    """A rich progress bar on standard error when it is a terminal (stdout stays the output), else None."""
    if not (hasattr(out.stderr, "isatty") and out.stderr.isatty()):
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                    TimeElapsedColumn(), transient=True, console=Console(file=out.stderr), redirect_stdout=False,
                    redirect_stderr=False), total


def _advance(bar, task) -> Callable[..., None]:
    """The operations call progress(outcome) once per certificate, as each finishes."""
    def progress(outcome) -> None:
        bar.update(task, advance=1, description=f"{outcome.name}: {outcome.action}")
    return progress


async def _issue_many_with_progress(ctx, requests, labels, out: Output, *, sign: bool) -> list:
    made = _progress_bar(out, "request", len(requests))
    if made is None:
        return list(await operations.issue_many(ctx, requests, sign=sign, labels=labels))
    bar, total = made
    with bar:
        task = bar.add_task("", total=total)
        return list(await operations.issue_many(ctx, requests, sign=sign, labels=labels,
                                                progress=_advance(bar, task)))


# --- renew, sweep, list, show --------------------------------------------------------------------
@command("renew")
def renew(args) -> Run:
    # A person asking explicitly renews now: a renewal completed moments ago is an error saying so
    # (the operation raises Conflict, exit 1), overridden by --force. --if-due asks the sweep's
    # question instead, and "not due" is then the answer, not a failure.
    name = check_name(args.name)
    operations.check_renew_options(if_due=args.if_due, force=args.force)

    async def run(ctx, out: Output) -> int:
        result = await operations.renew(ctx, name, now=not args.if_due, force=args.force)
        code = show_outcome(out, result)
        # Never a silent exit 0 without a new version (the operation should have raised).
        return EXIT_FAILED if not args.if_due and result.action == operations.SKIPPED else code
    return run


@command("sweep")
def sweep(args) -> Run:
    async def run(ctx, out: Output) -> int:
        made = None if out.as_json else _progress_bar(out, "sweep", None)
        if made is None:
            summary = await operations.sweep(ctx, dry_run=args.dry_run)
        else:
            bar, _ = made
            with bar:
                task = bar.add_task("", total=None)
                summary = await operations.sweep(ctx, dry_run=args.dry_run, progress=_advance(bar, task))
        out.json(jsonshape.of(summary)) if out.as_json else print_summary(out, summary)
        return EXIT_FAILED if summary.failed else EXIT_OK
    return run


@command("list")
def inventory(args) -> Run:
    async def run(ctx, out: Output) -> int:
        report = await operations.inventory_report(ctx, expiring_within_days=args.expiring_within)
        warn_cas(out, report.ca_warnings)
        out.json(jsonshape.of(report)) if out.as_json else print_inventory(out, report.certificates)
        return EXIT_OK
    return run


@command("show")
def show(args) -> Run:
    if args.serial is not None:
        from kvca_core.cli.ledger_commands import show_serial

        return show_serial(args)
    if not args.name:
        raise UsageError("show: give NAME, or --serial S for a certificate of the ledger")
    name = check_name(args.name)

    async def run(ctx, out: Output) -> int:
        result = await operations.describe(ctx, name)
        out.json(jsonshape.of(result)) if out.as_json else print_description(out, result)
        return EXIT_OK
    return run


# --- trust and keys ------------------------------------------------------------------------------
@command("export-chain")
def export_chain(args) -> Run:
    name = check_name(args.name, "CA")
    if args.include_root and args.which not in (None, "both"):
        raise UsageError(f"export-chain: --include-root contradicts --which {args.which}")
    which = "both" if args.include_root else (args.which or "intermediate")
    if args.format == "der" and which == "both":
        raise UsageError("export-chain: DER (.cer) holds exactly one certificate, and --which both is two or more",
                         hint="choose --which root or intermediate, or --format pem or p7b")
    if not args.out and args.format != "pem" and not getattr(args, "json", False) and _is_terminal():
        raise UsageError(f"export-chain: --format {args.format} is binary; give --out FILE (or redirect "
                         f"standard output)")

    async def run(ctx, out: Output) -> int:
        data = await ca_ops.export_trust(ctx, name, which, args.format)
        count = len(_certificates_in(data, args.format))
        if args.out:
            write_public_file(args.out, data)
            if out.as_json:
                out.json(jsonshape.document("trust_export", {"ca": name, "file": args.out, "which": which,
                                                             "format": args.format, "certificates": count}))
            else:
                out.line(f"wrote {count} certificate(s) of CA '{name}' ({which}, {args.format}) to {args.out}")
        elif out.as_json:
            out.json(jsonshape.document("trust_export", {
                "ca": name, "which": which, "format": args.format, "certificates": count,
                **({"pem": data.decode("ascii")} if args.format == "pem" else {"base64": data})}))
        elif args.format == "pem":
            out.write(data.decode("ascii"))
        else:
            out.binary(data)
        return EXIT_OK
    return run


def _is_terminal() -> bool:
    import sys

    return sys.stdout.isatty()


def _certificates_in(data: bytes, fmt: str) -> list:
    """Parse what export-chain is about to hand out (its count is reported)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import pkcs7

    if fmt == "pem":
        return x509.load_pem_x509_certificates(data)
    if fmt == "p7b":
        return pkcs7.load_der_pkcs7_certificates(data)
    return [x509.load_der_x509_certificate(data)]


@command("download")
def download(args) -> Run:
    name = check_name(args.name)
    password = None
    if args.password_file:
        if args.format != "pfx":
            raise UsageError("download: --password-file applies to --format pfx only (a PEM key is written "
                             "unencrypted, mode 0600)")
        password = read_password(args.password_file).encode("utf-8")
        if not password:
            raise UsageError(f"password file {args.password_file!r} is empty; leave --password-file out for a "
                             f"PFX without a password")

    async def run(ctx, out: Output) -> int:
        data = await ca_ops.download(ctx, name, args.format, password=password)
        try:
            write_private_file(args.out, data, force=args.force)
        finally:
            del data
        out.warn(f"{args.out} contains the private key of '{name}' (mode 0600): keep it safe and delete it when done")
        if out.as_json:
            out.json(jsonshape.document("download", {"name": name, "file": args.out, "format": args.format,
                                                     "mode": "0600", "encrypted": bool(args.password_file)}))
        else:
            out.line(f"wrote '{name}' ({args.format}, key and chain) to {args.out}")
        return EXIT_OK
    return run


# --- revocation ----------------------------------------------------------------------------------
@command("revoke")
def revoke(args) -> Run:
    reason = parse_reason(args.reason)
    if args.name is None:
        if not (args.ca and args.serial):
            raise UsageError("revoke: give NAME, or --ca CA and --serial S")
        check_name(args.ca, "CA")
    else:
        check_name(args.name)
        if args.ca:
            raise UsageError("revoke: --ca goes with --serial and no NAME (a NAME names its CA itself)")
    if args.serial is not None:
        revocation.parse_serial(args.serial, args.name or args.ca)

    async def run(ctx, out: Output) -> int:
        result = await revocation.revoke(ctx, args.name, reason=reason, version=args.version, serial=args.serial,
                                         ca=args.ca)
        if out.as_json:
            out.json(jsonshape.of(result))
            return EXIT_OK
        out.line(f"{result.name}: {result.action} (version {result.version}, serial {result.serial}, "
                 f"{result.reason}, {result.revoked_at.isoformat()}); listed on CA '{result.ca}''s CRL")
        if result.published:
            out.line(f"CRL published: {result.published}")
        if result.publish_error:
            out.line(f"CRL not published ({result.publish_error}); the revocation stands, and the CRL "
                     f"timer publishes it")
        return EXIT_OK
    return run


@command("crl")
def crl(args) -> Run:
    name = check_name(args.name, "CA")
    if args.revoke_intermediate and not args.root:
        raise UsageError("crl: --revoke-intermediate needs --root")
    if args.root and args.version:
        raise UsageError("crl: --version names a key of the intermediate; the root's CRL has one")
    reason = parse_reason(args.revoke_intermediate) if args.revoke_intermediate else None

    async def run(ctx, out: Output) -> int:
        if args.root:
            signed = await revocation.sign_root_crl(ctx, name, revoke_intermediate=reason)
        else:
            signed = await revocation.publish_crl(ctx, name, args.version)
        # PEM: what nginx's ssl_crl and mosquitto's crlfile read.
        write_public_file(args.out, revocation.crl_pem(signed).encode("ascii"))
        entries = len(signed)
        if out.as_json:
            out.json(jsonshape.document("crl", {"ca": name, "root": args.root, "file": args.out, "entries": entries, "version": args.version,
                                                "next_update": signed.next_update_utc.isoformat()}))
        else:
            out.line(f"wrote the {'root ' if args.root else ''}CRL of CA '{name}' ({entries} entries, next "
                     f"update {signed.next_update_utc:%Y-%m-%d %H:%M}) to {args.out}")
        return EXIT_OK
    return run
