"""The commands for devices and services that keep their own keys: `sign-csr` (one CSR, or a fleet's
with --from) and `enroll-codes` (one-time codes for EST's first enrollment). As in commands.py,
`prepare(args)` reads and checks every file before the vault is opened; `run(ctx, out)` makes the
calls. A private key never passes through here: a CSR carries the public key only."""

from __future__ import annotations

from typing import Any

from kvca_core import jsonshape, operations
from kvca_core.cli.commands import Run, command
from kvca_core.cli.errors import EXIT_OK, UsageError
from kvca_core.cli.files import read_file, write_public_file
from kvca_core.cli.output import Output, date_text
from kvca_core.errors import KvcaError
from kvca_core.operations.external import CsrRequest, SignedCsr, external_name, read_csr
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
        raise UsageError("sign-csr --from is not available yet")
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
