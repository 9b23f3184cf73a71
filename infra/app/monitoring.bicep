// Log Analytics + workspace-based Application Insights, reached only through
// Entra ID: local (instrumentation-key) auth is off, and the Functions app's
// identity gets Monitoring Metrics Publisher on the component. The app then
// authenticates with APPLICATIONINSIGHTS_AUTHENTICATION_STRING
// (ClientId=<identity>;Authorization=AAD), as Azure-Samples functions-quickstart-python-http-azd's
// https://github.com/Azure-Samples/functions-quickstart-python-http-azd/blob/479a86e273983fec20ea9499433d10d749019672/infra/app/processor.bicep does.

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Azure region of the monitoring resources.')
param location string

@description('Tags applied to the monitoring resources.')
param tags object = {}

@description('Principal ID of the Functions app\'s managed identity (gets Monitoring Metrics Publisher).')
param functionPrincipalId string

@description('How many days Log Analytics keeps the logs.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

// Monitoring Metrics Publisher (learn.microsoft.com/azure/role-based-access-control/built-in-roles/monitor).
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    retentionInDays: retentionInDays
    sku: {
      name: 'PerGB2018'
    }
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

resource appInsightsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output applicationInsightsName string = appInsights.name
output applicationInsightsId string = appInsights.id
output logAnalyticsId string = logAnalytics.id
