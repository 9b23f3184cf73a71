"""Every role assignment kvca's Bicep makes: which role, on what, for whom.

The function's identity can sign with (or read) a CA's private key, so the
whole grant list is pinned here; a new role assignment fails these tests until
it is added to GRANTS on purpose.
"""

from __future__ import annotations

import pytest

from bicepwalk import CUSTOM_ROLES, ROLE_IDS, accessor_path, all_templates, call, load

CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
# (file, role, scope resource type, principal parameter) for every assignment.
GRANTS = {
    ("vault-access.bicep", "kvca certificate operator", "Microsoft.KeyVault/vaults", "functionPrincipalId"),
    ("vault-access.bicep", "Key Vault Certificates Officer", "Microsoft.KeyVault/vaults", "deployerPrincipalId"),
    ("ca-access.bicep", "kvca CA key signer", "Microsoft.KeyVault/vaults/keys", "functionPrincipalId"),
    ("ca-access.bicep", "Key Vault Secrets User", "Microsoft.KeyVault/vaults/secrets", "functionPrincipalId"),
    ("eventgrid-topic.bicep", "EventGrid Data Sender", "Microsoft.EventGrid/topics", "functionPrincipalId"),
    ("storage.bicep", "Storage Blob Data Contributor", CONTAINER, "functionPrincipalId"),
    ("storage.bicep", "Storage Table Data Contributor", "Microsoft.Storage/storageAccounts", "functionPrincipalId"),
    ("storage.bicep", "Storage Blob Data Contributor", CONTAINER, "deploymentPrincipalId"),
    ("storage.bicep", "Storage Blob Data Contributor", CONTAINER, "eventGridPrincipalId"),
    ("monitoring.bicep", "Monitoring Metrics Publisher", "Microsoft.Insights/components", "functionPrincipalId"),
    # Publishing the CRL blobs: one container of the CRL-only account.
    ("crl-storage.bicep", "Storage Blob Data Contributor", CONTAINER, "functionPrincipalId"),
    # The ledger: insert and read on its one table (tests/infra/test_ledger.py), and audit reads.
    ("ledger-storage.bicep", "kvca ledger appender", TABLE, "functionPrincipalId"),
    ("ledger-storage.bicep", "kvca ledger appender", TABLE, "deployerPrincipalId"),
}

NEVER = {"Owner", "Contributor", "User Access Administrator", "Key Vault Administrator",
         "Key Vault Secrets Officer", "Key Vault Crypto Officer", "Storage Queue Data Contributor",
         "Storage Blob Data Owner", "Key Vault Crypto User"}
KEY_MATERIAL_ROLES = {"Key Vault Secrets User", "kvca CA key signer"}
# Exactly what kvca's calls need (vault-access.bicep cites the permission of each call).
CUSTOM_DATA_ACTIONS = {
    "kvca-certificate-operator": {"Microsoft.KeyVault/vaults/certificates/read",
                                  "Microsoft.KeyVault/vaults/certificates/create/action",
                                  "Microsoft.KeyVault/vaults/certificates/update/action"},
    "kvca-ca-key-signer": {"Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/sign/action"},
}


def _assignments():
    return [ra for template in all_templates() for ra in template.role_assignments()]


def test_the_role_assignments_are_exactly_the_intended_grants():
    actual = {(ra.resource.template.path.name, ra.role, ra.scope.type, ra.principal) for ra in _assignments()}
    assert actual == GRANTS, f"unexpected: {actual - GRANTS}; missing: {GRANTS - actual}"


@pytest.mark.parametrize("ra", _assignments(), ids=lambda ra: ra.where)
def test_no_assignment_grants_a_broad_role(ra):
    assert ra.role_id in ROLE_IDS.values() or ra.role_id[7:] in CUSTOM_ROLES, f"{ra.where}: unknown role {ra.role_id}"
    assert ra.role not in NEVER, f"{ra.where} grants {ra.role}"


def _definitions():
    return load("app/vault-access.bicep").role_definitions()


