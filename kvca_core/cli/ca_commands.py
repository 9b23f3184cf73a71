"""The `kvca ca ...` commands: create, import, show, list, rotate, policy show|set. As in
commands.py, `prepare(args)` reads and checks every input (files, subjects, years, the policy)
before the vault is opened; `run(ctx, out)` makes the call."""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence

from kvca_core import ca as ca_ops
from kvca_core import capolicy, jsonshape, jsontext
from kvca_core.cli.commands import Run, command
from kvca_core.cli.errors import EXIT_OK, UsageError
from kvca_core.cli.files import ask_password, read_file, read_password
from kvca_core.cli.output import Output, date_text, print_ca, print_policy
from kvca_core.errors import KvcaError
from kvca_core.signing.policy import IssuancePolicy
from kvca_core.vocabulary import check_name


def _show_ca(out: Output, info, action: str | None = None) -> int:
    if out.as_json:
        out.json(jsonshape.document("ca", {"action": action, **info.to_dict()}) if action else jsonshape.of(info))
    else:
        print_ca(out, info)
    return EXIT_OK


def _setting(args) -> Any:
    """KVCA_ISSUANCE_POLICY, whose entry for a new CA is stored with it when --policy is left out
    (main.py puts the run's settings on `args`)."""
    return args.settings.issuance_policy


@command("ca", "create")
def ca_create(args) -> Run:
    plan = ca_ops.plan_ca(args.name, subject=args.subject, key=args.key, years=args.years,
                          permitted_dns=tuple(args.permitted_dns), exportable=args.exportable,
                          policy=_policy_argument(args.policy, args.name), root_subject=args.root_subject,
                          root_years=args.root_years, setting=_setting(args))

    async def run(ctx, out: Output) -> int:
        return _show_ca(out, await ca_ops.create_planned(ctx, plan), "created")
    return run


def _import_inputs(args) -> dict[str, Any]:
    """Read the files; ask for a password when a key needs one and none was given."""
    if args.pfx and (args.cert or args.key or args.chain):
        raise UsageError("ca import: give either --pfx or --cert/--key, not both")
    if not args.pfx and not (args.cert and args.key):
        raise UsageError("ca import: give --pfx FILE, or --cert FILE and --key FILE")
    password = read_password(args.password_file) if args.password_file else None
    # Without --password-file, ask on a terminal (never on a pipe: scripts give the file).
    prompt = password is None and sys.stdin.isatty()
    if args.pfx:
        pfx = read_file(args.pfx, "PFX file")
        if prompt and ca_ops.pfx_needs_password(pfx):
            password = ask_password(args.pfx)
        return dict(pfx=pfx, password=password)
    key_pem = read_file(args.key, "key file")
    if prompt and ca_ops.key_is_encrypted(key_pem):
        password = ask_password(args.key)
    return dict(cert_pem=read_file(args.cert, "certificate file"), key_pem=key_pem,
                chain_pem=read_file(args.chain, "chain file") if args.chain else None, password=password)


@command("ca", "import")
def ca_import(args) -> Run:
    check_name(args.name, "CA")
    inputs = _import_inputs(args)
    try:
        plan = ca_ops.plan_import(args.name, **inputs, policy=_policy_argument(args.policy, args.name),
                                  setting=_setting(args))
    finally:
        inputs.clear()  # the key's bytes are dropped here; the plan holds the parsed key only

    async def run(ctx, out: Output) -> int:
        return _show_ca(out, await ca_ops.import_planned(ctx, plan), "imported")
    return run


@command("ca", "show")
def ca_show(args) -> Run:
    name = check_name(args.name, "CA")

    async def run(ctx, out: Output) -> int:
        return _show_ca(out, await ca_ops.show_ca(ctx, name))
    return run


@command("ca", "list")
def ca_list(args) -> Run:
    async def run(ctx, out: Output) -> int:
        infos = await ca_ops.list_cas(ctx)
        if out.as_json:
            out.json(jsonshape.document("ca_list", {"cas": [i.to_dict() for i in infos]}))
            return EXIT_OK
        if not infos:
            out.line("(no CAs in the vault: `kvca ca create` or `kvca ca import` makes one)")
        for info in infos:
            constraints = ", ".join(info.permitted_dns) or "no name constraints"
            out.line(f"{info.name}  {info.subject}  {info.key}  until {date_text(info.not_after)}  "
                     f"pathlen {info.path_length if info.path_length is not None else '-'}  {constraints}  "
                     f"{info.issued_valid} valid issued")
        return EXIT_OK
    return run


