// The storage account that publishes kvca's CRLs, and nothing else: one container `crl`, one
// blob `<CA>.crl` per issuing CA, read anonymously over plain HTTP.
//
// Why its own account: anonymous reads and plain HTTP are account-wide switches
// (allowBlobPublicAccess, supportsHttpsTrafficOnly), so turning them on next to the
// Functions host's leases and keys, the deployment package or the dead letters
// (storage.bicep) would expose those to the same settings. Here there is nothing to expose:
// a CRL is a signed public document, and its integrity comes from the CA's signature, not
// from the transport.
//
// Why HTTP: RFC 5280 4.2.1.13 distribution points are http (or ldap) URLs that relying parties
// fetch without TLS; RFC 5280 section 8 warns that an https CDP makes a circular dependency (the
// CRL's server certificate needs its own revocation check), and clients such as Windows
// CryptoAPI expect http CDPs. Blob storage serves http://<account>.blob.core.windows.net/... only with
// supportsHttpsTrafficOnly false (https://learn.microsoft.com/azure/storage/common/storage-require-secure-transfer).
//
// Writes are identity only: shared keys are off, and the app's identity holds Storage Blob
// Data Contributor on the `crl` container alone, over https (the SDK sends bearer tokens
// over TLS only).

@description('Name of the CRL storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the storage account.')
param location string

@description('Tags applied to the storage account.')
param tags object = {}

@description('Storage redundancy. Standard_LRS is the cheapest; pick Standard_ZRS where the region offers it.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param skuName string = 'Standard_LRS'

@description('Blob container the CRLs are published in; the CDP in leaves is http://<account>.blob.<suffix>/<container>/<CA>.crl.')
param containerName string = 'crl'

@description('Principal ID of the Functions app\'s managed identity, which publishes the CRLs.')
param functionPrincipalId string

// Built-in role (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles):
// Put Blob needs .../blobServices/containers/blobs/write, which Storage Blob Data Contributor is the
// narrowest built-in role to hold.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource crlStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_3:CRL distribution points are http URLs (RFC 5280 4.2.1.13); relying parties fetch CRLs without TLS, and the CRL is signed by its CA
  // checkov:skip=CKV_AZURE_35:relying parties anywhere fetch the CRLs, so the endpoint is public; writes need an Entra role (shared keys are off)
  // checkov:skip=CKV_AZURE_59:the account holds only public CRLs, read anonymously by design (RFC 5280 4.2.1.13); writes need an Entra role
  // checkov:skip=CKV_AZURE_206:holds nothing that cannot be re-made: the timer re-signs and re-publishes every CRL from the vault hourly, and the app route /api/crl serves the same CRL
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
    allowBlobPublicAccess: true
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: false
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Children with `parent:`, not nested (pycep-parser keeps only the last nested child; storage.bicep).
resource crlBlobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: crlStorage
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

// 'Blob': anonymous reads of a named blob, no anonymous listing of the container
// (https://learn.microsoft.com/azure/storage/blobs/anonymous-read-access-configure).
resource crlContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  // checkov:skip=CKV_AZURE_34:the container serves public CRLs to anonymous relying parties; public access Blob allows reading a named CRL, not listing
  parent: crlBlobServices
  name: containerName
  properties: {
    publicAccess: 'Blob'
  }
}

resource functionCrlPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(crlContainer.id, functionPrincipalId, storageBlobDataContributor)
  scope: crlContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = crlStorage.name
