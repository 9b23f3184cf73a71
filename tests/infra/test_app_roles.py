"""infra/app-roles.json: the app roles of kvca's Entra app registration (`az ad app create
--app-roles @infra/app-roles.json`), which KVCA_ACCESS_RULES name under "roles"."""

from __future__ import annotations

import json
import uuid

from bicepwalk import INFRA


def test_app_roles_are_well_formed_unique_and_assignable_to_users_and_applications():
    roles = json.loads((INFRA / "app-roles.json").read_text())
    assert [r["value"] for r in roles] == ["kvca.issuer", "kvca.operator", "kvca.reader"]
    ids = [str(uuid.UUID(r["id"])) for r in roles]
    assert len(set(ids)) == len(ids)
    for role in roles:
        assert set(role) == {"allowedMemberTypes", "description", "displayName", "id", "isEnabled", "value"}
        assert role["isEnabled"] is True and set(role["allowedMemberTypes"]) == {"User", "Application"}
        assert " " not in role["value"] and len(role["value"]) <= 120  # Entra's limits for a role value
