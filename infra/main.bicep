// kvca on Azure: `azd up` deploys this at subscription scope.
// Layout follows Azure-Samples functions-quickstart-python-http-azd
// (infra/main.bicep): a resource group named after the azd environment,
// modules under app/, names from a token unique to subscription+env+region.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment (AZURE_ENV_NAME); names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Azure region of every resource (AZURE_LOCATION). Must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object ID of the user or service principal running azd (AZURE_PRINCIPAL_ID); empty: no role for the deployer.')
param principalId string = ''

@description('Type of the principal running azd (AZURE_PRINCIPAL_TYPE).')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

@description('Give the deployer Key Vault Certificates Officer on the vault, so `kvca ca create` and the other certificate commands work from their machine.')
param grantDeployerCertificatesOfficer bool = true

@description('Give the deployer the app\'s append-only role on the ledger table (insert and read): the kvca CLI records what it signs and revokes there, and audits it; nobody gets update or delete on it.')
param grantDeployerLedgerAppender bool = true

@description('Name of an existing Key Vault (RBAC authorisation) to use instead of creating one; empty: create a new vault.')
param existingKeyVaultName string = ''

@description('Resource group of the existing Key Vault; empty: the resource group this deployment creates.')
param existingKeyVaultResourceGroupName string = ''

@description('Name of the issuing CA the app signs with (`kvca ca create NAME`); empty until the CA exists. Scopes the app\'s key or secret role to that one CA.')
param caName string = ''

@description('How the app reaches the CA key. vault-key: the key stays in the vault and the app signs through the keys API (kvca CA key signer, keys/read and keys/sign only, on that key only). exportable-secret: the app reads the key from the CA\'s secret (Key Vault Secrets User on that secret only).')
@allowed([
  'vault-key'
  'exportable-secret'
])
param caKeyMode string = 'vault-key'

@description('Create the Event Grid subscriptions to the app\'s Event Grid function. Event Grid checks that the function exists, so leave this false for the first `azd up` and set it true once the code is deployed.')
param eventSubscriptionsEnabled bool = false

@description('KVCA_RENEW_BEFORE_DAYS: renew a certificate when it expires within this many days.')
@minValue(1)
param renewBeforeDays int = 30

@description('KVCA_SWEEP_BUDGET_SECONDS: seconds a sweep starts new work for; it then finishes what it started and reports the rest. Keep it below host.json functionTimeout (600 s) minus a margin.')
@minValue(1)
param sweepBudgetSeconds int = 510

@description('KVCA_SWEEP_READ_SHARE: share (above 0, at most 1) of Key Vault\'s 4,000 transactions per 10 s that a sweep may use.')
param sweepReadShare string = '0.25'

@description('KVCA_CREATE_LIMIT: certificate creates per 10 s kvca starts in the vault across all its instances (Key Vault: 20 for software keys, an HSM key counts 2).')
@minValue(1)
param createLimit int = 20

@description('KVCA_CONCURRENCY: how many certificates a sweep works on at once.')
@minValue(1)
param concurrency int = 8

@description('KVCA_SWEEP_SCHEDULE: NCRONTAB schedule (6 fields) of the timer sweep.')
param sweepSchedule string = '0 0 */6 * * *'

@description('KVCA_ISSUANCE_POLICY: JSON issuance policy (one policy, or {"<ca>": {...}, "*": {...}}); a CA with no entry is refused.')
param issuancePolicy string = ''

@description('KVCA_ISSUING_CAS: comma-separated CA certificates that may sign without the kvca-role=intermediate tag.')
param issuingCas string = ''

@description('KVCA_CRL_URL: CRL distribution point written into issued certificates; empty for none.')
param crlUrl string = ''

@description('KVCA_CRL_SCHEDULE: NCRONTAB schedule (6 fields) of the timer that re-signs and publishes every CA\'s CRL; hourly, well before the CRL\'s 7-day nextUpdate.')
param crlSchedule string = '0 0 * * * *'

