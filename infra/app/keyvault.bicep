// A new Key Vault for kvca's CAs and certificates (used when no existing vault
// is named). Azure RBAC only (no access policies), soft delete and purge
// protection: a deleted CA key can be recovered and never purged early.

@description('Name of the new Key Vault (3-24 letters, digits and hyphens).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the vault.')
param location string

@description('Tags applied to the vault.')
param tags object = {}

@description('Days a deleted vault object stays recoverable (7-90).')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Log Analytics workspace receiving the vault\'s audit log (who read or signed with which key).')
param logAnalyticsId string

// No @allowed on these two: checkov reads a parameter's default only without one (with one,
// CKV_AZURE_189 crashes on the parameter object); main.bicep passes exactly these values.
@description('publicNetworkAccess of the vault: Disabled (the default, private endpoints only) when main.bicep\'s vnetEnabled is true, Enabled otherwise.')
param publicNetworkAccess string = 'Disabled'

@description('Default action of the vault\'s network rules: Deny (the default) with private networking, Allow otherwise.')
param networkDefaultAction string = 'Deny'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: networkDefaultAction
      bypass: 'AzureServices'
    }
  }
}

// The audit trail of a CA: every sign, secret read and certificate merge.
resource vaultAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'kvca-audit'
  scope: vault
  properties: {
    workspaceId: logAnalyticsId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