@pytest.mark.parametrize("seed", sorted(CUSTOM_DATA_ACTIONS))
def test_each_custom_role_grants_exactly_the_data_actions_kvca_uses(seed):
    template = load("app/vault-access.bicep")
    definition = _definitions()[seed]
    permissions = definition.get("properties.permissions")
    assert len(permissions) == 1
    granted = template.resolve(permissions[0]["dataActions"])
    assert set(granted) == CUSTOM_DATA_ACTIONS[seed] and len(granted) == len(set(granted))
    assert permissions[0]["actions"] == [] and permissions[0]["notDataActions"] == []
    assert not any("*" in action for action in granted)
    # Assignable only in the vault's resource group, where vault-access.bicep runs.
    [scope] = definition.get("properties.assignableScopes")
    accessor = scope["operator"]
    assert accessor["type"] == "property_accessor" and accessor["operands"]["operand_2"] == "id"
    assert call(accessor["operands"]["operand_1"]) == ("resource_group", {"resource_group_name": None,
                                                                           "subscription_id": None})
    assert definition.get("properties.type") == "CustomRole"


def test_no_custom_role_can_delete_purge_import_back_up_or_manage_issuers():
    forbidden = ("delete", "purge", "import", "backup", "restore", "recover", "certificatecas", "certificatecontacts",
                 "secrets", "decrypt", "unwrap", "keys/update", "keys/create", "release", "rotate")
    for seed in CUSTOM_DATA_ACTIONS:
        definition = _definitions()[seed]
        granted = load("app/vault-access.bicep").resolve(definition.get("properties.permissions")[0]["dataActions"])
        assert not [a for a in granted for word in forbidden if word in a.lower()], (seed, granted)


def test_the_signer_role_reaches_ca_access_through_main():
    main = load("main.bicep")
    assert accessor_path(main.modules["caAccess"].body["params"]["caSignerRoleId"]) == \
        ["vaultAccess", "outputs", "caSignerRoleId"]
    vault_access = load("app/vault-access.bicep")
    signer = _definitions()["kvca-ca-key-signer"]
    assert accessor_path(vault_access.outputs["caSignerRoleId"]["value"]) == [signer.symbol, "id"]


def test_the_app_identity_has_no_role_on_the_deployment_package_and_blob_rights_only_on_host_containers():
    template = load("app/storage.bicep")
    for ra in template.role_assignments():
        if ra.scope.symbol == "deploymentContainer":
            assert ra.principal == "deploymentPrincipalId", f"{ra.where}: {ra.principal} on the deployment package"
        if ra.principal == "functionPrincipalId" and ra.role.startswith("Storage Blob"):
            assert ra.scope.type == CONTAINER and ra.scope.name in ("azure-webjobs-hosts", "azure-webjobs-secrets")
    function = load("app/function.bicep").one("Microsoft.Web/sites")
    auth = function.get("properties.functionAppConfig.deployment.storage.authentication")
    assert auth["userAssignedIdentityResourceId"] == "deploymentIdentityId"
    main = load("main.bicep")
    assert accessor_path(main.modules["functionApp"].body["params"]["deploymentIdentityId"]) == \
        ["deploymentIdentity", "outputs", "id"]
    assert accessor_path(main.modules["storage"].body["params"]["deploymentPrincipalId"]) == \
        ["deploymentIdentity", "outputs", "principalId"]


@pytest.mark.parametrize("ra", _assignments(), ids=lambda ra: ra.where)
def test_assignment_name_is_guid_of_scope_principal_and_role(ra):
    assert ra.name_call and ra.name_call[0] == "guid", f"{ra.where}: name is not guid(...)"
    args = ra.name_call[1]
    assert accessor_path(args["base_string"]) == [ra.scope.symbol, "id"], f"{ra.where}: guid must start with the scope's id"
    assert args["extra_string_1"] == ra.principal, f"{ra.where}: guid's second part must be the principal"
    assert ra.resource.template.resolve(args["extra_string_2"]) == ra.role_id or args["extra_string_2"] == ra.role_ref, \
        f"{ra.where}: guid's third part must be the role"