@description('KVCA_AIA_URL: CA Issuers (AIA) URL written into issued certificates; empty for none.')
param aiaUrl string = ''

@description('KVCA_ACCESS_RULES: JSON rules saying which HTTP callers (app roles, object ids, bare function keys) may do what; empty: every function-key holder may do everything.')
param accessRules string = ''

@description('KVCA_FORCE_RENEW_MIN_AGE_MINUTES: an HTTP renewal on demand (plain or forced) is refused while the current version is younger than this.')
@minValue(1)
param forceRenewMinAgeMinutes int = 60

@description('KVCA_ROTATION_WINDOW_HOURS: after `kvca ca rotate`, the sweep moves every leaf of the older intermediate onto the new one within this many hours.')
@minValue(1)
param rotationWindowHours int = 72

@description('Application (client) ID of an Entra app registration with kvca\'s app roles (infra/app-roles.json), for App Service authentication; empty: none, every HTTP caller is a function-key caller.')
param authClientId string = ''
@description('Turn on kvca\'s OCSP responder: sets KVCA_OCSP_URL, so leaves carry it. The answers are signed by the CA\'s own key, which the app already signs leaves with: no role of its own.')
param ocspEnabled bool = false

@description('KVCA_CA_RENEW_BEFORE_DAYS: warn (inventory, sweep, health, webhook) when a CA certificate expires within this many days.')
@minValue(1)
param caRenewBeforeDays int = 398

@description('KVCA_NOTIFY_WEBHOOK_URL: https webhook (Slack incoming webhook, Teams Workflows "When a Teams webhook request is received") told of failed renewals, CAs nearing expiry and revocations; empty for none.')
@secure()
param notifyWebhookUrl string = ''

@description('Email address Azure Monitor sends kvca\'s alerts to (failed renewals, dead-lettered events); empty for none.')
param alertEmail string = ''

@description('HTTPS webhook Azure Monitor posts kvca\'s alerts to, in the common alert schema; empty for none. With neither this nor alertEmail the alert rules still fire (Azure Monitor > Alerts) but tell nobody.')
@secure()
param alertWebhookUrl string = ''

@description('Python version of the Functions app: one kvca is tested on (3.11 or 3.13).')
@allowed([
  '3.11'
  '3.13'
])
param pythonVersion string = '3.11'

@description('Private networking: a VNet the app integrates with, private endpoints (and DNS zones) for the Key Vault, the host storage (blob, table) and the ledger (table), and public network access off on those. The CRL account stays public (relying parties fetch CRLs anonymously) and so does the app\'s inbound endpoint (OCSP, CRL, Event Grid). The kvca CLI then reaches the vault only from inside the VNet.')
param vnetEnabled bool = false

@description('EST re-enrollment by the device\'s current TLS client certificate (App Service\'s X-ARR-ClientCert); off by default: whether Flex Consumption passes client certificates is not documented, so try it on your app first (docs/devices.md).')
param estClientCertificates bool = false

