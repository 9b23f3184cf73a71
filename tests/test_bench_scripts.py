"""Every benchmark under bench/ still runs: each script, at a size small enough for the suite, exits 0
and prints its report. What they measure is not checked here (speed targets live in the scripts'
ratios, never in a test); that they do not rot is: a bench that stops at a setting the code grew
since (the ledger, a CA's issuance policy) measures nothing when someone needs its numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# script, small arguments, a line of its report (the part that follows the measurements).
BENCHES = [
    ("signing.py", ["--seconds", "0.2"], "RSA 2048"),
    ("crl.py", ["--entries", "100,1000", "--seconds", "0.2"], "1000 remote"),
    ("vault_calls.py", ["--certificates", "30"], "calls per certificate, no-op sweep"),
    ("emulator_scale.py", ["--sizes", "30", "60", "--writes", "5"], "beyond the pace"),
    ("bulk_issue.py", ["--count", "12", "--limit", "1000"], "issued 12 of 12 client certificates"),
    ("enroll.py", ["--count", "20", "--concurrency", "4"], "enrolled 20 of 20 devices"),
    ("revocation.py", ["--certificates", "10,20", "--seconds", "0.2"], "calls per revoke"),
    ("scale.py", ["--certificates", "30", "--due", "6", "--budget", "20", "--processes", "2",
                  "--process-due", "4"], "renewed 4 of 4"),
]


def test_every_bench_script_is_listed_here():
    assert sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "benchkit.py") == \
        sorted(script for script, _args, _line in BENCHES)


@pytest.mark.parametrize("script,args,expected", BENCHES, ids=[b[0] for b in BENCHES])
def test_the_bench_runs_reports_and_leaves_nothing_behind(script, args, expected, tmp_path):
    scratch = tmp_path / "tmp"  # the bench's temporary folders (its ledger, the emulator's TLS files)
    scratch.mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TMPDIR": str(scratch)})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert expected in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert sorted(p.name for p in scratch.iterdir()) == []
