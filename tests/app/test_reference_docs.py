"""The reference pages agree with the code: docs/settings.md lists every setting of
kvca_core/settings.py with its default, and docs/http-api.md every function the app registers,
each route with its method and auth level."""

from __future__ import annotations

import json
import re
from pathlib import Path

from apphelpers import FUNCTIONS
from kvca_core.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(r"^\|(.*)\|$", re.M)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row of `text` (header and rule rows included)."""
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)] for row in _ROW.findall(text)]


def settings_table_problems(text: str) -> list[str]:
    rows = {row[0].strip("`"): row[1] for row in table_rows(text) if row[0].startswith("`")}
    problems = [f"{name} is not a setting of kvca_core/settings.py" for name in rows
                if name not in {s.name for s in SETTINGS}]
    for setting in SETTINGS:
        default = rows.get(setting.name)
        if default is None:
            problems.append(f"{setting.name} is missing")
        elif setting.default is None and default != "(required)":
            problems.append(f"{setting.name} is required, not {default!r}")
        elif setting.default == "" and not default.startswith(("empty", "derived")):
            problems.append(f"{setting.name}'s default is empty, not {default!r}")
        elif setting.default and not default.startswith(f"`{setting.default}`"):
            problems.append(f"{setting.name}'s default is `{setting.default}`, not {default!r}")
    return problems


def test_the_settings_page_lists_every_setting_with_its_default():
    assert settings_table_problems((ROOT / "docs" / "settings.md").read_text()) == []


def test_the_settings_check_fails_on_a_missing_or_wrong_row():
    text = (ROOT / "docs" / "settings.md").read_text()
    without = "\n".join(line for line in text.splitlines() if not line.startswith("| `KVCA_CONCURRENCY`"))
    assert settings_table_problems(without) == ["KVCA_CONCURRENCY is missing"]
    wrong = text.replace("| `KVCA_RENEW_BEFORE_DAYS` | `30` |", "| `KVCA_RENEW_BEFORE_DAYS` | `45` |")
    assert settings_table_problems(wrong) == ["KVCA_RENEW_BEFORE_DAYS's default is `30`, not '`45`'"]


def _template(route: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", route)


def api_problems(text: str) -> list[str]:
    """Every registered function in a row of the page naming it (`kvca_x`); an HTTP one's row starts
    with its method and path (each {parameter} may be spelled as the reader needs) and names its auth
    level."""
    rows = {}
    for row in table_rows(text):
        for cell in row:
            if re.fullmatch(r"`kvca_[a-z_]+`", cell):
                rows[cell.strip("`")] = row
    problems = []
    for name, function in FUNCTIONS.items():
        row = rows.get(name)
        if row is None:
            problems.append(f"{name} is not in a table row")
            continue
        binding = json.loads(function.get_function_json())["bindings"][0]
        if binding["type"] != "httpTrigger":
            continue
        shown = {(m, _template(p)) for m, p in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`", row[0])}
        for method in binding["methods"]:
            if (method.upper(), _template("/" + binding["route"])) not in shown:
                problems.append(f"{name}: {method.upper()} /{binding['route']} is not its row's route ({row[0]})")
        if binding["authLevel"].upper() not in row:
            problems.append(f"{name}: auth level {binding['authLevel'].upper()} is not in its row")
    return problems


def test_the_http_api_page_lists_every_function_with_its_route_and_auth_level():
    assert api_problems((ROOT / "docs" / "http-api.md").read_text()) == []


def test_the_api_check_fails_on_a_wrong_route_or_auth_level():
    text = (ROOT / "docs" / "http-api.md").read_text()
    moved = text.replace("`POST /api/certificates/{name}/cancel`", "`POST /api/certificates/{name}/withdraw`")
    assert [p.split(":")[0] for p in api_problems(moved)] == ["kvca_cancel"]
    opened = text.replace("| `GET /api/health` | FUNCTION |", "| `GET /api/health` | ANONYMOUS |")
    assert api_problems(opened) == ["kvca_health: auth level FUNCTION is not in its row"]
