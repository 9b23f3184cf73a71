// kvca's own Event Grid topic: the renewal engine publishes
// Kvca.CertificatePendingRequest here (Key Vault's system topic has no event for a pending
// request: learn.microsoft.com/azure/event-grid/event-schema-key-vault) and the same Event Grid
// function picks it up.
// Local (SAS key) auth is off: publishers use Entra ID and need
// EventGrid Data Sender on this topic, which only the Functions app gets.

@description('Name of the custom Event Grid topic.')
param name string

@description('Azure region of the topic.')
param location string

@description('Tags applied to the topic.')
param tags object = {}

@description('Principal ID of the Functions app\'s managed identity (gets EventGrid Data Sender on the topic).')
param functionPrincipalId string

@description('Resource ID of the user-assigned identity Event Grid dead-letters with.')
param eventGridIdentityId string

@description('Create the event subscription. It needs the function to exist (Event Grid checks the endpoint), so it is off until the code has been deployed once.')
param eventSubscriptionsEnabled bool

@description('Name of the Functions app.')
param functionAppName string

@description('Name of the Event Grid-triggered function inside the app.')
param eventGridFunctionName string

@description('Resource ID of the storage account receiving dead letters.')
param deadLetterStorageId string

@description('Blob container receiving dead letters.')
param deadLetterContainerName string

// EventGrid Data Sender (learn.microsoft.com/azure/role-based-access-control/built-in-roles/integration).
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  // checkov:skip=CKV_AZURE_193:the app publishes over the topic's public endpoint, with or without vnetEnabled (the private endpoints cover the vault and the storage it holds data in); local auth is off, only EventGrid Data Sender holders can publish
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${eventGridIdentityId}': {}
    }
  }
  properties: {
    inputSchema: 'EventGridSchema'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource functionDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, functionPrincipalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Same delivery settings as the vault's subscription (vault-access.bicep).
resource pendingRequestEvents 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = if (eventSubscriptionsEnabled) {
  parent: topic
  name: 'kvca-pending-requests'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: resourceId('Microsoft.Web/sites/functions', functionAppName, eventGridFunctionName)
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Kvca.CertificatePendingRequest'
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

output endpoint string = topic.properties.endpoint
output id string = topic.id
