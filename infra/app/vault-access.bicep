// Everything that hangs off the vault, deployed in the vault's resource group
// (a new vault's, or an existing one's): kvca's two custom roles, the app's
// vault-wide certificate rights (no key, no secret), and
// the Event Grid system topic that turns the vault's certificate events into
// calls of the Functions app.

@description('Name of the Key Vault (new or existing) kvca works in.')
param vaultName string

@description('Tags applied to the system topic.')
param tags object = {}

@description('Principal ID of the Functions app\'s managed identity.')
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

@description('Give the deployer Key Vault Certificates Officer on the vault, to run `kvca ca create` and `kvca` certificate commands.')
param grantDeployerCertificatesOfficer bool = true

@description('Name of the Event Grid system topic on the vault.')
param systemTopicName string

@description('Resource ID of the user-assigned identity Event Grid dead-letters with.')
param eventGridIdentityId string

@description('Create the event subscription. It needs the function to exist (Event Grid checks the endpoint), so it is off until the code has been deployed once.')
param eventSubscriptionsEnabled bool

@description('Resource group of the Functions app.')
param functionAppResourceGroupName string

@description('Name of the Functions app.')
param functionAppName string

@description('Name of the Event Grid-triggered function inside the app.')
param eventGridFunctionName string

@description('Resource ID of the storage account receiving dead letters.')
param deadLetterStorageId string

@description('Blob container receiving dead letters.')
param deadLetterContainerName string

// Built-in role ID (learn.microsoft.com/azure/role-based-access-control/built-in-roles/security), for the deployer only: a person also
// imports CAs (`kvca ca import`), which the app never does.
var keyVaultCertificatesOfficer = 'a4417e6f-fecd-4de8-b567-7b0420556985'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

// The app's certificate rights: exactly the data actions of the calls kvca makes
// (learn.microsoft.com/azure/role-based-access-control/permissions/security,
// Microsoft.KeyVault DataActions; which REST call needs which permission is on
// each operation's page of learn.microsoft.com/rest/api/keyvault/certificates):
// - certificates/read: get a certificate, its policy, its pending request, list
//   certificates and versions;
// - certificates/create/action: create a certificate or a new version, and merge
//   (MergeCertificate "requires the certificates/create permission");
// - certificates/update/action: delete or cancel a pending request ("requires the
//   certificates/update permission"), set tags.
// Not granted, unlike Certificates Officer: delete, purge, recover, backup,
// restore, import, and issuers/contacts management (certificatecas/*,
// certificatecontacts/write).
var certificateDataActions = [
  'Microsoft.KeyVault/vaults/certificates/read'
  'Microsoft.KeyVault/vaults/certificates/create/action'
  'Microsoft.KeyVault/vaults/certificates/update/action'
]
// Signing with one CA's key (ca-access.bicep assigns it on that key alone): the
// keys API's sign, and the key's public part. Not Crypto User, which also
// carries keys/backup/action (a restorable copy of the CA key), update,
// decrypt, unwrap and the rotation policy.
var caSignerDataActions = [
  'Microsoft.KeyVault/vaults/keys/read'
  'Microsoft.KeyVault/vaults/keys/sign/action'
]

// Custom roles are defined at the vault's resource group and assignable only
// there. A role name is unique in the tenant, hence the vault's name in it.
resource certificateRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, vaultName, 'kvca-certificate-operator')
  properties: {
    roleName: 'kvca certificate operator (${vaultName})'
    description: 'Read, create, renew (new version), merge and cancel the pending request of Key Vault certificates; no delete, purge, import, backup or issuer management.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: certificateDataActions
        notDataActions: []
      }
    ]
  }
}

resource caSignerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, vaultName, 'kvca-ca-key-signer')
  properties: {
    roleName: 'kvca CA key signer (${vaultName})'
    description: 'Sign digests with, and read the public part of, the key it is assigned on; nothing else.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: caSignerDataActions
        notDataActions: []
      }
    ]
  }
}

resource functionCertificateOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionPrincipalId, certificateRole.id)
  scope: vault
  properties: {
    roleDefinitionId: certificateRole.id
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerCertificatesOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployerCertificatesOfficer && !empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, keyVaultCertificatesOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCertificatesOfficer)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

// A vault has at most one system topic; an existing vault that already has
// one must reuse it (docs/deploy.md, "Provision and deploy").
// Topic type spelling: https://learn.microsoft.com/azure/event-grid/event-schema-key-vault
resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: vault.location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${eventGridIdentityId}': {}
    }
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

// AzureFunction endpoint: Event Grid calls the function through the platform
// (no webhook URL or system key in the template), resourceId of
// Microsoft.Web/sites/functions (learn.microsoft.com/azure/event-grid/handler-functions).
// Retry: Event Grid's maximum (30 attempts within 24 h); what still fails is
// dead-lettered with the topic's identity, and the timer sweep catches up.
// https://learn.microsoft.com/azure/event-grid/manage-event-delivery
resource vaultCertificateEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (eventSubscriptionsEnabled) {
  parent: systemTopic
  name: 'kvca-certificate-events'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: resourceId(functionAppResourceGroupName, 'Microsoft.Web/sites/functions', functionAppName, eventGridFunctionName)
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.CertificateNearExpiry'
        'Microsoft.KeyVault.CertificateNewVersionCreated'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: eventGridIdentityId
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output vaultUri string = vault.properties.vaultUri
output caSignerRoleId string = caSignerRole.id
output systemTopicName string = systemTopic.name
// For the dead-letter alert (alerts.bicep).
output systemTopicId string = systemTopic.id
