"""Read kvca's Bicep the way the tests need it, on top of pycep-parser's JSON.

No Bicep compiler runs here, so the templates are checked as pycep parses
them. pycep's JSON is faithful but raw: a conditional resource nests its body
under `config.config`, a reference to a parameter or variable is a bare string
(the same as a string literal), and function calls are
`{"function": {"type": ..., "parameters": {...}}}`. This module hides those
details behind `Template`, `Resource` and `RoleAssignment`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

# Built-in role definition IDs (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
ROLE_IDS = {
    "Key Vault Certificates Officer": "a4417e6f-fecd-4de8-b567-7b0420556985",
    "Key Vault Certificate User": "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Crypto User": "12338af0-0e69-4776-bea7-57ae8d297424",
    "EventGrid Data Sender": "d5a91429-5739-47e2-a06b-3470a27159e7",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Table Data Reader": "76199698-9eea-4c19-bc75-cec21354c6b6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    # Never to be granted by kvca; listed so a failure names them.
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Key Vault Administrator": "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Key Vault Crypto Officer": "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
}
ROLE_NAMES = {v: k for k, v in ROLE_IDS.items()}
# kvca's custom roles (vault-access.bicep), by the seed of their guid() name, and the
# parameters through which other modules receive their IDs (main.bicep wires them).
CUSTOM_ROLES = {
    "kvca-certificate-operator": "kvca certificate operator",
    "kvca-ca-key-signer": "kvca CA key signer",
    "kvca-ledger-appender": "kvca ledger appender",
}
ROLE_PARAMS = {"caSignerRoleId": "kvca-ca-key-signer"}


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def _parser(line_numbers: bool) -> BicepParser:
    # Building the Lark parser is the slow part (~0.2 s); build it once.
    return BicepParser(add_line_numbers=line_numbers)


def parse(path: Path, *, line_numbers: bool = False) -> dict[str, Any]:
    """pycep's JSON for one file, parsed now (raises on a parse error)."""
    return _parser(line_numbers).parse(file_path=path)


@functools.cache
def load(path: Path | str) -> "Template":
    """Parse one .bicep file once (relative paths are taken from infra/)."""
    path = Path(path)
    if not path.is_absolute():
        path = INFRA / path
    return Template(path, parse(path))


def call(value: Any) -> tuple[str, dict[str, Any]] | None:
    """`{"function": {"type": t, "parameters": p}}` -> (t, p); anything else -> None."""
    if isinstance(value, dict) and "function" in value:
        return value["function"]["type"], value["function"]["parameters"]
    return None


def accessor_path(value: Any) -> list[str] | None:
    """`a.b.c` (and `a::b`) as ["a", "b", "c"]; None for anything else."""
    if isinstance(value, str):
        return [value] if re.fullmatch(r"[A-Za-z_]\w*", value) else None
    if isinstance(value, dict) and "operator" in value:
        op = value["operator"]
        if op["type"] in ("property_accessor", "nested_resource_accessor"):
            left = accessor_path(op["operands"]["operand_1"])
            right = accessor_path(op["operands"]["operand_2"])
            if left and right:
                return left + right
    return None


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any
    decorators: dict[str, Any]

    @property
    def has_default(self) -> bool:
        return self.default is not None

    @property
    def description(self) -> str | None:
        return self.decorators.get("description")


@dataclass(frozen=True)
class Resource:
    template: "Template" = field(repr=False)
    symbol: str
    type: str
    existing: bool
    body: dict[str, Any]
    condition: Any  # None when unconditional

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.body
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    @property
    def name(self) -> Any:
        return self.template.resolve(self.body.get("name"))

    @property
    def parent(self) -> "Resource | None":
        parent = self.body.get("parent")
        return self.template.resources[parent] if parent else None


@dataclass(frozen=True)
class RoleAssignment:
    resource: Resource
    role_id: str  # a built-in role's GUID, or "custom:<seed>" for kvca's own roles
    scope: Resource
    principal: Any  # the principalId expression: a parameter name in kvca's modules
    principal_type: Any
    name_call: tuple[str, dict[str, Any]] | None
    role_ref: Any = None  # the roleDefinitionId expression as written
    definition: Resource | None = None  # the custom role's definition, when in the same template

    @property
    def role(self) -> str:
        if self.role_id.startswith("custom:"):
            return CUSTOM_ROLES.get(self.role_id[7:], f"unknown custom role {self.role_id}")
        return ROLE_NAMES.get(self.role_id, f"unknown role {self.role_id}")

    @property
    def where(self) -> str:
        return f"{self.resource.template.path.name}:{self.resource.symbol}"


