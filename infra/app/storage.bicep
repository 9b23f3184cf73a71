// The storage account behind the Functions host (AzureWebJobsStorage), the
// Flex Consumption deployment package and Event Grid's dead letters, each
// reached by its own identity and container: the app's identity only the
// host's containers (and tables), the deployment identity only the package,
// Event Grid only the dead letters.
// Identity only: shared keys are off, so nothing can use a connection string.

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the storage account.')
param location string

@description('Tags applied to the storage account.')
param tags object = {}

@description('Storage redundancy. Standard_LRS is the cheapest; pick Standard_ZRS or Standard_GRS where the region offers it.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param skuName string = 'Standard_LRS'

@description('Blob container holding the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Blob container Event Grid writes undeliverable events to.')
param deadLetterContainerName string

@description('Principal ID of the Functions app\'s managed identity.')
param functionPrincipalId string

@description('Principal ID of the identity Event Grid dead-letters with.')
param eventGridPrincipalId string

@description('Principal ID of the identity the platform reads and writes the deployment package with (functionAppConfig.deployment.storage); never the identity the app\'s code runs as.')
param deploymentPrincipalId string

// No @allowed on these two: checkov reads a parameter's default only without one (with one,
// CKV_AZURE_189 crashes on the parameter object); main.bicep passes exactly these values.
@description('publicNetworkAccess of the storage account: Disabled (the default, private endpoints only) when main.bicep\'s vnetEnabled is true, Enabled otherwise.')
param publicNetworkAccess string = 'Disabled'

@description('Default action of the storage account\'s network rules: Deny (the default) with private networking, Allow otherwise.')
param networkDefaultAction string = 'Deny'

// Built-in role IDs (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage).
// The Functions host needs blob (leases for the timer trigger and host id in
// azure-webjobs-hosts, function keys in azure-webjobs-secrets) and table
// (diagnostic events: AZFD0003,
// https://learn.microsoft.com/azure/azure-functions/errors-diagnostics/diagnostic-events/azfd0003;
// a monthly table, so it cannot be scoped to one table). No queue role: kvca
// has no blob trigger and no Durable Functions, the two features that need queues.
// Blob access is Contributor on the host's two containers, not Owner on the
// account: Owner adds only ACL and ownership management of Data Lake
// (modifyPermissions, manageOwnership), which a flat namespace has no use for,
// and the account scope would reach the deployment package and the dead letters.
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// The host's containers (azure-functions-host: ScriptConstants.AzureWebJobsHostsContainerName
// and the blob secrets repository's "azure-webjobs-secrets"); declared here so
// that a role can be scoped to them before the host first starts.
var hostsContainerName = 'azure-webjobs-hosts'
var secretsContainerName = 'azure-webjobs-secrets'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206:holds host leases, the deployment package and dead letters (the timer sweep makes up for lost events); skuName raises redundancy where the region offers it
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
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

// Child resources are declared with `parent:` rather than nested: pycep-parser
// 0.7 keeps only the last of several nested children of one parent, and the
// tests read what pycep parses.
resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

// One resource per container and per assignment (no loops): the infra tests
// read the templates as pycep parses them.
resource hostsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: hostsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource secretsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: secretsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource functionHostsBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostsContainer.id, functionPrincipalId, storageBlobDataContributor)
  scope: hostsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionSecretsBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(secretsContainer.id, functionPrincipalId, storageBlobDataContributor)
  scope: secretsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The deployment package, apart: only the deployment identity may write it
// (`azd deploy` publishes through the app's OneDeploy endpoint, and the
// platform uploads the package with the identity named in
// functionAppConfig.deployment.storage, then instances read it with the same
// identity: https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to
// "deployment storage"). The identity kvca's code runs as has no role on it.
resource deploymentPackageWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentContainer.id, deploymentPrincipalId, storageBlobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: deploymentPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Event Grid writes dead letters with its own identity, to this one container
// only (deadLetterWithResourceIdentity, see eventgrid-topic.bicep).
resource eventGridDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, eventGridPrincipalId, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
