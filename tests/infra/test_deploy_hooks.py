"""One `azd up`: the postdeploy hook provisions the Event Grid subscriptions once the code is there.

Event Grid refuses an AzureFunction endpoint whose function does not exist yet, so the first
provision runs with KVCA_DEPLOY_EVENT_SUBSCRIPTIONS=false; azure.yaml's postdeploy hook then sets
it to true in the azd environment and runs `azd provision` again (infra/main.bicep, the template
azd provisions), and postdown sets it back. The POSIX script is run here with a stand-in `azd` on
PATH that records its arguments (the Azure Developer CLI is not on this machine); the PowerShell
twin is checked for the same commands.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from bicepwalk import INFRA, ROOT, load

VARIABLE = "KVCA_DEPLOY_EVENT_SUBSCRIPTIONS"
SET_TRUE = f"azd env set {VARIABLE} true"
SET_FALSE = f"azd env set {VARIABLE} false"
PROVISION = "azd provision --no-prompt"
SH_HOOK = ROOT / "infra" / "hooks" / "postdeploy.sh"
PS_HOOK = ROOT / "infra" / "hooks" / "postdeploy.ps1"


def _azure_yaml() -> dict:
    return yaml.safe_load((ROOT / "azure.yaml").read_text())


def test_azure_yaml_runs_the_postdeploy_hook_in_sh_and_pwsh():
    hooks = _azure_yaml()["hooks"]
    assert hooks["postdeploy"] == {
        "posix": {"shell": "sh", "run": "./infra/hooks/postdeploy.sh", "interactive": True},
        "windows": {"shell": "pwsh", "run": "./infra/hooks/postdeploy.ps1", "interactive": True},
    }
    for os_hook in hooks["postdeploy"].values():
        assert (ROOT / os_hook["run"]).is_file()
    # After `azd down` the next `azd up` has no function again: the subscriptions wait once more.
    assert hooks["postdown"] == {"posix": {"shell": "sh", "run": SET_FALSE},
                                 "windows": {"shell": "pwsh", "run": SET_FALSE}}
    assert set(hooks) == {"postdeploy", "postdown"}


def test_azure_yaml_deploys_the_repository_as_a_python_function_service_from_infra_main():
    config = _azure_yaml()
    assert config["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    # No `infra:` override: `azd provision` (the hook's too) deploys infra/main.bicep.
    assert "infra" not in config and (INFRA / "main.bicep").is_file()


def test_the_variable_the_hook_sets_is_the_one_that_turns_on_both_subscriptions():
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["eventSubscriptionsEnabled"]["value"] == "${%s=false}" % VARIABLE
    main = load("main.bicep")
    for module in ("vaultAccess", "topic"):
        assert main.modules[module].body["params"]["eventSubscriptionsEnabled"] == "eventSubscriptionsEnabled"


def _run_hook(tmp_path: Path, *, preset: str | None, provision_failures: int) -> tuple[int, list[str], str]:
    """Run postdeploy.sh under sh with a stand-in azd; returns (exit status, azd calls, stderr)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log, count = tmp_path / "azd.log", tmp_path / "provisions"
    stub = bin_dir / "azd"
    # Records each call; `provision` fails the first AZD_PROVISION_FAILURES times.
    stub.write_text(
        '#!/bin/sh\necho "azd $*" >> "$AZD_LOG"\n'
        'if [ "$1" = provision ]; then\n'
        '  n=$(( $(cat "$AZD_COUNT" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$AZD_COUNT"\n'
        '  [ "$n" -gt "$AZD_PROVISION_FAILURES" ]; exit $?\nfi\n')
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", AZD_LOG=str(log), AZD_COUNT=str(count),
               AZD_PROVISION_FAILURES=str(provision_failures), KVCA_DEPLOY_RETRY_SECONDS="0")
    if preset is not None:
        env[VARIABLE] = preset
    result = subprocess.run(["sh", str(SH_HOOK)], env=env, capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return result.returncode, calls, result.stderr


def test_after_the_first_deploy_the_hook_turns_the_subscriptions_on_and_provisions(tmp_path):
    status, calls, _ = _run_hook(tmp_path, preset=None, provision_failures=0)
    assert (status, calls) == (0, [SET_TRUE, PROVISION])


def test_the_hook_retries_while_the_function_is_not_listed_yet(tmp_path):
    status, calls, _ = _run_hook(tmp_path, preset="false", provision_failures=2)
    assert (status, calls) == (0, [SET_TRUE, PROVISION, PROVISION, PROVISION])


def test_a_hook_that_cannot_provision_fails_and_leaves_the_variable_false(tmp_path):
    # Otherwise the next `azd up` would provision the subscriptions before the code, and fail.
    status, calls, stderr = _run_hook(tmp_path, preset=None, provision_failures=99)
    assert status == 1 and calls == [SET_TRUE] + [PROVISION] * 4 + [SET_FALSE]
    assert "could not provision the Event Grid subscriptions" in stderr


def test_once_the_subscriptions_are_on_the_hook_does_nothing(tmp_path):
    # Every later `azd up` provisions with the variable true; its postdeploy has nothing left to do.
    status, calls, _ = _run_hook(tmp_path, preset="true", provision_failures=0)
    assert (status, calls) == (0, [])


def test_the_powershell_hook_makes_the_same_calls():
    script = PS_HOOK.read_text()
    assert f"$env:{VARIABLE} -eq 'true'" in script
    # Same order as the sh hook: set true, provision (retried), set false on failure.
    positions = [script.index(SET_TRUE), script.index(PROVISION), script.index(SET_FALSE)]
    assert positions == sorted(positions)
    assert "$LASTEXITCODE" in script and "$attempt -ge 4" in script
