// The kvca Functions app on the Flex Consumption plan.
// Shape from Azure-Samples functions-quickstart-python-http-azd
// (https://github.com/Azure-Samples/functions-quickstart-python-http-azd/blob/479a86e273983fec20ea9499433d10d749019672/infra/core/host/functions-flexconsumption.bicep,
// https://github.com/Azure-Samples/functions-quickstart-python-http-azd/blob/479a86e273983fec20ea9499433d10d749019672/infra/app/processor.bicep)
// and https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to:
// sku FC1, functionAppConfig holds deployment storage, runtime and scale;
// FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION must NOT be app
// settings on this plan (functionAppConfig.runtime replaces them).

@description('Name of the Functions app.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region of the plan and the app.')
param location string

@description('Tags applied to the plan and the app.')
param tags object = {}

@description('Resource ID of the app\'s user-assigned managed identity.')
param identityId string

@description('Client ID of the app\'s user-assigned managed identity.')
param identityClientId string

@description('Resource ID of the identity the platform reads and writes the deployment package with; the app\'s code never uses it (AZURE_CLIENT_ID names the app identity).')
param deploymentIdentityId string

@description('Application (client) ID of the Entra app registration HTTP callers get tokens for (audience api://<id>), with kvca\'s app roles; empty: no App Service authentication, every caller is a function-key caller.')
param authClientId string = ''

@description('Entra tenant of that app registration.')
param authTenantId string = tenant().tenantId

@description('Name of the storage account behind AzureWebJobsStorage and the deployment package.')
param storageAccountName string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

// The versions kvca's CI runs the whole suite on (.ci/run); 3.10 reached its end of life in
// October 2026 and is not offered. On 3.13 the host runs the app on the azure-functions-runtime
// library worker (tests/infra/test_worker_indexing.py indexes function_app.py with it).
@description('Python version of the Functions runtime: one kvca is tested on (3.11 or 3.13).')
@allowed([
  '3.11'
  '3.13'
])
param pythonVersion string = '3.11'

@description('Most instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('EST re-enrollment by the device\'s current certificate: the site asks TLS clients for a certificate (clientCertMode Optional, so every other route and a first enrollment work without one) and App Service passes it in X-ARR-ClientCert, which kvca then believes (KVCA_TRUST_CLIENT_CERT_HEADER). Off: simplereenroll answers 501 and devices re-enroll with a new code.')
param estClientCertificates bool = false

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('KVCA_VAULT_URL: URL of the Key Vault kvca works in.')
param vaultUrl string

@description('KVCA_VAULT_NAME: name of that vault, as Event Grid events carry it.')
param vaultName string

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

@description('KVCA_SWEEP_SCHEDULE: NCRONTAB schedule (6 fields) of the timer sweep. The timer binding reads this app setting itself: an empty one disables the sweep.')
@minLength(11)
param sweepSchedule string = '0 0 */6 * * *'

@description('KVCA_EVENTGRID_TOPIC_ENDPOINT: endpoint of kvca\'s custom Event Grid topic.')
param eventGridTopicEndpoint string

@description('KVCA_ISSUANCE_POLICY: JSON issuance policy, the default for CAs without a policy stored with them (kvca ca policy set); a CA with neither is refused.')
param issuancePolicy string = ''

@description('KVCA_ISSUING_CAS: comma-separated CA certificates that may sign without the kvca-role=intermediate tag.')
param issuingCas string = ''

@description('KVCA_CRL_URL: CRL distribution point written into issued certificates; empty for none.')
param crlUrl string = ''

@description('KVCA_CRL_CONTAINER_URL: https URL of the blob container each CA\'s CRL is published to (crl-storage.bicep); empty: no blob publishing.')
param crlContainerUrl string = ''

@description('KVCA_CRL_SCHEDULE: NCRONTAB schedule (6 fields) of the timer that re-signs and publishes every CA\'s CRL. The timer binding reads this app setting itself: an empty one disables the timer.')
@minLength(11)
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

// App Service authentication on exactly when an app registration is named; the
// app trusts the principal header exactly then (KVCA_TRUST_EASY_AUTH).
var easyAuthEnabled = !empty(authClientId)

