// One user-assigned managed identity. kvca uses two: the Functions app's
// (vault, storage, monitoring, topic) and Event Grid's (dead-lettering only),
// so Event Grid never holds an identity that can sign with the CA's key.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region of the identity.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
