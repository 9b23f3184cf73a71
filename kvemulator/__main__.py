"""`python -m kvemulator`: serve the emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import threading
from pathlib import Path

from kvemulator._fidelity import FIELDS, Fidelity
from kvemulator.emulator import Emulator

# Where ca.pem goes unless --tls-dir says otherwise (relative to the working directory,
# so `func start` and the CLI run from the repository find it at the same path).
DEFAULT_TLS_DIR = Path(".kvemulator") / "tls"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kvemulator",
        description="A local Azure Key Vault emulator for the real Azure SDK clients (HTTPS).")
    parser.add_argument("--port", type=int, default=8443, help="HTTPS port (0: any free port; default 8443)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--tls-dir", type=Path, default=DEFAULT_TLS_DIR,
                        help=f"where to write ca.pem, the CA of the TLS certificate (default {DEFAULT_TLS_DIR})")
    parser.add_argument("--state", type=Path, default=None,
                        help="keep the vault in this file across restarts (mode 0600: it holds private keys)")
    parser.add_argument("--vault-name", default="kvemulator",
                        help="the vault name events carry (VaultName, topic); default kvemulator")
    parser.add_argument("--identity-port", type=int, default=None,
                        help="plain-HTTP port of the managed-identity endpoint (default: --port + 1, "
                             "or any free port when --port is 0)")
    parser.add_argument("--identity-header", default=None,
                        help="the IDENTITY_HEADER secret clients must send (default: random per start)")
    parser.add_argument("--webhook", action="append", default=[], metavar="URL",
                        help="POST events (Event Grid schema) to URL, e.g. the Functions host's "
                             "/runtime/webhooks/eventgrid?functionName=NAME (repeatable)")
    defaults = Fidelity()
    for name, field in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, dest=f"fidelity_{name}", action=argparse.BooleanOptionalAction,
                                default=getattr(defaults, name),
                                help=f"fidelity switch {name} (default {getattr(defaults, name)})")
        else:
            parser.add_argument(flag, dest=f"fidelity_{name}", type=float, metavar="SECONDS",
                                default=getattr(defaults, name),
                                help=f"fidelity switch {name} (default {getattr(defaults, name):g})")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port")
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        # The control API has no authentication and the vault holds private keys.
        print(f"kvemulator: warning: listening on {args.host}: anyone who can reach it can read "
              "the vault's keys and drive /_emulator/", file=sys.stderr)
    identity_port = args.identity_port if args.identity_port is not None else (
        args.port + 1 if args.port else 0)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        em = Emulator(args.vault_name, args.tls_dir, host=args.host, port=args.port,
                      identity_port=identity_port, state_path=args.state)
        em.set_fidelity(**{name: getattr(args, f"fidelity_{name}") for name in FIELDS})
        if args.identity_header:
            em.identity_header = args.identity_header
        for url in args.webhook:
            em.subscribe_webhook(url)
        em.start()
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"kvemulator: cannot start: {exc}", file=sys.stderr)
        return 1
    print(f"kvemulator: vault {em.url} (name {em.vault_name}); TLS CA {em.ca_path}", flush=True)
    # What kvca and DefaultAzureCredential read, as lines a shell takes as they are (paste them).
    for name, value in em.environ().items():
        print(f"export {name}={shlex.quote(value)}", flush=True)
    # Not Key Vault's, but kvca refuses to sign without it: a local ledger file next to the emulator's
    # files (kvca_core/ledger/sqlite.py), so that the pasted lines are a whole local session.
    ledger = f"sqlite:///{(Path(args.tls_dir).resolve() / 'ledger.db').as_posix()}"
    print(f"export KVCA_LEDGER_TABLE_URL={shlex.quote(ledger)}", flush=True)
    try:
        stop.wait()
    finally:
        em.stop()
    print("kvemulator: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