@description('KVCA_OCSP_URL: base URL of kvca\'s OCSP responder (<app>/api/ocsp); empty for none.')
param ocspUrl string = ''

@description('KVCA_CA_RENEW_BEFORE_DAYS: warn when a CA certificate expires within this many days (default: the longest leaf validity, 398 days).')
@minValue(1)
param caRenewBeforeDays int = 398

@description('KVCA_NOTIFY_WEBHOOK_URL: https webhook (Slack, Teams Workflows) told of failed renewals, CAs nearing expiry and revocations; empty for none. Secure: the URL usually carries the webhook\'s token.')
@secure()
param notifyWebhookUrl string = ''

@description('Resource ID of the subnet the app integrates with (network.bicep, delegated to Microsoft.App/environments); empty: no VNet integration.')
param virtualNetworkSubnetId string = ''

@description('KVCA_LEDGER_TABLE_URL: https URL of the ledger table (ledger-storage.bicep) the app appends every signature and revocation to.')
param ledgerTableUrl string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Flex zone redundancy exists only in some regions and bills two always-ready instances; Event Grid retries and the timer sweep cover an outage
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

// Telemetry: host.json's telemetryMode OpenTelemetry makes the host export OpenTelemetry to
// Application Insights. PYTHON_ENABLE_OPENTELEMETRY=true lets the Python worker stream the app's
// own OpenTelemetry logs, with their kvca.* attributes that the host's log forwarding would not
// carry, and attach each invocation's trace context, without duplicate host-level entries
// (learn.microsoft.com/azure/azure-functions/opentelemetry-howto; azure-functions-runtime's
// handle_event.worker_init_request reads it). The app configures the exporter itself, with
// azure-monitor-opentelemetry's configure_azure_monitor and the app's identity; not
// PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY, whose worker-side setup passes no credential
// and so cannot write to an Application Insights whose local auth is off.
resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:the app answers anonymous OCSP and CRL requests of relying parties anywhere, and Event Grid delivers to its public endpoint; with vnetEnabled only its outbound traffic goes through the VNet
  // checkov:skip=CKV_AZURE_17:Event Grid delivery, OCSP and CRL clients present no client certificate; with estClientCertificates the site asks for one (Optional) for EST re-enrollment
  // checkov:skip=CKV_AZURE_212:Flex Consumption manages instances (scale to zero); Event Grid retries and the timer sweep cover a missed run
  // checkov:skip=CKV_AZURE_213:Flex Consumption does not support App Service health check
  name: name
  location: location
  // azd finds the app to deploy the `api` service to by this tag (azure.yaml).
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
      '${deploymentIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // With estClientCertificates, App Service requests a client certificate and writes it into
    // X-ARR-ClientCert; never trusted otherwise, since a client could send the header itself
    // (learn.microsoft.com/azure/app-service/app-service-web-configure-tls-mutual-auth).
    clientCertEnabled: estClientCertificates
    clientCertMode: 'Optional'
    // Inbound stays public (OCSP, CRL, Event Grid delivery); with vnetEnabled, outbound goes
    // through the VNet to the private endpoints (Azure-Samples functions-quickstart-python-http-azd's
    // https://github.com/Azure-Samples/functions-quickstart-python-http-azd/blob/7ed4638bc03858a3b2657f0dbbdd1db0af103ebb/infra/app/api.bicep sets virtualNetworkSubnetId the same way).
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Every KVCA_* name here is one of kvca_core.settings.SETTINGS; the infra
      // tests compare the two. Emulator-only settings get their Azure values.
      // Host storage through the identity (AzureWebJobsStorage__*):
      // https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
      appSettings: [
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        // OpenTelemetry from the worker: see the note above resource functionApp.
        {
          name: 'PYTHON_ENABLE_OPENTELEMETRY'
          value: 'true'
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'KVCA_VAULT_URL'
          value: vaultUrl
        }
        {
          name: 'KVCA_VAULT_NAME'
          value: vaultName
        }
        {
          name: 'KVCA_TLS_CA_BUNDLE'
          value: ''
        }
        {
          name: 'KVCA_CONNECT_TIMEOUT_SECONDS'
          value: '10'
        }
        {
          name: 'KVCA_READ_TIMEOUT_SECONDS'
          value: '60'
        }
        {
          name: 'KVCA_VERIFY_CHALLENGE_RESOURCE'
          value: 'true'
        }
        {
          name: 'KVCA_RENEW_BEFORE_DAYS'
          value: string(renewBeforeDays)
        }
        {
          name: 'KVCA_CONCURRENCY'
          value: string(concurrency)
        }
        {
          name: 'KVCA_SWEEP_BUDGET_SECONDS'
          value: string(sweepBudgetSeconds)
        }
        {
          name: 'KVCA_SWEEP_READ_SHARE'
          value: sweepReadShare
        }
        {
          name: 'KVCA_CREATE_LIMIT'
          value: string(createLimit)
        }
        {
          name: 'KVCA_SWEEP_SCHEDULE'
          value: sweepSchedule
        }
        {
          name: 'KVCA_EVENTGRID_TOPIC_ENDPOINT'
          value: eventGridTopicEndpoint
        }
        {
          name: 'KVCA_ISSUANCE_POLICY'
          value: issuancePolicy
        }
        {
          name: 'KVCA_ISSUING_CAS'
          value: issuingCas
        }
        {
          name: 'KVCA_CRL_URL'
          value: crlUrl
        }
        {
          name: 'KVCA_CRL_CONTAINER_URL'
          value: crlContainerUrl
        }
        {
          name: 'KVCA_CRL_SCHEDULE'
          value: crlSchedule
        }
        {
          name: 'KVCA_AIA_URL'
          value: aiaUrl
        }
        {
          name: 'KVCA_ACCESS_RULES'
          value: accessRules
        }
        // Set together with authsettingsV2 below: App Service strips client-sent
        // X-MS-CLIENT-PRINCIPAL headers only while its authentication is on.
        {
          name: 'KVCA_TRUST_EASY_AUTH'
          value: string(easyAuthEnabled)
        }
        {
          name: 'KVCA_FORCE_RENEW_MIN_AGE_MINUTES'
          value: string(forceRenewMinAgeMinutes)
        }
        {
          name: 'KVCA_ROTATION_WINDOW_HOURS'
          value: string(rotationWindowHours)
        }
        {
          name: 'KVCA_OCSP_URL'
          value: ocspUrl
        }
        {
          name: 'KVCA_CA_RENEW_BEFORE_DAYS'
          value: string(caRenewBeforeDays)
        }
        // The webhook URL holds its token: a @secure() parameter, so the deployment's history
        // does not show it (an app setting is readable by whoever may read the app's config).
        {
          name: 'KVCA_NOTIFY_WEBHOOK_URL'
          value: notifyWebhookUrl
        }
        // The ledger: Insert Entity and Query Entities only (ledger-storage.bicep's custom role).
        {
          name: 'KVCA_LEDGER_TABLE_URL'
          value: ledgerTableUrl
        }
        // One instance's share of the vault's key-operation limit for signing external CSRs
        // (sign-csr, EST): half the limit split over the most instances the app scales to, so that
        // all of them together leave at least half for renewals, CRLs and OCSP. Bicep has no
        // fractions: 0.5 / maximumInstanceCount written out to six decimals (40 -> 0.012500).
        {
          name: 'KVCA_EXTERNAL_SIGN_SHARE'
          value: '0.${padLeft(string(500000 / maximumInstanceCount), 6, '0')}'
        }
        // true only together with clientCertEnabled on this site: App Service then writes the
        // TLS client certificate into X-ARR-ClientCert (EST re-enrollment).
        {
          name: 'KVCA_TRUST_CLIENT_CERT_HEADER'
          value: estClientCertificates ? 'true' : 'false'
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: deploymentIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// App Service authentication (Easy Auth) for Entra ID callers, next to function keys: a
// module of its own (function-auth.bicep), deployed exactly when an app registration is named.
// A module rather than a conditional resource: checkov's bicep reader does not see the
// properties of a conditional resource (CKV_AZURE_70 crashed on it), and in a module of its
// own the resource is unconditional, so every check reads it.
module authSettings 'function-auth.bicep' = if (easyAuthEnabled) {
  name: '${name}-auth'
  params: {
    functionAppName: functionApp.name
    authClientId: authClientId
    authTenantId: authTenantId
  }
}

// No FTP and no basic-auth publishing: azd deploys with an Entra token.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