@description('Most instances the Functions app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var resourceGroupName = 'rg-${environmentName}'
var functionAppName = 'func-kvca-${resourceToken}'
// The Event Grid-triggered function of the app; blueprints/** registers a
// function under exactly this name.
var eventGridFunctionName = 'kvca_eventgrid'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
var deadLetterContainerName = 'eventgrid-deadletter'
var useExistingVault = !empty(existingKeyVaultName)
var vaultName = useExistingVault ? existingKeyVaultName : 'kv-kvca-${take(resourceToken, 12)}'
var vaultResourceGroupName = useExistingVault && !empty(existingKeyVaultResourceGroupName) ? existingKeyVaultResourceGroupName : resourceGroupName
// The vault's URL is fixed by its name; built here so the settings do not
// wait for (or depend on) the vault module.
var vaultUrl = 'https://${vaultName}${environment().suffixes.keyvaultDns}/'
// The app's own URL is fixed by its name as well. The OCSP responder is an anonymous route
// of the app (blueprints/revocation.py), and so is /api/crl/<CA>.crl, kept as a fallback.
var appBaseUrl = 'https://${functionAppName}.azurewebsites.net'
// The CRLs are published as blobs of their own storage account (app/crl-storage.bicep), read
// anonymously over plain HTTP: the CDP written into leaves is http (RFC 5280 4.2.1.13), which the
// httpsOnly app cannot serve. Both URLs follow from the account's name; nobody types them. The
// app writes over https with its identity.
var crlStorageName = 'stkvcacrl${take(resourceToken, 14)}'
var crlContainerName = 'crl'
var crlBlobHost = '${crlStorageName}.blob.${environment().suffixes.storage}'
var crlContainerUrl = 'https://${crlBlobHost}/${crlContainerName}'
// {ca} and {version} are left for kvca to fill in at signing (KVCA_CRL_URL): each key version of
// each CA has a CRL of its own, so a leaf of an older key still checks after a rotation.
var derivedCrlUrl = !empty(crlUrl) ? crlUrl : 'http://${crlBlobHost}/${crlContainerName}/{ca}/{version}.crl'
var ocspBaseUrl = '${appBaseUrl}/api/ocsp'
// The CA's ledger (app/ledger-storage.bicep): a table of its own account, where the app may only
// insert and read. Its URL follows from the names, as the CRL's does.
var ledgerStorageName = 'stkvcaldg${take(resourceToken, 14)}'
var ledgerTableName = 'kvcaledger'
var ledgerTableUrl = 'https://${ledgerStorageName}.table.${environment().suffixes.storage}/${ledgerTableName}'

// Private networking (vnetEnabled): the modules are private by default (publicNetworkAccess
// Disabled, network rules Deny); they are opened only when there is no VNet to reach them through.
// Named apart from the modules' parameters: checkov resolves a name across all files at once, and
// a variable here named like a module's parameter would shadow that parameter's default.
var dataPublicNetworkAccess = vnetEnabled ? 'Disabled' : 'Enabled'
var dataNetworkDefaultAction = vnetEnabled ? 'Deny' : 'Allow'
var vaultId = resourceId(subscription().subscriptionId, vaultResourceGroupName, 'Microsoft.KeyVault/vaults', vaultName)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

module functionIdentity 'app/identity.bicep' = {
  name: 'function-identity'
  scope: rg
  params: {
    name: 'id-kvca-func-${resourceToken}'
    location: location
    tags: tags
  }
}

// The platform's identity for the deployment package, apart from the app's:
// a stolen token of the app's identity cannot replace the code.
module deploymentIdentity 'app/identity.bicep' = {
  name: 'deployment-identity'
  scope: rg
  params: {
    name: 'id-kvca-deploy-${resourceToken}'
    location: location
    tags: tags
  }
}

module eventGridIdentity 'app/identity.bicep' = {
  name: 'eventgrid-identity'
  scope: rg
  params: {
    name: 'id-kvca-eventgrid-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-kvca-${resourceToken}'
    applicationInsightsName: 'appi-kvca-${resourceToken}'
    location: location
    tags: tags
    functionPrincipalId: functionIdentity.outputs.principalId
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stkvca${take(resourceToken, 17)}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    functionPrincipalId: functionIdentity.outputs.principalId
    eventGridPrincipalId: eventGridIdentity.outputs.principalId
    deploymentPrincipalId: deploymentIdentity.outputs.principalId
    publicNetworkAccess: dataPublicNetworkAccess
    networkDefaultAction: dataNetworkDefaultAction
  }
}

module crlStorage 'app/crl-storage.bicep' = {
  name: 'crl-storage'
  scope: rg
  params: {
    name: crlStorageName
    location: location
    tags: tags
    containerName: crlContainerName
    functionPrincipalId: functionIdentity.outputs.principalId
  }
}

module ledgerStorage 'app/ledger-storage.bicep' = {
  name: 'ledger-storage'
  scope: rg
  params: {
    name: ledgerStorageName
    location: location
    tags: tags
    tableName: ledgerTableName
    functionPrincipalId: functionIdentity.outputs.principalId
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
    grantDeployerLedgerAppender: grantDeployerLedgerAppender
    logAnalyticsId: monitoring.outputs.logAnalyticsId
    publicNetworkAccess: dataPublicNetworkAccess
    networkDefaultAction: dataNetworkDefaultAction
  }
}

module keyVault 'app/keyvault.bicep' = if (!useExistingVault) {
  name: 'keyvault'
  scope: rg
  params: {
    name: vaultName
    location: location
    tags: tags
    logAnalyticsId: monitoring.outputs.logAnalyticsId
    publicNetworkAccess: dataPublicNetworkAccess
    networkDefaultAction: dataNetworkDefaultAction
  }
}

module network 'app/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-kvca-${resourceToken}'
    location: location
    tags: tags
  }
}

