// The Functions app's access to ONE key: the OCSP responder's, `<caName>-ocsp`.
// kvca's OCSP answers are signed by a delegated responder certificate whose key
// stays in the vault (kvca_core/revocation.py), so the app signs them through
// the keys API: kvca's CA key signer role (keys/read and keys/sign/action only,
// vault-access.bicep; not Crypto User, which can also back the key up) on that
// key, nothing wider (RBAC scope of
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

@description('Resource ID of kvca\'s CA key signer role (vault-access.bicep: keys/read and keys/sign/action).')
param caSignerRoleId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource responderKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = {
  parent: vault
  name: '${caName}-ocsp'
}

resource responderKeySigner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(responderKey.id, functionPrincipalId, caSignerRoleId)
  scope: responderKey
  properties: {
    roleDefinitionId: caSignerRoleId
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}