class Template:
    def __init__(self, path: Path, parsed: dict[str, Any]):
        self.path = path
        self.json = parsed
        self.params = {
            name: Param(name, p["type"], p.get("default"),
                        {d["type"]: d.get("argument") for d in p.get("decorators", [])})
            for name, p in parsed.get("parameters", {}).items()
        }
        self.variables = {name: v["value"] for name, v in parsed.get("variables", {}).items()}
        self.outputs = parsed.get("outputs", {})
        self.resources = {sym: self._resource(sym, r) for sym, r in parsed.get("resources", {}).items()}
        self.modules = {sym: self._resource(sym, m) for sym, m in parsed.get("modules", {}).items()}
        self.module_paths = {sym: m["detail"]["path"] for sym, m in parsed.get("modules", {}).items()}

    def _resource(self, symbol: str, raw: dict[str, Any]) -> Resource:
        config = raw["config"]
        condition = None
        if "condition" in config:  # `= if (cond) { ... }`
            condition, config = config["condition"], config["config"]
        return Resource(self, symbol, raw["type"], raw.get("existing", False), config, condition)

    @property
    def scope(self) -> str:
        return self.json.get("globals", {}).get("scope", {}).get("value", "resourceGroup")

    def of_type(self, rtype: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type.lower() == rtype.lower()]

    def one(self, rtype: str) -> Resource:
        found = self.of_type(rtype)
        assert len(found) == 1, f"{self.path.name}: expected one {rtype}, found {[r.symbol for r in found]}"
        return found[0]

    def resolve(self, value: Any) -> Any:
        """Follow variable references to their values (parameters stay names)."""
        seen = set()
        while isinstance(value, str) and value in self.variables and value not in seen:
            seen.add(value)
            value = self.variables[value]
        return value

    def custom_role_seed(self, definition: Resource) -> str:
        """'kvca-...' from `name: guid(resourceGroup().id, vaultName, 'kvca-...')`."""
        name = call(definition.body["name"])
        assert name and name[0] == "guid", f"{definition.symbol}: a role definition is named guid(...)"
        return list(name[1].values())[-1]

    def _role(self, res: Resource, ref: Any) -> tuple[str, Resource | None]:
        role_call = call(ref)
        if role_call:
            assert role_call[0] == "subscription_resource_id", f"{res.symbol}: roleDefinitionId {ref!r}"
            assert role_call[1]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
            return self.resolve(role_call[1]["resource_name_1"]), None
        path = accessor_path(ref)
        if path and len(path) == 2 and path[1] == "id" and path[0] in self.resources:
            definition = self.resources[path[0]]
            assert definition.type == "Microsoft.Authorization/roleDefinitions", f"{res.symbol}: {path}"
            return "custom:" + self.custom_role_seed(definition), definition
        assert isinstance(ref, str) and ref in self.params and ref in ROLE_PARAMS, (
            f"{res.symbol}: roleDefinitionId must be subscriptionResourceId(...), a role definition's id "
            f"or a known role parameter, got {ref!r}")
        return "custom:" + ROLE_PARAMS[ref], None

    def role_assignments(self) -> list[RoleAssignment]:
        found = []
        for res in self.of_type("Microsoft.Authorization/roleAssignments"):
            props = res.body["properties"]
            role_id, definition = self._role(res, props["roleDefinitionId"])
            scope_path = accessor_path(res.body.get("scope"))
            assert scope_path, f"{res.symbol}: no resource scope"
            found.append(RoleAssignment(
                resource=res,
                role_id=role_id,
                scope=self.resources[scope_path[-1]],
                principal=props["principalId"],
                principal_type=props.get("principalType"),
                name_call=call(res.body["name"]),
                role_ref=props["roleDefinitionId"],
                definition=definition,
            ))
        return found

    def role_definitions(self) -> dict[str, Resource]:
        """kvca's custom roles in this template, by their guid seed."""
        return {self.custom_role_seed(r): r for r in self.of_type("Microsoft.Authorization/roleDefinitions")}


def all_templates() -> list[Template]:
    return [load(p) for p in bicep_files()]


def module_template(main: Template, symbol: str) -> Template:
    return load((main.path.parent / main.module_paths[symbol]).resolve())


def app_settings(site: Resource) -> dict[str, Any]:
    """The site's `siteConfig.appSettings` as {name: value expression}."""
    entries = site.get("properties.siteConfig.appSettings")
    assert isinstance(entries, list), f"{site.symbol}: no siteConfig.appSettings list"
    settings: dict[str, Any] = {}
    for entry in entries:
        assert entry["name"] not in settings, f"app setting {entry['name']} set twice"
        settings[entry["name"]] = entry["value"]
    return settings
