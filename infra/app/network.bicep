// Private networking for kvca (main.bicep's vnetEnabled): a virtual network with one subnet the
// Functions app integrates with (its outbound traffic goes through the VNet) and one for the
// private endpoints of the Key Vault and the storage accounts, with the private DNS zones that
// make their usual host names resolve to those endpoints inside the VNet.
//
// Modelled on Azure-Samples/functions-quickstart-python-http-azd
// (https://github.com/Azure-Samples/functions-quickstart-python-http-azd/blob/7ed4638bc03858a3b2657f0dbbdd1db0af103ebb/infra/app/vnet.bicep,
// https://github.com/Azure-Samples/functions-quickstart-python-http-azd/blob/7ed4638bc03858a3b2657f0dbbdd1db0af103ebb/infra/app/storage-PrivateEndpoint.bicep: a private-endpoint subnet and an app subnet delegated
// to Microsoft.App/environments, one privatelink zone per storage service, each linked to the
// VNet), written as plain resources: the registry modules it uses cannot be read offline, and
// the tests read what pycep parses.
// Flex Consumption integrates with a subnet delegated to Microsoft.App/environments:
// learn.microsoft.com/azure/azure-functions/flex-consumption-how-to (virtual network integration).
// Zone names: learn.microsoft.com/azure/private-link/private-endpoint-dns (Azure services DNS zone
// configuration: Key Vault privatelink.vaultcore.azure.net, Storage privatelink.blob/table.<suffix>).

@description('Name of the virtual network.')
param name string

@description('Azure region of the virtual network (the app\'s region: VNet integration needs them in one region).')
param location string

@description('Tags applied to the network resources.')
param tags object = {}

@description('Address space of the virtual network.')
param addressPrefix string = '10.40.0.0/16'

@description('Address range of the subnet the Functions app integrates with (delegated to Microsoft.App/environments).')
param appSubnetPrefix string = '10.40.1.0/24'

@description('Address range of the subnet holding the private endpoints.')
param privateEndpointSubnetPrefix string = '10.40.2.0/24'

// Key Vault's zone has no per-cloud suffix function; this is the public cloud's
// (learn.microsoft.com/azure/private-link/private-endpoint-dns).
var vaultZoneName = 'privatelink.vaultcore.azure.net'
var blobZoneName = 'privatelink.blob.${environment().suffixes.storage}'
var tableZoneName = 'privatelink.table.${environment().suffixes.storage}'

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
  }
}

// Subnets with `parent:`, not nested, one after the other (Azure updates a VNet's subnets one at
// a time; pycep keeps only the last of several nested children).
resource appSubnet 'Microsoft.Network/virtualNetworks/subnets@2023-11-01' = {
  parent: vnet
  name: 'app'
  properties: {
    addressPrefix: appSubnetPrefix
    delegations: [
      {
        name: 'flex-consumption'
        properties: {
          serviceName: 'Microsoft.App/environments'
        }
      }
    ]
  }
}

resource privateEndpointSubnet 'Microsoft.Network/virtualNetworks/subnets@2023-11-01' = {
  parent: vnet
  name: 'private-endpoints'
  properties: {
    addressPrefix: privateEndpointSubnetPrefix
    privateEndpointNetworkPolicies: 'Disabled'
  }
  dependsOn: [
    appSubnet
  ]
}

resource vaultZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: vaultZoneName
  location: 'global'
  tags: tags
}

resource blobZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: blobZoneName
  location: 'global'
  tags: tags
}

resource tableZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: tableZoneName
  location: 'global'
  tags: tags
}

// Each zone answers inside this VNet only; no auto-registration (the zones hold the endpoints'
// records, written by the endpoints' zone groups).
resource vaultZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: vaultZone
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource blobZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: blobZone
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource tableZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: tableZone
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

output vnetId string = vnet.id
output appSubnetId string = appSubnet.id
output privateEndpointSubnetId string = privateEndpointSubnet.id
output vaultZoneId string = vaultZone.id
output blobZoneId string = blobZone.id
output tableZoneId string = tableZone.id
