"""The CA's ledger (infra/app/ledger-storage.bicep): an append-only table of its own account.

The app may insert and read ledger entities and nothing else, on the ledger table alone: no
write (which covers merge and replace), no update, no delete, no table management. So a ledger
entry, once written, cannot be changed or removed by the app, whatever its code does.
"""

from __future__ import annotations

from bicepwalk import accessor_path, app_settings, call, load

LEDGER = "app/ledger-storage.bicep"
TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
APPEND_AND_READ = {
    "Microsoft.Storage/storageAccounts/tableServices/tables/entities/read",  # Query Entities
    "Microsoft.Storage/storageAccounts/tableServices/tables/entities/add/action",  # Insert Entity
}


def _ledger():
    return load(LEDGER)


def _appender():
    return _ledger().role_definitions()["kvca-ledger-appender"]


def test_the_ledger_has_an_account_of_its_own_with_identity_only_access():
    account = _ledger().one("Microsoft.Storage/storageAccounts")
    assert account.get("properties.allowSharedKeyAccess") is False
    assert account.get("properties.defaultToOAuthAuthentication") is True
    assert account.get("properties.allowBlobPublicAccess") is False
    assert account.get("properties.minimumTlsVersion") == "TLS1_2"
    assert account.get("properties.supportsHttpsTrafficOnly") is True
    # The CA's only record of what it signed and revoked: geo-redundant, not a choice.
    assert account.get("sku.name") == "Standard_GRS"
    main = load("main.bicep")
    assert main.module_paths["ledgerStorage"] == "app/ledger-storage.bicep"
    params = main.modules["ledgerStorage"].body["params"]
    assert params["name"] == "ledgerStorageName"
    # Not the host's account, nor the CRL's: each has its own name.
    names = {main.modules[m].body["params"]["name"] for m in ("storage", "crlStorage", "ledgerStorage")}
    assert len(names) == 3


def test_the_ledger_table_is_kvcaledger_and_made_by_the_template():
    template = _ledger()
    table = template.one(TABLE)
    assert table.name == "tableName" and template.params["tableName"].default == "kvcaledger"
    assert table.parent.type == "Microsoft.Storage/storageAccounts/tableServices"
    assert table.parent.parent.type == "Microsoft.Storage/storageAccounts"
    assert load("main.bicep").variables["ledgerTableName"] == "kvcaledger"


def test_the_appender_role_grants_exactly_insert_and_read():
    template = _ledger()
    appender = _appender()
    [permissions] = appender.get("properties.permissions")
    granted = template.resolve(permissions["dataActions"])
    assert set(granted) == APPEND_AND_READ and len(granted) == 2
    for word in ("write", "delete", "update", "*"):
        assert not [a for a in granted if word in a], f"the ledger role must not {word}"
    assert permissions["actions"] == [] and permissions["notActions"] == [] and permissions["notDataActions"] == []
    assert appender.get("properties.type") == "CustomRole"
    assert "kvca ledger appender" in repr(appender.get("properties.roleName"))


def test_the_appender_role_is_assignable_only_in_its_resource_group():
    [scope] = _appender().get("properties.assignableScopes")
    accessor = scope["operator"]
    assert accessor["type"] == "property_accessor" and accessor["operands"]["operand_2"] == "id"
    assert call(accessor["operands"]["operand_1"]) == ("resource_group", {"resource_group_name": None,
                                                                           "subscription_id": None})


def test_the_app_holds_the_appender_role_on_the_ledger_table_and_nothing_else_on_the_account():
    template = _ledger()
    by_principal = {}
    for ra in template.role_assignments():
        by_principal.setdefault(ra.principal, []).append(ra)
    [appender] = by_principal["functionPrincipalId"]
    assert appender.role == "kvca ledger appender" and appender.definition is _appender()
    assert appender.scope.type == TABLE and appender.scope.symbol == template.one(TABLE).symbol
    assert appender.principal_type == "ServicePrincipal"
    # guid(scope, principal, role)
    args = appender.name_call[1]
    assert accessor_path(args["base_string"]) == [appender.scope.symbol, "id"]
    assert args["extra_string_1"] == "functionPrincipalId"
    assert accessor_path(args["extra_string_2"]) == [_appender().symbol, "id"]
    assert set(by_principal) == {"functionPrincipalId", "deployerPrincipalId"}
    main = load("main.bicep")
    assert accessor_path(main.modules["ledgerStorage"].body["params"]["functionPrincipalId"]) == \
        ["functionIdentity", "outputs", "principalId"]


def test_the_deployer_may_append_to_and_read_the_ledger_and_nobody_may_change_it():
    """The operator's CLI records what it signs before it merges and records what it revokes: the same
    insert-only role as the app, on the table alone."""
    template = _ledger()
    [deployer] = [ra for ra in template.role_assignments() if ra.principal == "deployerPrincipalId"]
    assert deployer.role == "kvca ledger appender" and deployer.scope.type == TABLE
    condition = repr(deployer.resource.condition)
    assert "grantDeployerLedgerAppender" in condition and "deployerPrincipalId" in condition
    assert template.params["grantDeployerLedgerAppender"].default is True
    main = load("main.bicep")
    params = main.modules["ledgerStorage"].body["params"]
    assert params["deployerPrincipalId"] == "principalId"
    assert params["grantDeployerLedgerAppender"] == "grantDeployerLedgerAppender"
    # No role that can update or delete entities is granted on the ledger account by default.
    roles = {ra.role for ra in template.role_assignments()}
    assert roles == {"kvca ledger appender"}


def test_the_app_and_azd_get_the_ledger_table_url():
    main = load("main.bicep")
    assert main.variables["ledgerTableUrl"] == \
        "https://${ledgerStorageName}.table.${environment().suffixes.storage}/${ledgerTableName}"
    assert main.modules["functionApp"].body["params"]["ledgerTableUrl"] == "ledgerTableUrl"
    settings = app_settings(load("app/function.bicep").one("Microsoft.Web/sites"))
    assert settings["KVCA_LEDGER_TABLE_URL"] == "ledgerTableUrl"
    assert main.outputs["KVCA_LEDGER_TABLE_URL"]["value"] == "ledgerTableUrl"


def test_writes_and_deletes_on_the_ledger_are_logged_to_log_analytics():
    # The app only inserts: any update or delete in this log is a break-glass correction or a breach.
    template = _ledger()
    audit = template.one("Microsoft.Insights/diagnosticSettings")
    assert audit.body["scope"] == template.one("Microsoft.Storage/storageAccounts/tableServices").symbol
    assert audit.get("properties.workspaceId") == "logAnalyticsId"
    assert {log["category"] for log in audit.get("properties.logs") if log["enabled"]} == {"StorageWrite", "StorageDelete"}
    assert accessor_path(load("main.bicep").modules["ledgerStorage"].body["params"]["logAnalyticsId"]) == \
        ["monitoring", "outputs", "logAnalyticsId"]
