"""The commands for devices and services that keep their own keys: `sign-csr` (one CSR, or a fleet's
with --from) and `enroll-codes` (one-time codes for EST's first enrollment). As in commands.py,
`prepare(args)` reads and checks every file before the vault is opened; `run(ctx, out)` makes the
calls. A private key never passes through here: a CSR carries the public key only."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvca_core import enrollment, jsonshape, operations
from kvca_core.cli.commands import Run, _progress_bar, command
from kvca_core.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from kvca_core.cli.files import MAX_FILE, read_file, write_private_file, write_public_file
from kvca_core.cli.output import Output, date_text
from kvca_core.errors import KvcaError
from kvca_core.operations.external import CsrRequest, SignedCsr, external_name, read_csr, record_fields
from kvca_core.signing import MAX_CSR_BYTES
from kvca_core.vocabulary import check_name


def read_csr_file(path: str) -> CsrRequest:
    """A CSR file (PEM, DER or base64 DER), parsed and its signature verified; a usage error naming
    the file otherwise (nothing reached the vault)."""
    data = read_file(path, "CSR file", MAX_CSR_BYTES)
    try:
        return read_csr(data)
    except KvcaError as exc:
        raise UsageError(f"CSR file {path!r}: {exc.message}", step=exc.step) from None


def signed_document(signed: SignedCsr, *, csr: str | None = None, file: str | None = None) -> dict[str, Any]:
    body = signed.to_dict()
    if csr is not None:
        body["csr"] = csr
    if csr is not None or file is not None:
        body["file"] = file
    return jsonshape.document(signed.OBJECT, body)


def print_signed(out: Output, signed: SignedCsr, file: str | None) -> None:
    record = signed.record
    where = f"; chain written to {file}" if file else ""
    out.line(f"{record.name}: {signed.action}, serial {record.serial}, valid until {date_text(record.not_after)}"
             f" ({signed.reason}){where}")
    for warning in signed.warnings:
        out.warn(f"{record.name}: {warning}")


@command("sign-csr")
def sign_csr(args) -> Run:
    ca = check_name(args.ca, "CA")
    if args.from_source:
        return _sign_many(args, ca)
    request = read_csr_file(args.csr)
    try:
        name = external_name(args.name, request)
    except KvcaError as exc:
        raise UsageError(f"sign-csr: {exc.message}", hint="give --name NAME") from None

    async def run(ctx, out: Output) -> int:
        signed = await operations.sign_csr(ctx, ca, request, name=name, profile=args.profile, validity_days=args.days)
        if args.out:
            write_public_file(args.out, signed.pem().encode("ascii"))
        if out.as_json:
            out.json(signed_document(signed, csr=args.csr, file=args.out))
        elif args.out:
            print_signed(out, signed, args.out)
        else:
            out.write(signed.pem())  # the chain on standard output; what happened on standard error
            out.error(f"kvca: {signed.record.name}: {signed.action}, serial {signed.record.serial}, valid until "
                      f"{date_text(signed.record.not_after)}\n")
        return EXIT_OK
    return run


# --- sign-csr --from: a fleet's CSRs ---------------------------------------------------------------
CSR_SUFFIXES = (".csr", ".req", ".pem", ".der")
CHAIN_SUFFIX = ".crt"  # PEM, the certificate then its intermediates; never a CSR's own suffix
CONCURRENCY = 16  # CSRs in flight; the keys API's share (KVCA_EXTERNAL_SIGN_SHARE) paces them further


@dataclass(frozen=True)
class CsrItem:
    path: Path
    request: CsrRequest
    name: str
    target: Path  # where its chain is written


def csr_paths(source: str) -> list[Path]:
    """A folder's CSR files (by suffix, in name order), or the paths a list file names, one a line,
    relative to the list's folder (blank lines and # comments skipped)."""
    path = Path(source)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CSR_SUFFIXES)
        where = f"folder {source!r} holds no CSR files ({', '.join(CSR_SUFFIXES)})"
    else:
        try:
            text = read_file(source, "CSR list", 64 * MAX_FILE).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UsageError(f"CSR list {source!r} is not UTF-8 text") from None
        lines = [line.strip() for line in text.splitlines()]
        found = [path.parent / line for line in lines if line and not line.startswith("#")]
        where = f"CSR list {source!r} names no files"
    if not found:
        raise UsageError(where)
    return found


