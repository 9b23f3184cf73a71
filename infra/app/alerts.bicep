// Alert rules: failed renewals (kvca's own log lines in Application Insights) and dead-lettered
// Event Grid events (both topics' DeadLetteredCount metric), sent to one action group whose
// receivers are parameters. A module of its own, not part of monitoring.bicep: the Key Vault
// system topic is made by vault-access.bicep, which waits for the Functions app, which waits for
// monitoring.bicep, so rules on the topic can only be deployed after all of them.
//
// The rules are always deployed: they cost little and a fired alert shows in Azure Monitor's
// Alerts view even with nobody to tell. The action group exists only when it has a receiver (an
// action group without one tells nobody), and the rules name it only then.
//
// API versions and property names from Azure/bicep-types-az generated/monitor/microsoft.insights:
// scheduledQueryRules@2023-12-01 (2023-12-01/types.md), actionGroups@2023-01-01 (2023-01-01/types.md),
// metricAlerts@2018-03-01 (2018-03-01/types.md). DeadLetteredCount (Count, aggregation Total) is
// a metric of Microsoft.EventGrid/systemTopics and Microsoft.EventGrid/topics
// (learn.microsoft.com/azure/azure-monitor/reference/supported-metrics, Microsoft.EventGrid).

@description('Azure region of the log alert rule (the Application Insights component\'s).')
param location string

@description('Tags applied to the alert resources.')
param tags object = {}

@description('Token that makes the alert resources\' names unique (main.bicep\'s resourceToken).')
param resourceToken string

@description('Resource ID of the Application Insights component the Functions app logs to.')
param applicationInsightsId string

@description('Resource ID of the Key Vault\'s Event Grid system topic (dead letters of CertificateNearExpiry and CertificateNewVersionCreated).')
param systemTopicId string

@description('Resource ID of kvca\'s custom Event Grid topic (dead letters of Kvca.CertificatePendingRequest).')
param customTopicId string

@description('Email address the alerts are sent to; empty for none.')
param alertEmail string = ''

@description('HTTPS webhook the alerts are posted to (Azure Monitor\'s common alert schema); empty for none. Secure: such URLs usually carry a token.')
@secure()
param alertWebhookUrl string = ''

var hasReceivers = !(empty(alertEmail) && empty(alertWebhookUrl))

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasReceivers) {
  name: 'ag-kvca-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'kvca' // at most 12 characters: it names the sender in SMS and email
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'kvca-email'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'kvca-webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroupIds = hasReceivers ? [
  actionGroup.id
] : []

// kvca_core/operations.py logs every failed renewal of a sweep as
// `kvca op=sweep certificate=<name> outcome=failed reason=...`, and a renewal or signing refused on an
// event or an HTTP call as `kvca op=renew|sign_pending certificate=<name> outcome=refused|error kind=<kind>`.
// The kinds counted are those of a renewal that failed (the CA or its policy refused, the CA is gone,
// the vault failed), not the everyday answers (NotManaged, InvalidRequest, Conflict). Python's
// logging reaches Application Insights' `traces` table.
resource failedRenewals 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'kvca-failed-renewals-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'kvca: certificate renewals failed'
    description: 'A kvca sweep, event or HTTP call failed to renew or sign a certificate; the log line names it and why (traces: kvca op=... outcome=failed).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "kvca op=sweep certificate=" and message has "outcome=failed" or message matches regex @"^kvca op=(renew|sign_pending) certificate=\\S+ outcome=(refused|error) kind=(PolicyViolation|NotFound|ConfigurationError|UpstreamError|Throttled) "'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}

// An event dead-lettered after Event Grid's retries (24 h, vault-access.bicep / eventgrid-topic.bicep):
// the sweep still renews the certificate, but the event path is broken and someone should look.
var deadLetterTopics = [
  {
    key: 'vault-events'
    id: systemTopicId
    namespace: 'Microsoft.EventGrid/systemTopics'
    what: 'Key Vault certificate events'
  }
  {
    key: 'pending-requests'
    id: customTopicId
    namespace: 'Microsoft.EventGrid/topics'
    what: 'Kvca.CertificatePendingRequest events'
  }
]

resource deadLettered 'Microsoft.Insights/metricAlerts@2018-03-01' = [for topic in deadLetterTopics: {
  name: 'kvca-dead-lettered-${topic.key}-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid dead-lettered ${topic.what} meant for kvca (see the eventgrid-deadletter blob container).'
    severity: 2
    enabled: true
    scopes: [
      topic.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered'
          metricNamespace: topic.namespace
          metricName: 'DeadLetteredCount'
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    autoMitigate: true
    actions: [for id in actionGroupIds: {
      actionGroupId: id
    }]
  }
}]

output actionGroupId string = hasReceivers ? actionGroup.id : ''
