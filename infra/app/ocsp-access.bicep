// The Functions app's access to ONE key: the OCSP responder's, `<caName>-ocsp`.
// kvca's OCSP answers are signed by a delegated responder certificate whose key
// stays in the vault (kvca_core/revocation.py), so the app signs them through
// the keys API: Key Vault Crypto User on that key, nothing wider (RBAC scope of
// an individual key: https://learn.microsoft.com/azure/key-vault/general/rbac-guide).
// Deployed once the responder exists (`kvca ocsp-responder CA`), so the scope resolves.
// The CRL needs no role of its own: the CA's key role (ca-access.bicep) signs it.

@description('Name of the Key Vault holding the CA and its responder certificate.')
param vaultName string

@description('Name of the issuing CA; its responder certificate (and key) is `<caName>-ocsp`.')
@minLength(1)
param caName string

@description('Principal ID of the Functions app\'s managed identity.')
param functionPrincipalId string

var keyVaultCryptoUser = '12338af0-0e69-4776-bea7-57ae8d297424'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource responderKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = {
  parent: vault
  name: '${caName}-ocsp'
}

resource responderKeySigner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(responderKey.id, functionPrincipalId, keyVaultCryptoUser)
  scope: responderKey
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCryptoUser)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}
