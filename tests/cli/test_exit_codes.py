"""The exit codes docs/cli.md documents: 2 for a command line that is wrong (found
before anything reached Key Vault, nothing changed), 1 for an operation that failed, 141 when the
reader of standard output went away, and no traceback in any of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clihelpers import vault_snapshot
from contract import parse

# Malformed: refused before anything reached the vault.
USAGE = [
    [],                                                          # no command
    ["export-chain", "corp", "--which", "both", "--format", "der"],              # DER holds one certificate
    ["nosuchcommand"],
    ["--vault", "http://plain.example", "list"],                 # not https
    ["list", "--expiring-within", "-3"],
    ["sign", "bad name"],                                        # not a Key Vault name
    ["show", "a" * 200],
    ["ca", "show", "x/y"],
    ["ca", "create", "c2", "--subject", "garbage"],
    ["ca", "create", "c2", "--subject", "CN=x", "--years", "60"],
    ["ca", "create", "c2", "--subject", "CN=x", "--years", "10", "--root-years", "5"],
    ["request", "x", "--dns", "x.corp.internal", "--months", "999"],  # no --ca: still refused before asking the vault
    ["request", "x", "--dns", "x.corp.internal", "--subject", "garbage", "--ca", "corp"],
    ["request", "x", "--dns", "bad name!", "--ca", "corp"],
    ["request", "x", "--uri", "not a uri", "--ca", "corp"],
    ["revoke", "x", "--reason", "bogus"],
    ["revoke", "x", "--reason", "superseded", "--serial", "zz"],
    ["renew", "x", "--force", "--if-due"],
    ["crl", "corp", "--revoke-intermediate", "superseded", "--out", "x.pem"],
]
# Well-formed, and the operation failed (the vault's state or the CA's rules).
FAILED = [
    ["renew", "nosuch"],
    ["sign", "nosuch"],
    ["ca", "show", "nosuch"],
    ["request", "evil", "--dns", "www.example.com", "--ca", "corp", "--sign"],   # outside the CA's names
    ["request", "x", "--dns", "x.corp.internal", "--ca", "nosuch"],
]


@pytest.mark.parametrize("argv", USAGE, ids=lambda a: " ".join(a)[:40] or "(none)")
def test_a_malformed_command_line_is_exit_2_one_line_and_changes_nothing(kvca, kv_clients, corp, argv):
    before = vault_snapshot(kv_clients)
    result = kvca(*argv)
    assert result.code == 2, result.err
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("kvca: error: "), result.err
    assert "Traceback" not in result.err
    assert vault_snapshot(kv_clients) == before
    as_json = kvca("--json", *argv)
    assert as_json.code == 2 and parse(as_json.out)["exit_code"] == 2


@pytest.mark.parametrize("argv", FAILED, ids=lambda a: " ".join(a)[:40])
def test_an_operation_that_fails_is_exit_1_one_line_and_changes_nothing(kvca, kv_clients, corp, argv):
    before = vault_snapshot(kv_clients)
    result = kvca(*argv)
    assert result.code == 1, result.err
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("kvca: error: "), result.err
    assert vault_snapshot(kv_clients) == before
    body = parse(kvca("--json", *argv).out)
    assert body["object"] == "error" and body["exit_code"] == 1


def test_help_is_exit_0(kvca):
    assert kvca("--help").code == 0 and kvca("ca", "rotate", "--help").code == 0


def _closed_stdout(argv: list[str], env: dict[str, str], cwd) -> tuple[int, str]:
    """`python -m kvca_core ARGS` whose standard output's reader has gone before it prints
    (what `kvca ... | head` is once head has exited)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KVCA_", "IDENTITY_"))}
    full_env.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "kvca_core", *argv], env=full_env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the only reader goes away: the first write gets EPIPE
    try:
        err = proc.stderr.read()
        return proc.wait(timeout=120), err
    finally:
        proc.kill()


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_closed_pipe_is_exit_141_without_a_traceback_and_the_operation_still_completes(cli_env, corp, kv_clients,
                                                                                         tmp_path, json_flag):
    code, err = _closed_stdout([*json_flag, "request", "piped", "--dns", "piped.corp.internal", "--ca", corp,
                                "--sign"], cli_env, tmp_path)
    assert code == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert kv_clients.certificates.get_certificate("piped").cer  # issued: output never cuts an operation short
    code, err = _closed_stdout([*json_flag, "list"], cli_env, tmp_path)
    assert code == 141 and err == "", err


def test_a_failure_keeps_exit_1_when_the_pipe_is_closed_too(cli_env, corp, tmp_path):
    code, err = _closed_stdout(["--json", "show", "nope"], cli_env, tmp_path)
    assert code == 1, err
    assert err.startswith("kvca: error: certificate 'nope'") and "Traceback" not in err


def test_a_reader_that_leaves_after_100_bytes_of_a_large_document_is_noticed():
    """`kvca --json list | head -c 100` on a large inventory: the pipe takes part of one write and
    says nothing; kvca must still see that its document was cut short (and exit 141, not 0)."""
    script = ("import sys\n"
              "from kvca_core import jsonshape\n"
              "from kvca_core.cli.output import Output\n"
              "out = Output(True)\n"
              "out.json(jsonshape.document('inventory', {'certificates': [{'name': 'n' * 200}] * 5000,"
              " 'ca_warnings': []}))\n"
              "out.flush()\n"
              "sys.exit(141 if out.closed else 0)\n")
    proc = subprocess.run(["bash", "-c", f'"{sys.executable}" -c "$0" | head -c 100 >/dev/null; '
                                         'exit "${PIPESTATUS[0]}"', script],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
