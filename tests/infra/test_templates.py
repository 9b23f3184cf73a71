"""The Bicep files as a whole: they parse, they are documented, the modules fit
together the way a compiler would insist, and azd can drive them.

checkov (the recognised scanner) is NOT run from pytest: it lives in its own
virtual environment and takes ~40 s; `make test` runs it as the
`infra-check` target right after pytest, with zero failed checks required.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bicepwalk import INFRA, ROOT, accessor_path, all_templates, bicep_files, call, load, module_template, parse

EXPECTED_FILES = {
    "main.bicep",
    "app/crl-storage.bicep",
    "app/ledger-storage.bicep",
    "app/identity.bicep",
    "app/monitoring.bicep",
    "app/storage.bicep",
    "app/keyvault.bicep",
    "app/vault-access.bicep",
    "app/ca-access.bicep",
    "app/eventgrid-topic.bicep",
    "app/function.bicep",
    "app/function-auth.bicep",
    "app/network.bicep",
    "app/private-endpoint.bicep",
    "app/alerts.bicep",
}


def _rel(path: Path) -> str:
    return path.relative_to(INFRA).as_posix()


def test_the_expected_bicep_files_are_there():
    assert {_rel(p) for p in bicep_files()} == EXPECTED_FILES


@pytest.mark.parametrize("path", bicep_files(), ids=_rel)
def test_every_bicep_file_parses(path):
    # A fresh parser, not the cached load(): a parse error must surface here.
    parsed = parse(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{_rel(path)} declares nothing"


def test_a_broken_bicep_file_is_reported_as_a_parse_error(tmp_path):
    # The parse test above can fail: pycep rejects what Bicep would reject.
    broken = tmp_path / "broken.bicep"
    broken.write_text("resource x 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'a'\n")
    with pytest.raises(Exception):
        parse(broken)


@pytest.mark.parametrize("path", bicep_files(), ids=_rel)
def test_every_parameter_has_a_description(path):
    template = load(path)
    undocumented = [name for name, p in template.params.items() if not (p.description or "").strip()]
    assert not undocumented, f"{_rel(path)}: parameters without @description: {undocumented}"


def test_main_targets_the_subscription_and_creates_the_resource_group():
    main = load("main.bicep")
    assert main.scope == "subscription"
    rg = main.one("Microsoft.Resources/resourceGroups")
    for symbol, module in main.modules.items():
        scope = module.body.get("scope")
        assert scope == rg.symbol or (isinstance(scope, dict) and "function" in scope), \
            f"module {symbol} has no resource group scope"


def test_main_outputs_are_upper_snake_and_name_what_users_need():
    outputs = load("main.bicep").outputs
    not_upper_snake = [n for n in outputs if not re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*", n)]
    assert not not_upper_snake, f"outputs not in UPPER_SNAKE: {not_upper_snake}"
    # azd writes these into .azure/<env>/.env; the CLI reads KVCA_VAULT_URL there.
    for needed in ("KVCA_VAULT_URL", "AZURE_KEY_VAULT_NAME", "AZURE_FUNCTION_APP_NAME",
                   "AZURE_EVENTGRID_TOPIC_ENDPOINT", "AZURE_RESOURCE_GROUP", "SERVICE_API_NAME"):
        assert needed in outputs, f"main.bicep has no output {needed}"


def _module_calls():
    return [(template, symbol) for template in all_templates() for symbol in template.modules]


@pytest.mark.parametrize("template, symbol", _module_calls(),
                         ids=lambda v: _rel(v.path) if hasattr(v, "path") else v)
def test_every_module_call_matches_the_module_parameters(template, symbol):
    # What `bicep build` would reject: an unknown parameter, or a required one missing.
    module = template.modules[symbol]
    target = module_template(template, symbol)
    passed = set(module.body["params"])
    declared = set(target.params)
    required = {n for n, p in target.params.items() if not p.has_default}
    assert passed <= declared, f"module {symbol} passes unknown params {passed - declared}"
    assert required <= passed, f"module {symbol} misses required params {required - passed}"


def test_module_references_point_at_declared_symbols():
    # `x.outputs.y` must name a module x whose file declares output y.
    main = load("main.bicep")
    for symbol, module in main.modules.items():
        for pname, value in module.body["params"].items():
            path = accessor_path(value)
            if path and len(path) == 3 and path[1] == "outputs":
                source, _, output = path
                assert source in main.modules, f"{symbol}.{pname}: no module {source}"
                assert output in module_template(main, source).outputs, \
                    f"{symbol}.{pname}: module {source} has no output {output}"
            elif isinstance(value, str) and re.fullmatch(r"[A-Za-z_]\w*", value):
                # pycep gives 'vault' and vault alike: a literal is one the module allows.
                allowed = module_template(main, symbol).params[pname].decorators.get("allowed") or []
                assert value in main.params or value in main.variables or value in allowed, \
                    f"{symbol}.{pname}: {value} is neither a parameter nor a variable of main.bicep"


def test_parameters_file_maps_azd_variables_onto_main_parameters():
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    main = load("main.bicep")
    assert set(params) <= set(main.params), f"unknown parameters: {set(params) - set(main.params)}"
    required = {n for n, p in main.params.items() if not p.has_default}
    assert required <= set(params), f"required parameters not mapped: {required - set(params)}"
    assert params["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert params["location"]["value"] == "${AZURE_LOCATION}"
    assert params["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_the_app_carries_the_tag_azd_finds_the_api_service_by():
    # azure.yaml's service `api` (tests/infra/test_deploy_hooks.py reads azure.yaml).
    site = load("app/function.bicep").one("Microsoft.Web/sites")
    union = call(site.body["tags"])
    assert union and union[0] == "union", "the app's tags must be union(tags, {...})"
    extra = {key.strip("'"): value for key, value in union[1]["arg_2"].items()}  # pycep keeps the quotes
    assert extra == {"azd-service-name": "api"}


def test_checkov_skips_sit_inside_a_resource_and_give_a_reason():
    skip = re.compile(r"checkov:skip=([A-Z0-9_]+)(:?)(.*)")
    found = 0
    for template in all_templates():
        lines = template.path.read_text().splitlines()
        blocks = [(r["__start_line__"], r["__end_line__"]) for r in
                  parse(template.path, line_numbers=True)["resources"].values()]
        for number, line in enumerate(lines, start=1):
            m = skip.search(line)
            if not m:
                continue
            found += 1
            where = f"{template.path.name}:{number}"
            assert m.group(2) == ":" and len(m.group(3).strip()) > 20, f"{where}: skip without a reason"
            assert line.lstrip().startswith("//"), f"{where}: skip must be a whole-line comment"
            # checkov reads skips only between a resource's first and last line.
            inside = any(start < number < end for start, end in blocks)
            assert inside, f"{where}: skip outside any resource block"
    assert found, "no checkov skips found (the test would prove nothing)"