@command("ca", "rotate")
def ca_rotate(args) -> Run:
    name = check_name(args.name, "CA")

    async def run(ctx, out: Output) -> int:
        result = await ca_ops.rotate_ca(ctx, name, years=args.years)
        if out.as_json:
            out.json(jsonshape.of(result))
            return EXIT_OK
        if result.previous_version:
            out.line(f"rotated CA '{name}': version {result.previous_version} (serial {result.previous_serial}) "
                     f"-> version {result.ca.version} (serial {result.ca.serial})")
        print_ca(out, result.ca)
        return EXIT_OK
    return run


# --- issuance policy (kvca_core/capolicy.py) -----------------------------------------------------
def _policy_argument(value: str | None, ca: str, changes: Sequence[tuple[str, str]] = ()) -> Any:
    """--policy FILE|JSON (and --set/--add FIELD=VALUE) -> the policy mapping, or None. A policy that is
    not valid JSON or not a valid policy is a bad input file: a usage error (exit 2), before any call."""
    if value is None:
        return None
    mapping = _policy_json(value)
    if not isinstance(mapping, dict):
        raise UsageError("--policy must hold a JSON object")
    return _checked_policy(ca, mapping, changes)


def _checked_policy(ca: str, mapping: dict[str, Any], changes: Sequence[tuple[str, str]]) -> dict[str, Any]:
    mapping = dict(capolicy.policy_fields(mapping))
    for option, assignment in changes:
        _change(mapping, option, assignment)
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
            text = read_file(value, "policy file", limit=64 * 1024).decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{where} is not UTF-8 text") from None
    try:
        return jsontext.loads(text, what=where)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # nested too deeply, or a key given twice
        raise UsageError(str(exc)) from None


def _change(mapping: dict[str, Any], option: str, assignment: str) -> None:
    """--set FIELD=VALUE replaces the field; --add FIELD=VALUE adds to a list field, keeping what is
    there. VALUE as JSON when it parses (true, 90, ["a"]), else a list field's comma-separated
    entries, else the text itself. The field is checked with the whole policy."""
    field, sep, raw = assignment.partition("=")
    field = field.strip()
    if not sep or not field:
        raise UsageError(f"{option} {assignment!r} is not FIELD=VALUE (e.g. allowed_domains=corp.internal)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.strip()
    known = IssuancePolicy.__dataclass_fields__.get(field)
    is_list = known is not None and isinstance(known.default, tuple)
    if is_list and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if option == "--add":
        if not is_list:
            raise UsageError(f"--add {assignment!r}: {field!r} is not a list field of the policy (use --set)")
        present = list(mapping.get(field, known.default))
        value = present + [v for v in value if v not in present]
    mapping[field] = value


@command("ca", "policy")
def ca_policy(args) -> Run:
    name = check_name(args.name, "CA")
    if args.policy_command == "show":
        async def show(ctx, out: Output) -> int:
            return _show_policy(out, await capolicy.show_policy(ctx, name))
        return show
    changes = [("--set", a) for a in args.assignments] + [("--add", a) for a in args.additions]
    if args.policy is None and not changes:
        raise UsageError("ca policy set: give --policy FILE|JSON, or --set/--add FIELD=VALUE")
    given = _policy_argument(args.policy, name, changes) if args.policy is not None else None

    async def run(ctx, out: Output) -> int:
        mapping = given
        if mapping is None:  # --set/--add alone: a change to the policy in force (or to the field defaults)
            current = await capolicy.show_policy(ctx, name)
            mapping = _checked_policy(name, current.policy.to_stored() if current.policy else {}, changes)
        return _show_policy(out, await capolicy.set_policy(ctx, name, mapping))
    return run


def _show_policy(out: Output, effective) -> int:
    out.json(jsonshape.of(effective)) if out.as_json else print_policy(out, effective)
    return EXIT_OK