// One private endpoint per sub-resource the app reaches: the vault, the host storage's blob
// (host leases and keys, the deployment package) and table (the host's diagnostic events)
// services, and the ledger's table service. No queue endpoint: kvca has no queue trigger and no
// Durable Functions (storage.bicep).
module vaultEndpoint 'app/private-endpoint.bicep' = if (vnetEnabled) {
  name: 'pe-vault'
  scope: rg
  params: {
    name: 'pe-kvca-vault-${resourceToken}'
    location: location
    tags: tags
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: vaultId
    groupId: 'vault'
    dnsZoneId: network.outputs.vaultZoneId
  }
  dependsOn: [
    keyVault
  ]
}

module hostBlobEndpoint 'app/private-endpoint.bicep' = if (vnetEnabled) {
  name: 'pe-host-blob'
  scope: rg
  params: {
    name: 'pe-kvca-blob-${resourceToken}'
    location: location
    tags: tags
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: storage.outputs.id
    groupId: 'blob'
    dnsZoneId: network.outputs.blobZoneId
  }
}

module hostTableEndpoint 'app/private-endpoint.bicep' = if (vnetEnabled) {
  name: 'pe-host-table'
  scope: rg
  params: {
    name: 'pe-kvca-table-${resourceToken}'
    location: location
    tags: tags
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: storage.outputs.id
    groupId: 'table'
    dnsZoneId: network.outputs.tableZoneId
  }
}

module ledgerEndpoint 'app/private-endpoint.bicep' = if (vnetEnabled) {
  name: 'pe-ledger-table'
  scope: rg
  params: {
    name: 'pe-kvca-ledger-${resourceToken}'
    location: location
    tags: tags
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: ledgerStorage.outputs.id
    groupId: 'table'
    dnsZoneId: network.outputs.tableZoneId
  }
}

module vaultAccess 'app/vault-access.bicep' = {
  name: 'vault-access'
  scope: resourceGroup(vaultResourceGroupName)
  params: {
    vaultName: vaultName
    tags: tags
    functionPrincipalId: functionIdentity.outputs.principalId
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
    grantDeployerCertificatesOfficer: grantDeployerCertificatesOfficer
    systemTopicName: 'evgt-kvca-${resourceToken}'
    eventGridIdentityId: eventGridIdentity.outputs.id
    eventSubscriptionsEnabled: eventSubscriptionsEnabled
    functionAppResourceGroupName: rg.name
    functionAppName: functionAppName
    eventGridFunctionName: eventGridFunctionName
    deadLetterStorageId: storage.outputs.id
    deadLetterContainerName: deadLetterContainerName
  }
  dependsOn: [
    keyVault
    functionApp
  ]
}

