// Alert rules: failed renewals, CAs expiring or expired and CRLs not published (kvca's own
// structured log records in Application Insights), and Event Grid events dead-lettered or dropped
// (both topics' DeadLetteredCount and DroppedEventCount metrics), sent to one action group whose
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
// metricAlerts@2018-03-01 (2018-03-01/types.md).

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

// kvca logs one structured record per operation through OpenTelemetry (azure-monitor-opentelemetry)
// to Application Insights; its attributes land in the `traces` table as customDimensions:
// kvca.operation, kvca.outcome, kvca.certificate, kvca.version, kvca.serial, kvca.ca, kvca.reason,
// kvca.kind (the error kind), kvca.source (event, timer, http, cli). The rules query those
// dimensions, not the message text, so rewording a log line cannot silence an alert.
// Log records as traces with customDimensions:
// learn.microsoft.com/azure/azure-monitor/app/opentelemetry-add-modify (Python, custom attributes).
var kvcaRecords = 'traces | where isnotempty(customDimensions["kvca.operation"]) | extend operation = tostring(customDimensions["kvca.operation"]), outcome = tostring(customDimensions["kvca.outcome"]), kind = tostring(customDimensions["kvca.kind"]), certificate = tostring(customDimensions["kvca.certificate"]), ca = tostring(customDimensions["kvca.ca"]), reason = tostring(customDimensions["kvca.reason"]), source = tostring(customDimensions["kvca.source"])'
var kvcaColumns = 'project timestamp, operation, outcome, kind, certificate, ca, reason, source'

// One log rule each:
// - failed-renewals: a sweep that failed to renew a certificate, or a renewal or signing refused
//   on an event or an HTTP call for a reason that needs a person (the CA or its policy refused,
//   the CA is gone, configuration, the vault failed), not the everyday answers (NotManaged,
//   InvalidRequest, Conflict);
// - ca-expiring / ca-expired: the sweep's CA warning (KVCA_CA_RENEW_BEFORE_DAYS), expired the
//   more severe; the window spans a day, so a warning logged by a 6-hourly sweep keeps it open;
// - crl-publishing: a CRL that could not be re-signed or published (relying parties keep the
//   old one until its nextUpdate, 7 days).
var logRules = [
  {
    key: 'failed-renewals'
    displayName: 'kvca: certificate renewals failed'
    description: 'A kvca sweep, event or HTTP call failed to renew or sign a certificate; the record names it (kvca.certificate) and why (kvca.kind, kvca.reason).'
    severity: 2
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    filter: 'where (operation == "sweep" and outcome == "failed") or (operation in ("renew", "sign_pending") and outcome in ("refused", "error") and kind in ("PolicyViolation", "NotFound", "ConfigurationError", "UpstreamError", "Throttled"))'
  }
  {
    key: 'ca-expiring'
    displayName: 'kvca: a CA certificate expires soon'
    description: 'A CA certificate expires within KVCA_CA_RENEW_BEFORE_DAYS (kvca.ca): rotate it (kvca ca rotate) before leaves outlive it.'
    severity: 2
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    filter: 'where operation == "ca_warning" and outcome == "ca-expiring"'
  }
  {
    key: 'ca-expired'
    displayName: 'kvca: a CA certificate has expired'
    description: 'A CA certificate has expired (kvca.ca): nothing it signs is trusted any more.'
    severity: 1
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    filter: 'where operation == "ca_warning" and outcome == "ca-expired"'
  }
  {
    key: 'crl-publishing'
    displayName: 'kvca: a CRL was not published'
    description: 'kvca could not re-sign or publish a CA\'s CRL (kvca.ca, kvca.kind, kvca.reason); relying parties keep the previous CRL until its nextUpdate.'
    severity: 2
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    filter: 'where operation == "publish_crl" and outcome in ("failed", "error")'
  }
]

resource logAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in logRules: {
  name: 'kvca-${rule.key}-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: rule.evaluationFrequency
    windowSize: rule.windowSize
    criteria: {
      allOf: [
        {
          query: '${kvcaRecords} | ${rule.filter} | ${kvcaColumns}'
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
}]

// An event Event Grid gave up on after its retries (24 h, vault-access.bicep / eventgrid-topic.bicep):
// dead-lettered into the eventgrid-deadletter container, or dropped where it cannot be
// dead-lettered (with vnetEnabled the storage account refuses Event Grid's public-endpoint writes,
// docs/deploy.md). The sweep still renews the certificate, but the event path is broken and
// someone should look. DeadLetteredCount and DroppedEventCount (Count, aggregation Total) are
// metrics of Microsoft.EventGrid/systemTopics and Microsoft.EventGrid/topics
// (learn.microsoft.com/azure/event-grid/monitor-push-reference).
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
var undeliveredMetrics = [
  {
    key: 'dead-lettered'
    metric: 'DeadLetteredCount'
    what: 'dead-lettered'
    where: 'see the eventgrid-deadletter blob container'
  }
  {
    key: 'dropped'
    metric: 'DroppedEventCount'
    what: 'dropped'
    where: 'they could not be dead-lettered'
  }
]
// Every topic with every metric: one rule each (a rule's criteria all have to hold at once).
var undelivered = [for i in range(0, 4): {
  topic: deadLetterTopics[i % 2]
  metric: undeliveredMetrics[i / 2]
}]

resource undeliveredEvents 'Microsoft.Insights/metricAlerts@2018-03-01' = [for alert in undelivered: {
  name: 'kvca-${alert.metric.key}-${alert.topic.key}-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid ${alert.metric.what} ${alert.topic.what} meant for kvca (${alert.metric.where}).'
    severity: 2
    enabled: true
    scopes: [
      alert.topic.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: alert.metric.key
          metricNamespace: alert.topic.namespace
          metricName: alert.metric.metric
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
