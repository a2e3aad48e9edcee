// The singleton starter's resources: a Flex Consumption Function App (Python 3.13, Linux)
// whose storage account (task hub, lock blobs, deployment package) is reached only
// with a user-assigned managed identity, and Application Insights on Log Analytics.

param environmentName string
param location string
param tags object
param principalId string
param principalType string
param defaultOnConflict string
param defaultReuse string
param maxBodyBytes int
param terminateTimeoutSeconds int
param lockWaitSeconds int
param storageTimeoutSeconds int
param durableTimeoutSeconds int
param lockContainer string
param jobContainer string
param managementLinks string
param idempotencyTtlSeconds int
param nextRunWaitSeconds int
param stuckPendingSeconds int
param queueBound int
param retentionEnabled bool
param retentionSchedule string
param retentionDays int
param retentionPurgeInstances bool
param retentionMaxCalls int
param retentionMaxSeconds int
param scheduleEnabled bool
param schedule string
param scheduleOrchestrator string
param scheduleInstanceId string
param scheduleInput string
param scheduleOverlap string
param scheduleReuse string
param maximumInstanceCount int

var token = toLower(uniqueString(subscription().id, environmentName, location))
var deploymentContainer = 'app-package-${take(token, 8)}'

// Built-in role definition ids.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${token}'
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    // No account keys: the app, the Durable task hub and deployments use Entra ID.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'

    resource packages 'containers' = {
      name: deploymentContainer
    }

    // The app creates it on first use too; made here so it exists from the start.
    resource locks 'containers' = {
      name: lockContainer
    }

    resource jobs 'containers' = {
      name: jobContainer
    }
  }
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${token}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // Telemetry is accepted only with an Entra ID token (the app's identity).
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${token}'
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

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-${token}'
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: {
      // Identity-based storage connection (no connection string, no key): the host, the
      // Durable task hub (blobs, queues, tables) and the starter's lock all read these.
      // Service URIs from the account itself, so they are right in every Azure cloud.
      AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
      AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identity.properties.clientId
      APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
      // The starter's settings (docs/settings.md).
      SINGLETON_DEFAULT_ON_CONFLICT: defaultOnConflict
      SINGLETON_DEFAULT_REUSE: defaultReuse
      SINGLETON_MAX_BODY_BYTES: string(maxBodyBytes)
      SINGLETON_TERMINATE_TIMEOUT_SECONDS: string(terminateTimeoutSeconds)
      SINGLETON_LOCK_WAIT_SECONDS: string(lockWaitSeconds)
      SINGLETON_STORAGE_TIMEOUT_SECONDS: string(storageTimeoutSeconds)
      SINGLETON_DURABLE_TIMEOUT_SECONDS: string(durableTimeoutSeconds)
      SINGLETON_LOCK_CONTAINER: lockContainer
      SINGLETON_JOB_CONTAINER: jobContainer
      SINGLETON_MANAGEMENT_LINKS: managementLinks
      SINGLETON_IDEMPOTENCY_TTL_SECONDS: string(idempotencyTtlSeconds)
      SINGLETON_NEXT_RUN_WAIT_SECONDS: string(nextRunWaitSeconds)
      SINGLETON_STUCK_PENDING_SECONDS: string(stuckPendingSeconds)
      SINGLETON_QUEUE_BOUND: string(queueBound)
      // The retention timer, SingletonRetention (docs/operate.md).
      SINGLETON_RETENTION_ENABLED: string(retentionEnabled)
      SINGLETON_RETENTION_SCHEDULE: retentionSchedule
      SINGLETON_RETENTION_DAYS: string(retentionDays)
      SINGLETON_RETENTION_PURGE_INSTANCES: string(retentionPurgeInstances)
      SINGLETON_RETENTION_MAX_CALLS: string(retentionMaxCalls)
      SINGLETON_RETENTION_MAX_SECONDS: string(retentionMaxSeconds)
      // The scheduled singleton, TimerStartSingle (docs/jobs.md).
      SINGLETON_SCHEDULE: schedule
      SINGLETON_SCHEDULE_ENABLED: string(scheduleEnabled)
      SINGLETON_SCHEDULE_ORCHESTRATOR: scheduleOrchestrator
      SINGLETON_SCHEDULE_INSTANCE_ID: scheduleInstanceId
      SINGLETON_SCHEDULE_INPUT: scheduleInput
      SINGLETON_SCHEDULE_OVERLAP: scheduleOverlap
      SINGLETON_SCHEDULE_REUSE: scheduleReuse
      // Traces and metrics in OpenTelemetry form (docs/operate.md): the host's
      // OpenTelemetry mode (a host.json value set here, so local `func start` keeps
      // its default), and the Python worker's Azure Monitor distro.
      AzureFunctionsJobHost__telemetryMode: 'OpenTelemetry'
      PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
      // The distro samples traces at 5 per second unless told otherwise: keep every
      // request span (docs/operate.md; lower the ratio to sample).
      OTEL_TRACES_SAMPLER: 'microsoft.fixed.percentage'
      OTEL_TRACES_SAMPLER_ARG: '1.0'
      // Only the app's own loggers go to Application Insights as traces: the root logger
      // would also send the SDKs' request logs (and the exporter's own, in a loop).
      PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME: 'durable_singleton'
    }
  }
}

// What the app's identity may do: blobs (locks, deployment package, task hub leases),
// queues and tables (the Durable task hub), and publishing telemetry.
var appRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource appStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in appRoles: {
  name: guid(storage.id, identity.id, role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}]

resource appTelemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource userBlobRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: principalType
  }
}

output functionAppName string = functionApp.name
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