module caAccess 'app/ca-access.bicep' = if (!empty(caName)) {
  name: 'ca-access'
  scope: resourceGroup(vaultResourceGroupName)
  params: {
    vaultName: vaultName
    caName: caName
    caKeyMode: caKeyMode
    functionPrincipalId: functionIdentity.outputs.principalId
    caSignerRoleId: vaultAccess.outputs.caSignerRoleId
  }
  dependsOn: [
    keyVault
  ]
}

module topic 'app/eventgrid-topic.bicep' = {
  name: 'eventgrid-topic'
  scope: rg
  params: {
    name: 'evgt-kvca-requests-${resourceToken}'
    location: location
    tags: tags
    functionPrincipalId: functionIdentity.outputs.principalId
    eventGridIdentityId: eventGridIdentity.outputs.id
    eventSubscriptionsEnabled: eventSubscriptionsEnabled
    functionAppName: functionAppName
    eventGridFunctionName: eventGridFunctionName
    deadLetterStorageId: storage.outputs.id
    deadLetterContainerName: deadLetterContainerName
  }
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-kvca-${resourceToken}'
    location: location
    tags: tags
    identityId: functionIdentity.outputs.id
    identityClientId: functionIdentity.outputs.clientId
    deploymentIdentityId: deploymentIdentity.outputs.id
    authClientId: authClientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    estClientCertificates: estClientCertificates
    vaultUrl: vaultUrl
    vaultName: vaultName
    renewBeforeDays: renewBeforeDays
    concurrency: concurrency
    sweepBudgetSeconds: sweepBudgetSeconds
    sweepReadShare: sweepReadShare
    createLimit: createLimit
    sweepSchedule: sweepSchedule
    eventGridTopicEndpoint: topic.outputs.endpoint
    issuancePolicy: issuancePolicy
    issuingCas: issuingCas
    crlUrl: derivedCrlUrl
    crlContainerUrl: crlContainerUrl
    crlSchedule: crlSchedule
    aiaUrl: aiaUrl
    accessRules: accessRules
    forceRenewMinAgeMinutes: forceRenewMinAgeMinutes
    rotationWindowHours: rotationWindowHours
    ocspUrl: ocspEnabled ? ocspBaseUrl : ''
    caRenewBeforeDays: caRenewBeforeDays
    notifyWebhookUrl: notifyWebhookUrl
    ledgerTableUrl: ledgerTableUrl
    virtualNetworkSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
  }
}

// After vault-access: the dead-letter alert watches the vault's system topic, made there.
module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    systemTopicId: vaultAccess.outputs.systemTopicId
    customTopicId: topic.outputs.id
    alertEmail: alertEmail
    alertWebhookUrl: alertWebhookUrl
  }
}

// azd writes these into .azure/<env>/.env; the CLI reads KVCA_VAULT_URL from there.
// Not AZURE_CLIENT_ID: in a user's shell that name would make
// DefaultAzureCredential try the app's identity instead of the user's login.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_KEY_VAULT_NAME string = vaultName
output KVCA_VAULT_URL string = vaultUrl
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = functionIdentity.outputs.clientId
output AZURE_EVENTGRID_TOPIC_ENDPOINT string = topic.outputs.endpoint
output AZURE_EVENTGRID_DEADLETTER_CONTAINER string = deadLetterContainerName
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
// Revocation: where the CAs' CRLs are served ({ca} and {version} filled in per leaf), and the OCSP
// base URL, set on the app once ocspEnabled is turned on.
output AZURE_CRL_URL string = derivedCrlUrl
output AZURE_CRL_CONTAINER_URL string = crlContainerUrl
output AZURE_CRL_STORAGE_ACCOUNT_NAME string = crlStorage.outputs.name
output KVCA_OCSP_URL string = ocspBaseUrl
// The ledger's table: the app appends to it; the deployer may read it (`kvca` audit commands).
output KVCA_LEDGER_TABLE_URL string = ledgerTableUrl
output AZURE_LEDGER_STORAGE_ACCOUNT_NAME string = ledgerStorage.outputs.name
