// kvca's ledger: every certificate signed and every revocation, one entity each, appended to
// the table `kvcaledger` of a storage account of its own, through Entra ID (no account keys).
//
// Why its own account: the app's identity may only add and read ledger entities, never change
// or remove one. On the host's account (storage.bicep) the app needs Storage Table Data
// Contributor at account scope (the host's diagnostic tables are new each month), which would
// reach any table there, the ledger's too. Here the app holds one custom role, on the ledger
// table alone, with exactly two data actions:
// - tables/entities/read: Query Entities;
// - tables/entities/add/action: Insert Entity.
// Insert Or Merge / Insert Or Replace also need entities/update/action, Update and Merge Entity
// need update/action or write, Delete Entity needs delete, Create Table needs tables/write
// (learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-directory,
// "Permissions for Table service operations"): the app can do none of them, so an entry once
// written stays as it was, and the table is created here, not by the app.
//
// The deployer (AZURE_PRINCIPAL_ID) may read the ledger for audit (Storage Table Data Reader on
// the table); nobody is granted update or delete by default (docs/deploy.md, "The ledger").

@description('Name of the ledger storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the storage account.')
param location string

@description('Tags applied to the storage account.')
param tags object = {}

@description('Name of the ledger table.')
param tableName string = 'kvcaledger'

@description('Principal ID of the Functions app\'s managed identity, which appends to and reads the ledger.')
param functionPrincipalId string

@description('Object ID of the deploying user or service principal (AZURE_PRINCIPAL_ID); empty: none.')
param deployerPrincipalId string = ''

@description('Type of the deploying principal.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'

@description('Give the deployer the same append-only role as the app on the ledger table: the kvca CLI records what it signs there (request --sign, sign-csr, ca create) and what it revokes, and reads it for audit (kvca ledger). Never update or delete.')
param grantDeployerLedgerAppender bool = true

@description('Log Analytics workspace receiving the ledger table\'s write and delete log (who changed the ledger, should anyone ever be granted to).')
param logAnalyticsId string

// No @allowed on these two: checkov reads a parameter's default only without one (with one,
// CKV_AZURE_189 crashes on the parameter object); main.bicep passes exactly these values.
@description('publicNetworkAccess of the ledger account: Disabled (the default, private endpoints only) when main.bicep\'s vnetEnabled is true, Enabled otherwise.')
param publicNetworkAccess string = 'Disabled'

@description('Default action of the ledger account\'s network rules: Deny (the default) with private networking, Allow otherwise.')
param networkDefaultAction string = 'Deny'

// Built-in role (learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage):
// Storage Table Data Reader, tables/read and tables/entities/read only.
var ledgerDataActions = [
  'Microsoft.Storage/storageAccounts/tableServices/tables/entities/read'
  'Microsoft.Storage/storageAccounts/tableServices/tables/entities/add/action'
]

resource ledgerStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  // Geo-redundant, not a choice: the ledger is the CA's only record of what it signed and
  // revoked, and it is small.
  sku: {
    name: 'Standard_GRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: networkDefaultAction
      bypass: 'AzureServices'
    }
  }
}

// Children with `parent:`, not nested (pycep-parser keeps only the last nested child; storage.bicep).
resource tableServices 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: ledgerStorage
  name: 'default'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableServices
  name: tableName
}

// Every write and delete on the ledger's table service, with the caller's identity, goes to Log
// Analytics (StorageWrite, StorageDelete:
// learn.microsoft.com/azure/azure-monitor/reference/supported-logs/microsoft-storage-storageaccounts-tableservices-logs).
// The app only inserts, so an update or delete there is a break-glass correction, or a breach.
resource ledgerAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'kvca-ledger-audit'
  scope: tableServices
  properties: {
    workspaceId: logAnalyticsId
    logs: [
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

// Defined in this resource group and assignable only here; a role name is unique in the
// tenant, hence the account's name in it (as vault-access.bicep names kvca's vault roles).
resource ledgerAppenderRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, name, 'kvca-ledger-appender')
  properties: {
    roleName: 'kvca ledger appender (${name})'
    description: 'Insert and read entities of the table it is assigned on; no update, merge, replace or delete of an entity, and no table management.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: ledgerDataActions
        notDataActions: []
      }
    ]
  }
}

// The narrowest scope that works: the ledger table (Azure RBAC scopes storage data roles to a
// single table: learn.microsoft.com/azure/storage/tables/assign-azure-role-data-access).
resource functionLedgerAppender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(ledgerTable.id, functionPrincipalId, ledgerAppenderRole.id)
  scope: ledgerTable
  properties: {
    roleDefinitionId: ledgerAppenderRole.id
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The operator's CLI signs and revokes too (kvca request --sign, sign-csr, revoke): what it signs is
// recorded before it is merged, so the deployer needs the same insert as the app, and no more.
resource deployerLedgerAppender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployerLedgerAppender && !empty(deployerPrincipalId)) {
  name: guid(ledgerTable.id, deployerPrincipalId, ledgerAppenderRole.id)
  scope: ledgerTable
  properties: {
    roleDefinitionId: ledgerAppenderRole.id
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

output name string = ledgerStorage.name
output id string = ledgerStorage.id
output tableName string = ledgerTable.name