@pytest.mark.parametrize("ra", _assignments(), ids=lambda ra: ra.where)
def test_managed_identities_are_declared_service_principals(ra):
    # principalType avoids the Graph lookup that fails for a fresh identity.
    if ra.principal != "deployerPrincipalId":
        assert ra.principal_type == "ServicePrincipal", ra.where


def test_ca_key_roles_reach_one_key_or_one_secret_named_after_the_ca():
    template = load("app/ca-access.bicep")
    for ra in template.role_assignments():
        assert ra.role in KEY_MATERIAL_ROLES
        # The CA's own key or secret, or (Secrets User only) its issuance policy's secret.
        own = ra.scope.name == "caName" or (ra.scope.name == "${caName}-policy" and ra.role == "Key Vault Secrets User"
                                            and ra.scope.type == "Microsoft.KeyVault/vaults/secrets")
        assert ra.scope.existing and own, f"{ra.where}: scope is not the CA's own object"
        assert ra.scope.parent and ra.scope.parent.type == "Microsoft.KeyVault/vaults"


def test_no_key_material_role_is_vault_wide_anywhere():
    for ra in _assignments():
        if ra.role in KEY_MATERIAL_ROLES:
            assert ra.scope.type in ("Microsoft.KeyVault/vaults/keys", "Microsoft.KeyVault/vaults/secrets"), \
                f"{ra.where}: {ra.role} on {ra.scope.type}"


def test_each_ca_key_mode_grants_exactly_one_key_role_and_both_read_the_policy():
    # vault-key: sign through the keys API, never read the CA's secret (the chain
    # comes through the certificates API; kvca_core/authority.py, tested in
    # tests/app/test_vault.py). exportable-secret: read the key from the secret.
    # Either way the app reads the CA's issuance policy, `<CA>-policy` (kvca_core/capolicy.py).
    template = load("app/ca-access.bicep")
    by_scope = {(ra.role, ra.scope.name): ra.resource.condition for ra in template.role_assignments()}
    assert by_scope == {
        ("kvca CA key signer", "caName"): {
            "operator": {"type": "equals", "operands": {"operand_1": "caKeyMode", "operand_2": "vault-key"}}},
        ("Key Vault Secrets User", "caName"): {
            "operator": {"type": "equals", "operands": {"operand_1": "caKeyMode", "operand_2": "exportable-secret"}}},
        ("Key Vault Secrets User", "${caName}-policy"): None,
    }
    assert template.params["caKeyMode"].decorators["allowed"] == ["vault-key", "exportable-secret"]
    assert load("main.bicep").params["caKeyMode"].default == "vault-key"


def test_ca_access_is_deployed_only_once_a_ca_is_named():
    main = load("main.bicep")
    condition = main.modules["caAccess"].condition
    assert condition["operator"]["type"] == "not"
    empty = call(condition["operator"]["operands"]["bool_value"])
    assert empty == ("empty", {"item_to_test": "caName"})
    assert main.params["caName"].default == ""


def test_the_deployer_role_is_optional_and_needs_a_principal():
    ra = next(ra for ra in load("app/vault-access.bicep").role_assignments() if ra.principal == "deployerPrincipalId")
    text = repr(ra.resource.condition)
    assert "grantDeployerCertificatesOfficer" in text and "deployerPrincipalId" in text


def test_main_hands_each_module_the_right_principal():
    main = load("main.bicep")
    expected = {
        "functionPrincipalId": ["functionIdentity", "outputs", "principalId"],
        "eventGridPrincipalId": ["eventGridIdentity", "outputs", "principalId"],
        "deployerPrincipalId": ["principalId"],
        "deploymentPrincipalId": ["deploymentIdentity", "outputs", "principalId"],
    }
    seen = set()
    for symbol, module in main.modules.items():
        for pname, want in expected.items():
            if pname in module.body["params"]:
                seen.add(pname)
                assert accessor_path(module.body["params"][pname]) == want, f"module {symbol}: {pname}"
    assert seen == set(expected)
