"""README.md's local session, run: every shell block marked `<!-- session -->`, in order, with bash, in
one shell as a reader pastes them (the `export` lines the emulator prints carry over), in a fresh
folder with a fresh emulator, as the reader's shell after `source .venv/bin/activate`. What the
session says happens is checked afterwards, in its output and the files it wrote."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from cryptography import x509

from docblocks import marked_blocks, run_bash

README = Path(__file__).resolve().parents[1] / "README.md"


def _fresh_shell_env() -> dict[str, str]:
    """The test runner's environment without anything of kvca's, the emulator's or Azure's: the
    session must set up all it needs itself. The virtual environment's bin first, as after
    `source .venv/bin/activate`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVCA_", "IDENTITY_", "AZURE_", "MSI_"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def test_the_readme_local_session_runs_as_written(tmp_path):
    blocks = marked_blocks(README, "session")
    assert len(blocks) == 5, "README.md's session blocks changed: update this test"
    done = run_bash("\n".join(block.script for block in blocks), tmp_path, _fresh_shell_env(), timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"

    # A CA and two certificates, one signed at once, one pending and then signed.
    assert re.search(r"^api: issued, version \w+, serial [0-9a-f]+", done.stdout, re.M), out
    assert "web: requested (pending" in done.stdout and re.search(r"^web: signed, version", done.stdout, re.M), out
    # The device's certificate: its own key, verified as a client certificate, in the ledger only.
    device = x509.load_pem_x509_certificate((tmp_path / "device.pem").read_bytes())
    assert device.subject.rfc4514_string() == "CN=device-001"
    assert "device.pem: OK" in done.stdout
    assert re.search(rf"^corp\s+{device.serial_number:x}\s+CN=device-001\s+device-001\s+external", done.stdout, re.M)
    # The revocation: on the CRL, refused by openssl, then replaced.
    web = x509.load_pem_x509_certificate((tmp_path / "web.pem").read_bytes())
    crl = x509.load_pem_x509_crl((tmp_path / "corp.crl").read_bytes())
    assert [entry.serial_number for entry in crl] == [web.serial_number]
    assert "certificate revoked" in out and "web: refused, revoked" in done.stdout
    assert re.search(r"^web: renewed, version", done.stdout, re.M), out
    # Time passes: both due, both renewed by the sweep; the emulator stopped at the end.
    assert re.search(r"^api\s.*\sdue\s", done.stdout, re.M) and re.search(r"^web\s.*\sdue\s", done.stdout, re.M), out
    assert "renewed 2, skipped 0, failed 0" in done.stdout, out
    assert (tmp_path / ".kvemulator" / "tls" / "ledger.db").is_file()  # the local ledger the exports named
