"""The `kvca` fixtures, in one place for every test directory that runs the command line
(tests/cli and tests/consumers import them into their conftest)."""

from __future__ import annotations

import pytest

from clihelpers import Result, StepCA, make_step_ca
from kvca_core.cli import main
from kvca_core.settings import SETTING_NAMES


@pytest.fixture
def cli_env(emulator, ledger_url, monkeypatch):
    """The environment a user has after pointing kvca at the emulator: vault URL, its TLS CA,
    and the managed-identity endpoint that DefaultAzureCredential finds."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    # Every CA needs a policy (a CA without one is refused): the defaults, for every CA.
    env = {**emulator.environ(), "KVCA_ISSUANCE_POLICY": '{"*": {}}', "KVCA_LEDGER_TABLE_URL": ledger_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # kvca's "now" follows the emulator's clock by the Date of its answers (kvca_core/clock.py),
    # so "is it due?" and the emulator's events agree.
    yield env


@pytest.fixture
def kvca(cli_env, capsys):
    """Run `kvca ARGS...` in-process; returns the exit code and what it printed."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def step_ca(tmp_path) -> StepCA:
    return make_step_ca(tmp_path / "step")


@pytest.fixture
def corp(kvca):
    """A CA made by `kvca ca create` (keys in the vault), constrained to corp.internal."""
    result = kvca("ca", "create", "corp", "--subject", "CN=Corp CA", "--permitted-dns", "corp.internal")
    assert result.code == 0, result.err
    return "corp"
