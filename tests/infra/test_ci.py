""".ci/run finds each Python the suite must pass on, or fails naming what is missing."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from bicepwalk import ROOT

SCRIPT = ROOT / ".ci" / "run"


def _find_python(version: str, pyenv_root: Path, path: str) -> subprocess.CompletedProcess:
    """Run .ci/run's own find_python function (and nothing else of the script)."""
    function = re.search(r"^find_python\(\) \{\n.*?^\}\n", SCRIPT.read_text(), re.S | re.M).group(0)
    return subprocess.run(["bash", "-c", f'{function}\nfind_python "$1"', "find_python", version],
                          env={"PATH": path, "PYENV_ROOT": str(pyenv_root), "HOME": str(pyenv_root)},
                          capture_output=True, text=True, timeout=30)


def _fake_python(bin_dir: Path, name: str, prints: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    fake = bin_dir / name
    fake.write_text(f"#!/bin/sh\necho {prints}\n")
    fake.chmod(0o755)
    return fake


def test_a_missing_python_fails_loudly_naming_it(tmp_path):
    result = _find_python("3.99", tmp_path / "pyenv", "/usr/bin:/bin")
    assert result.returncode == 1 and result.stdout == ""
    assert "Python 3.99 is missing" in result.stderr
    assert f"{tmp_path}/pyenv/versions/3.99.*/bin/python3.99" in result.stderr


def test_pyenvs_newest_patch_release_is_found_when_path_has_none(tmp_path):
    root = tmp_path / "pyenv"
    for patch in ("3.99.2", "3.99.10"):
        _fake_python(root / "versions" / patch / "bin", "python3.99", "3.99")
    result = _find_python("3.99", root, "/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{root}/versions/3.99.10/bin/python3.99"


def test_an_interpreter_of_another_version_does_not_count(tmp_path):
    # A pyenv shim that runs the global version instead, say.
    shims = tmp_path / "shims"
    _fake_python(shims, "python3.99", "3.11")
    result = _find_python("3.99", tmp_path / "pyenv", f"{shims}:/usr/bin:/bin")
    assert result.returncode == 1 and "Python 3.99 is missing" in result.stderr


def test_ci_runs_make_test_once_per_interpreter_in_separate_venvs():
    lines = [line.strip() for line in SCRIPT.read_text().splitlines()]
    runs = [line for line in lines if line.startswith("make test")]
    assert runs == ['make test PYTHON="$PYTHON311"', 'make test PYTHON="$PYTHON313" VENV=.venv-3.13']
    assert "set -euo pipefail" in lines
    assert os.access(SCRIPT, os.R_OK)
