"""What `azd deploy` uploads: .funcignore, read with .gitignore's rules by git itself.

azd's zip packaging for a Functions app honours .funcignore with .gitignore semantics
(Azure/azure-dev pull request 5383, "package: support ignore files for zip deploy"), as Core
Tools' `func publish` does. So the file is checked with git's own matcher (`git check-ignore`)
against a tree laid out like this repository after `make test`, `make demo` and `azd up`:
what a local run leaves behind (Azurite's install and data, the emulator's state file, which
holds private keys, azd's environment files) must never reach the package.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bicepwalk import ROOT

# Paths a local run or a developer's checkout has, each of which must stay out of the package.
LEFT_OUT = [
    ".azurite/node_modules/azurite/package.json",  # `npm install --prefix .azurite` (CI), ~186 MB
    ".azurite/__azurite_db_blob__.json",
    ".kvemulator/state.json",  # the emulator's --state file: CA and leaf private keys
    ".azure/kvca-dev/.env",  # azd's environment: names, principal ids, settings
    ".azure/config.json",
    ".venv/bin/python",
    ".venv-3.13/bin/python",
    ".venv-checkov/bin/checkov",
    ".demo/ca.pem",
    "docs/deploy.md",
    "tests/conftest.py",
    "kvemulator/server.py",
    "infra/main.bicep",
    "bench/signing.py",
    "demo/__main__.py",
    "local.settings.json",
    "requirements-dev.txt",
    "kvca_core/__pycache__/settings.cpython-313.pyc",
    ".pytest_cache/README.md",
    ".hypothesis/examples/x",
    ".git/HEAD",
    "azure.yaml",
    "Makefile",
    ".ci/run",
]
# What the Functions host needs: the app, its packages, host.json and what the remote build installs.
KEPT = [
    "function_app.py",
    "host.json",
    "requirements.txt",
    "blueprints/__init__.py",
    "blueprints/http.py",
    "kvca_core/__init__.py",
    "kvca_core/settings.py",
    "kvca_core/signing/names.py",
]


def _ignored(tree: Path, paths: list[str]) -> set[str]:
    """The paths git's matcher ignores under .funcignore's rules, in a fresh repository at `tree`."""
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    result = subprocess.run(
        ["git", "-c", f"core.excludesFile={ROOT / '.funcignore'}", "check-ignore", "--no-index", "--stdin"],
        cwd=tree, input="\n".join(paths) + "\n", capture_output=True, text=True)
    # 0: some path is ignored, 1: none is; anything else is git failing.
    assert result.returncode in (0, 1), result.stderr
    return set(result.stdout.split())


def _lay_out(tree: Path, paths: list[str]) -> None:
    for rel in paths:
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


@pytest.mark.parametrize("azurite", ["directory", "symlink"])
def test_funcignore_leaves_out_local_state_dev_tools_and_docs(tmp_path, azurite):
    # CI installs Azurite into .azurite/; a worktree's .azurite is a symlink to another checkout's.
    tree = tmp_path / "repo"
    _lay_out(tree, [p for p in LEFT_OUT + KEPT if not p.startswith(".git/")])
    if azurite == "symlink":
        elsewhere = tmp_path / "main-azurite"
        shutil.move(tree / ".azurite", elsewhere)
        (tree / ".azurite").symlink_to(elsewhere, target_is_directory=True)
        paths = [p for p in LEFT_OUT if not p.startswith(".azurite/")] + [".azurite"]
    else:
        paths = LEFT_OUT
    ignored = _ignored(tree, paths + KEPT)
    assert set(paths) - ignored == set(), "would be uploaded by `azd deploy`"
    assert ignored & set(KEPT) == set(), "the app cannot run without these"


def test_the_matcher_can_tell_a_kept_file_from_a_left_out_one(tmp_path):
    # The test above proves something only if git's matcher really reads .funcignore.
    tree = tmp_path / "repo"
    _lay_out(tree, ["function_app.py", "docs/deploy.md"])
    assert _ignored(tree, ["function_app.py", "docs/deploy.md"]) == {"docs/deploy.md"}
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    bare = subprocess.run(["git", "-c", "core.excludesFile=/dev/null", "check-ignore", "--no-index", "docs/deploy.md"],
                          cwd=tree, capture_output=True, text=True)
    assert bare.returncode == 1, "without .funcignore nothing is ignored"
