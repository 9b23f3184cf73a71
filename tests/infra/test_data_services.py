"""Storage, Key Vault and monitoring: identity only, no shared keys, a vault
that cannot lose a CA key, and a choice between a new and an existing vault."""

from __future__ import annotations

from bicepwalk import accessor_path, call, load


def test_storage_refuses_shared_keys_public_blobs_and_old_tls():
    storage = load("app/storage.bicep").one("Microsoft.Storage/storageAccounts")
    assert storage.get("properties.allowSharedKeyAccess") is False
    assert storage.get("properties.defaultToOAuthAuthentication") is True
    assert storage.get("properties.allowBlobPublicAccess") is False
    assert storage.get("properties.minimumTlsVersion") == "TLS1_2"
    assert storage.get("properties.supportsHttpsTrafficOnly") is True


def test_storage_has_private_deployment_and_dead_letter_containers():
    template = load("app/storage.bicep")
    containers = {r.name: r for r in template.of_type("Microsoft.Storage/storageAccounts/blobServices/containers")}
    assert set(containers) == {"deploymentContainerName", "deadLetterContainerName",
                               "azure-webjobs-hosts", "azure-webjobs-secrets"}
    for container in containers.values():
        assert container.get("properties.publicAccess") == "None"


def test_new_vault_uses_rbac_soft_delete_and_purge_protection():
    vault = load("app/keyvault.bicep").one("Microsoft.KeyVault/vaults")
    assert vault.get("properties.enableRbacAuthorization") is True
    assert vault.get("properties.enableSoftDelete") is True
    assert vault.get("properties.enablePurgeProtection") is True
    assert vault.get("properties.accessPolicies") is None, "RBAC only: no access policies"


def test_new_vault_sends_its_audit_log_to_log_analytics():
    template = load("app/keyvault.bicep")
    audit = template.one("Microsoft.Insights/diagnosticSettings")
    assert audit.body["scope"] == "vault"
    assert audit.get("properties.workspaceId") == "logAnalyticsId"
    assert {"categoryGroup": "audit", "enabled": True} in audit.get("properties.logs")


def test_an_existing_vault_replaces_the_new_one_when_named():
    main = load("main.bicep")
    assert main.params["existingKeyVaultName"].default == ""
    assert main.variables["useExistingVault"] == {
        "operator": {"type": "not", "operands": {"bool_value": {
            "function": {"type": "empty", "parameters": {"item_to_test": "existingKeyVaultName"}}}}}}
    assert main.modules["keyVault"].condition == {"operator": {"type": "not", "operands": {"bool_value": "useExistingVault"}}}
    # Vault-side modules run in the vault's resource group, whichever vault it is.
    for symbol in ("vaultAccess", "caAccess"):
        scope = call(main.modules[symbol].body["scope"])
        assert scope and scope[0] == "resource_group"
        assert scope[1]["resource_group_name"] == "vaultResourceGroupName"
        assert main.modules[symbol].body["params"]["vaultName"] == "vaultName"
    assert "existingKeyVaultName" in repr(main.variables["vaultName"])


def test_application_insights_accepts_only_entra_authenticated_telemetry():
    template = load("app/monitoring.bicep")
    insights = template.one("Microsoft.Insights/components")
    assert insights.get("properties.DisableLocalAuth") is True
    workspace = template.one("Microsoft.OperationalInsights/workspaces")
    assert accessor_path(insights.get("properties.WorkspaceResourceId")) == [workspace.symbol, "id"]
    assert workspace.get("properties.features.disableLocalAuth") is True


def test_three_identities_the_app_the_deployment_package_and_event_grid():
    main = load("main.bicep")
    identities = [s for s, m in main.modules.items() if main.module_paths[s] == "app/identity.bicep"]
    assert sorted(identities) == ["deploymentIdentity", "eventGridIdentity", "functionIdentity"]
    created = load("app/identity.bicep").one("Microsoft.ManagedIdentity/userAssignedIdentities")
    assert not created.existing
