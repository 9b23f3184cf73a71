// One private endpoint (main.bicep's vnetEnabled): a network interface in the private-endpoint
// subnet for one sub-resource (group ID) of one resource, and the zone group that writes its
// address into that sub-resource's privatelink DNS zone (network.bicep), so the resource's usual
// host name resolves to it inside the VNet.
// Shape: learn.microsoft.com/azure/templates/microsoft.network/privateendpoints and
// .../privateendpoints/privatednszonegroups; group IDs (vault, blob, table):
// learn.microsoft.com/azure/private-link/private-endpoint-overview (private-link resource).

@description('Name of the private endpoint.')
param name string

@description('Azure region of the private endpoint (the VNet\'s).')
param location string

@description('Tags applied to the private endpoint.')
param tags object = {}

@description('Resource ID of the private-endpoint subnet (network.bicep).')
param subnetId string

@description('Resource ID of the resource the endpoint reaches (a Key Vault or a storage account).')
param targetId string

@description('Sub-resource the endpoint reaches: vault, blob or table.')
@allowed([
  'vault'
  'blob'
  'table'
])
param groupId string

@description('Resource ID of the privatelink DNS zone of that sub-resource (network.bicep).')
param dnsZoneId string

resource endpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

resource zoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: groupId
        properties: {
          privateDnsZoneId: dnsZoneId
        }
      }
    ]
  }
}

output id string = endpoint.id
