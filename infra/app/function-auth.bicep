// App Service authentication (Easy Auth) of the kvca Functions app, for Entra ID callers next
// to function keys. Deployed by function.bicep exactly when an app registration is named
// (authClientId); the app trusts the principal header exactly then (KVCA_TRUST_EASY_AUTH).
//
// A caller with a token for api://<authClientId> arrives with its claims
// (app roles included) in X-MS-CLIENT-PRINCIPAL, which App Service strips from
// client requests while this is on
// (learn.microsoft.com/azure/app-service/configure-authentication-user-identities).
// A caller without a token is let through as anonymous: the Functions host still
// demands a function key, and KVCA_ACCESS_RULES give such a caller only what
// their "function_key" rule says (nothing, by default, once rules exist).
// Settings shape: learn.microsoft.com/azure/templates/microsoft.web/sites/config-authsettingsv2.

@description('Name of the Functions app (function.bicep) the settings belong to.')
param functionAppName string

@description('Application (client) ID of the Entra app registration HTTP callers get tokens for (audience api://<id>), with kvca\'s app roles.')
@minLength(1)
param authClientId string

@description('Entra tenant of that app registration.')
param authTenantId string

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:this resource is App Service authentication (authsettingsV2, platform.enabled true); the check reads only the v1 authsettings shape
  // checkov:skip=CKV_AZURE_63:an authsettingsV2 resource, not the site's web config that the HTTP-logging check is written for; kvca logs to Application Insights
  // checkov:skip=CKV_AZURE_65:an authsettingsV2 resource, not the site's web config that the detailed-errors check is written for
  // checkov:skip=CKV_AZURE_66:an authsettingsV2 resource, not the site's web config that the failed-request-tracing check is written for
  // checkov:skip=CKV_AZURE_80:an authsettingsV2 resource of a Python app; there is no .NET Framework version to set
  // checkov:skip=CKV_AZURE_88:an authsettingsV2 resource; Flex Consumption keeps the package in blob storage, no Azure Files share
  // checkov:skip=CKV_AZURE_222:as on the site (function.bicep): relying parties fetch OCSP and CRL answers from the app's public endpoint, and Event Grid delivers there
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
        }
        validation: {
          // v1 tokens carry the app ID URI as audience, v2 tokens the client ID.
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    httpSettings: {
      requireHttps: true
    }
  }
}
