"""`kvca`'s entry point: parse, check the inputs, open the vault, run one command, print, exit.

Exit codes (docs/cli.md): 0 success; 1 the operation, or some certificate in it, failed; 2 a usage
error (the command line, an input file or a setting is wrong), found by the command's `prepare`
step before the vault is opened, so nothing changed; 130 interrupted; 141 standard output was
closed. Errors are one line on stderr naming the object, the rule and the value; `--debug` adds the
traceback and the debug log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from contextlib import nullcontext
from typing import Sequence

from kvca_core import jsonshape, telemetry
from kvca_core.cli import ca_commands as _ca_commands  # noqa: F401 - registers the `ca` commands
from kvca_core.cli import device_commands as _device_commands  # noqa: F401 - registers sign-csr, enroll-codes
from kvca_core.cli import ledger_commands as _ledger_commands  # noqa: F401 - registers the `ledger` commands
from kvca_core.cli.commands import COMMANDS
from kvca_core.cli.errors import EXIT_CLOSED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from kvca_core.cli.output import Output, _silence
from kvca_core.cli.parser import build_parser
from kvca_core.context import Context
from kvca_core.errors import ConfigurationError, KvcaError, about
from kvca_core.settings import Settings

log = logging.getLogger(__name__)


def settings_for(vault: str | None, environ=None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    if vault:
        if not vault.lower().startswith("https://"):
            raise UsageError(f"--vault {vault!r} must be an https:// URL (e.g. https://myvault.vault.azure.net)")
        env["KVCA_VAULT_URL"] = vault
    if not env.get("KVCA_VAULT_URL"):
        raise ConfigurationError("no vault URL: give --vault URL or set KVCA_VAULT_URL",
                                 subject="settings", hint="e.g. --vault https://myvault.vault.azure.net")
    return Settings.from_env(env)


def _object_of(args) -> str | None:
    """What the command is about, for errors that do not say."""
    name = getattr(args, "name", None)
    if not name:
        return None
    return f"CA '{name}'" if args.command in ("ca", "export-chain", "crl") else f"certificate '{name}'"


async def _run(args, out: Output, credential=None) -> int:
    settings = settings_for(getattr(args, "vault", None))
    args.settings = settings
    key = (args.command, getattr(args, "ca_command", None) or getattr(args, "ledger_command", None))
    log.debug("kvca cli command=%s vault=%s", " ".join(k for k in key if k), settings.vault_name)
    try:
        run = COMMANDS[key](args)
    except KvcaError as exc:
        # Refused before the vault was opened: the command line, a file or a setting is what is wrong.
        exc.exit_code = EXIT_USAGE
        raise
    subject = _object_of(args)
    async with Context.open(settings, credential=credential) as ctx:
        with telemetry.source("cli"), about(subject) if subject else nullcontext():
            telemetry.set_actor(f"cli:{_user()}")
            return await run(ctx, out)


def _user() -> str:
    """The local account running the CLI, for the ledger's requested_by (the vault's own audit log
    names the Entra identity)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's numeric uid)
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def exit_code(error: BaseException) -> int:
    """Each error kind carries its exit code (errors.py): usage errors and missing settings, the
    user's to fix before anything ran, are 2; anything else that failed is 1."""
    return error.exit_code if isinstance(error, KvcaError) else EXIT_FAILED


def _report(out: Output, error: BaseException, debug: bool) -> int:
    code = exit_code(error)
    if isinstance(error, KvcaError):
        text = str(error)
    else:
        text = f"unexpected {type(error).__name__}" + ("" if debug else " (run with --debug for details)")
    text = " ".join(text.split())  # one line, whatever the message held
    if debug:
        import traceback

        out.error("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    out.error(f"kvca: error: {text}\n")
    if out.as_json:
        body = error.to_dict() if isinstance(error, KvcaError) else {"error": "InternalError", "message": text}
        out.json(jsonshape.document("error", {**body, "exit_code": code}))
    return code


def setup_logging(debug: bool) -> None:
    """--debug: everything, with timestamps. Otherwise only ERROR records: the operations log a WARNING
    line for every refusal (for the Functions log), and the CLI already says it in its one error line;
    warnings that matter to a user come back in the results and are printed."""
    root = logging.getLogger()
    if debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        root.setLevel(logging.DEBUG)
    elif not root.handlers:
        # The handler itself passes ERROR only: quiet_azure_logging sets the SDK's loggers to WARNING
        # for the Functions log, and azure-identity's multi-line "credential failed" warning would
        # otherwise come before the CLI's one error line, which says it.
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.ERROR)
        handler.setFormatter(logging.Formatter("kvca: %(levelname)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None, *, credential=None) -> int:
    """The console script. Returns the exit code (setuptools' wrapper passes it to sys.exit).

    `credential` is for in-process callers that already hold one; the command line uses
    DefaultAzureCredential, as the Functions app does."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json, debug = "--json" in argv, "--debug" in argv
    out = Output(as_json)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, or argparse's own exit
            return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
        as_json, debug = bool(getattr(args, "json", False)), bool(getattr(args, "debug", False))
        out = Output(as_json)
        setup_logging(debug)
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
    # The reader went away: the command ran to its end, but not all of its output was read. A failure
    # keeps its own code; success says the output was cut short, as `git log | head` does.
    return EXIT_CLOSED if out.closed and code == EXIT_OK else code
