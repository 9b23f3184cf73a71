// The Functions app's access to ONE CA's private key, never to the whole vault.
// A CA named NAME is the certificate NAME; its key and its secret share that name
// (learn.microsoft.com/azure/key-vault/certificates/about-certificates, "Composition of a
// certificate": the addressable key and secret have the certificate's name). Scoping a role to one key or one
// secret is supported by Key Vault RBAC:
// https://learn.microsoft.com/azure/key-vault/general/rbac-guide ("individual
// keys, secrets, and certificates" scope).
// Deployed only once the CA exists (caName set), so the scope resolves.
//
// One role, on one object, per mode. vault-key: kvca's CA key signer role
// (keys/read and keys/sign/action only, vault-access.bicep) on the CA's key;
// the app takes the CA's chain through the certificates API (`NAME-root`,
// covered by its certificate role) and never reads the CA's secret
// (kvca_core/authority.py). exportable-secret: Secrets User on the CA's
// secret, which holds the key and the chain.
//
// In both modes, Secrets User on the secret `<CA>-policy` alone: the CA's
// issuance policy, stored with the CA (kvca_core/capolicy.py), which
// every signer reads and the app never writes. The secret exists once
// `kvca ca create` / `kvca ca import` has run, the same two-step flow as the
// CA's key: create the CA, then set caName and provision.

@description('Name of the Key Vault holding the CA.')
param vaultName string

@description('Name of the issuing CA (the certificate, key and secret named so).')
@minLength(1)
param caName string

@description('vault-key: the CA key never leaves the vault; the app signs through the keys API (kvca CA key signer on that key only). exportable-secret: the app reads the CA\'s key from its secret (Key Vault Secrets User on that secret only).')
@allowed([
  'vault-key'
  'exportable-secret'
])
param caKeyMode string

@description('Principal ID of the Functions app\'s managed identity.')
param functionPrincipalId string

@description('Resource ID of kvca\'s CA key signer role (vault-access.bicep: keys/read and keys/sign/action).')
param caSignerRoleId string

// Built-in role ID (learn.microsoft.com/azure/role-based-access-control/built-in-roles/security):
// secrets/getSecret/action and readMetadata only.
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource caKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = {
  parent: vault
  name: caName
}

resource caSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: caName
}

// The CA's issuance policy (kvca_core/model.py POLICY_SUFFIX).
resource caPolicySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: '${caName}-policy'
}

resource caKeySigner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (caKeyMode == 'vault-key') {
  name: guid(caKey.id, functionPrincipalId, caSignerRoleId)
  scope: caKey
  properties: {
    roleDefinitionId: caSignerRoleId
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource caSecretReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (caKeyMode == 'exportable-secret') {
  name: guid(caSecret.id, functionPrincipalId, keyVaultSecretsUser)
  scope: caSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Reading the policy needs secrets/getSecret/action on that one secret; Secrets User
// (getSecret and readMetadata only) is the narrowest built-in role that has it.
resource caPolicyReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(caPolicySecret.id, functionPrincipalId, keyVaultSecretsUser)
  scope: caPolicySecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}