def _items(args) -> list[CsrItem]:
    if args.name:
        raise UsageError("sign-csr --from: each certificate is named by its CSR's CN; --name is for one CSR")
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None and not out_dir.is_dir():
        raise UsageError(f"sign-csr --from: --out {args.out!r} must be an existing folder")
    items: list[CsrItem] = []
    targets: dict[Path, Path] = {}
    for path in csr_paths(args.from_source):
        request = read_csr_file(str(path))
        try:
            name = external_name(None, request)
        except KvcaError as exc:
            raise UsageError(f"CSR file '{path}': {exc.message}") from None
        target = (out_dir / path.stem if out_dir else path.with_suffix("")).with_suffix(CHAIN_SUFFIX)
        if target in targets:
            raise UsageError(f"CSR files '{targets[target]}' and '{path}' would both be written to '{target}'")
        targets[target] = path
        items.append(CsrItem(path, request, name, target))
    return items


def _failed(ca: str, item: CsrItem, reason: str, record=None) -> dict[str, Any]:
    return jsonshape.document(SignedCsr.OBJECT, {**record_fields(record), "ca": ca, "name": item.name,
                                                 "action": operations.FAILED, "pem": None, "csr": str(item.path),
                                                 "file": None, "reason": reason, "warnings": []})


def _sign_many(args, ca: str) -> Run:
    items = _items(args)  # every CSR read and checked before the vault is opened

    async def run(ctx, out: Output) -> int:
        limit = asyncio.Semaphore(CONCURRENCY)
        counts: dict[str, int] = {}
        made = _progress_bar(out, "sign-csr", len(items))
        bar, task = (made[0], made[0].add_task("", total=len(items))) if made else (None, None)

        async def one(item: CsrItem) -> None:
            async with limit:
                line = await _sign_one(ctx, ca, item, args)
            out.json(line, indent=None)  # JSON lines, as each CSR is done
            counts[line["action"]] = counts.get(line["action"], 0) + 1
            if bar is not None:
                bar.update(task, advance=1, description=f"{item.name}: {line['action']}")

        if bar is None:
            await asyncio.gather(*(one(item) for item in items))
        else:
            with bar:
                await asyncio.gather(*(one(item) for item in items))
        failed = counts.get(operations.FAILED, 0)
        out.error(f"kvca: sign-csr: {len(items)} CSRs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                  + ("; run the same command again to retry the failed ones" if failed else "") + "\n")
        return EXIT_FAILED if failed else EXIT_OK
    return run


async def _sign_one(ctx, ca: str, item: CsrItem, args) -> dict[str, Any]:
    """One CSR: signed (or found signed by an earlier run: skipped) and its chain written; a refusal
    is a `failed` line naming why, and the run goes on."""
    try:
        signed = await operations.sign_csr(ctx, ca, item.request, name=item.name, profile=args.profile,
                                           validity_days=args.days, resume=True)
    except KvcaError as exc:
        return _failed(ca, item, str(exc))
    try:
        write_public_file(str(item.target), signed.pem().encode("ascii"))
    except UsageError as exc:
        return _failed(ca, item, f"{signed.action} (serial {signed.record.serial}), but {exc.message}; run again "
                                 f"to write it", signed.record)
    return signed_document(signed, csr=str(item.path), file=str(item.target))


# --- enroll-codes ----------------------------------------------------------------------------------
@command("enroll-codes")
def enroll_codes(args) -> Run:
    ca = check_name(args.ca, "CA")
    data = read_file(args.from_file, "devices file", 64 * MAX_FILE)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{args.from_file}: not UTF-8 text (byte {exc.start})") from None
    devices = enrollment.read_devices(text, args.from_file)
    if os.path.lexists(args.out):
        # Refused before any code is made: codes that reach no file would be useless.
        raise UsageError(f"file {args.out!r} exists; the codes file is written new (choose another --out)")

    async def run(ctx, out: Output) -> int:
        codes = await enrollment.make_codes(ctx, ca, devices, days=args.days)
        write_private_file(args.out, enrollment.code_rows(codes).encode("utf-8"))
        expires = codes[0].expires
        if out.as_json:
            out.json(jsonshape.document("enroll_codes", {"ca": ca, "devices": len(codes), "file": args.out,
                                                         "mode": "0600", "expires": expires.isoformat()}))
        else:
            out.line(f"made {len(codes)} one-time enrollment code(s) for CA '{ca}', valid until "
                     f"{date_text(expires)}: written to {args.out} (mode 0600)")
        out.warn(f"{args.out} holds the codes themselves (kvca keeps only their hashes): hand each device its "
                 f"code, then delete the file")
        return EXIT_OK
    return run
