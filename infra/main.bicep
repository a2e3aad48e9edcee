// Everything the singleton starter needs in Azure, in a resource group of its own.
// `azd up` deploys this with infra/main.parameters.json, then publishes the app.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names and tags every resource.')
param environmentName string

// The regions that offer the Flex Consumption plan (az functionapp
// list-flexconsumption-locations); azd offers only these when it asks for a location.
@minLength(1)
@description('Azure region; one that offers the Flex Consumption plan.')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the principal running azd (a developer, or the pipeline\'s service principal), granted Blob Data Owner to inspect locks; empty for none.')
param principalId string = ''

// azd fills AZURE_PRINCIPAL_TYPE: User when a person runs it, ServicePrincipal when the
// pipeline does. A role assignment whose type does not match the principal fails.
@allowed([ 'User', 'ServicePrincipal', 'Group' ])
@description('Type of principalId, from azd (AZURE_PRINCIPAL_TYPE).')
param principalType string = 'User'

@allowed([ 'reject', 'useExisting', 'terminateExisting', 'stopExisting' ])
@description('App setting SINGLETON_DEFAULT_ON_CONFLICT: onConflict when the request gives none.')
param defaultOnConflict string = 'reject'

@allowed([ 'allowDuplicate', 'allowDuplicateFailedOnly', 'rejectDuplicate' ])
@description('App setting SINGLETON_DEFAULT_REUSE: reuse when the request gives none.')
param defaultReuse string = 'allowDuplicate'

@minValue(1)
@maxValue(104857600)
@description('App setting SINGLETON_MAX_BODY_BYTES: the largest request body (orchestrator input).')
param maxBodyBytes int = 1048576

@minValue(1)
@maxValue(600)
@description('App setting SINGLETON_TERMINATE_TIMEOUT_SECONDS: how long terminateExisting and stopExisting wait.')
param terminateTimeoutSeconds int = 60

@minValue(1)
@maxValue(120)
@description('App setting SINGLETON_LOCK_WAIT_SECONDS: how long a caller waits for a busy lock.')
param lockWaitSeconds int = 10

@description('App setting SINGLETON_LOCK_CONTAINER: the blob container that holds the locks.')
param lockContainer string = 'singleton-locks'

@description('App setting SINGLETON_JOB_CONTAINER: the blob container that holds large jobs\' items.')
param jobContainer string = 'singleton-jobs'

@description('App setting SINGLETON_SCHEDULE_ENABLED: whether TimerStartSingle starts anything.')
param scheduleEnabled bool = false

@description('App setting SINGLETON_SCHEDULE: the NCRONTAB schedule of TimerStartSingle.')
param schedule string = '0 */15 * * * *'

@description('App setting SINGLETON_SCHEDULE_ORCHESTRATOR: the orchestrator a tick starts.')
param scheduleOrchestrator string = 'SingletonOrchestrator'

@description('App setting SINGLETON_SCHEDULE_INSTANCE_ID: the instance id the schedule uses.')
param scheduleInstanceId string = 'scheduled-job'

@description('App setting SINGLETON_SCHEDULE_INPUT: the orchestrator input (JSON), empty for none.')
param scheduleInput string = ''

@allowed([ 'skip', 'cancelOther', 'terminateOther' ])
@description('App setting SINGLETON_SCHEDULE_OVERLAP: what a tick does while the previous run is active.')
param scheduleOverlap string = 'skip'

@allowed([ 'allowDuplicate', 'allowDuplicateFailedOnly', 'rejectDuplicate' ])
@description('App setting SINGLETON_SCHEDULE_REUSE: whether a tick starts a finished run\'s id again.')
param scheduleReuse string = 'allowDuplicate'

@allowed([ 'durable', 'app' ])
@description('App setting SINGLETON_MANAGEMENT_LINKS: durable (the extension\'s URLs, with its system key) or app (this app\'s own URLs only).')
param managementLinks string = 'durable'

@minValue(1)
@maxValue(2592000)
@description('App setting SINGLETON_IDEMPOTENCY_TTL_SECONDS: how long an Idempotency-Key is remembered.')
param idempotencyTtlSeconds int = 86400

@description('App setting SINGLETON_NEXT_RUN_WAIT_SECONDS: how long bufferOne and debounce wait for the instance to take the next run.')
param nextRunWaitSeconds int = 20

@minValue(10)
@maxValue(2592000)
@description('App setting SINGLETON_STUCK_PENDING_SECONDS: an instance Pending for longer is reported stuck.')
param stuckPendingSeconds int = 600

@minValue(1)
@maxValue(10000)
@description('App setting SINGLETON_QUEUE_BOUND: the most requests that wait in one key\'s queue (a start with a limit per key).')
param queueBound int = 100

@description('App setting SINGLETON_RETENTION_ENABLED: whether the retention timer purges and deletes (docs/operate.md).')
param retentionEnabled bool = false

@description('App setting SINGLETON_RETENTION_SCHEDULE: the retention timer\'s NCRONTAB schedule.')
param retentionSchedule string = '0 30 3 * * *'

@minValue(1)
@maxValue(3650)
@description('App setting SINGLETON_RETENTION_DAYS: finished instances older than this are purged.')
param retentionDays int = 30

@description('App setting SINGLETON_RETENTION_PURGE_INSTANCES: false keeps every instance (reuse=rejectDuplicate holds for good).')
param retentionPurgeInstances bool = true

@minValue(10)
@maxValue(100000)
@description('App setting SINGLETON_RETENTION_MAX_CALLS: the most storage and Durable API calls of one retention tick.')
param retentionMaxCalls int = 2000

@minValue(5)
@maxValue(600)
@description('App setting SINGLETON_RETENTION_MAX_SECONDS: the longest one retention tick runs.')
param retentionMaxSeconds int = 120

@minValue(1)
@maxValue(10)
@description('App setting SINGLETON_STORAGE_TIMEOUT_SECONDS: the longest one lock storage request may take.')
param storageTimeoutSeconds int = 5

@minValue(1)
@maxValue(10)
@description('App setting SINGLETON_DURABLE_TIMEOUT_SECONDS: the longest one Durable API call may take.')
param durableTimeoutSeconds int = 5

@minValue(40)
@maxValue(1000)
@description('Flex Consumption: the most instances the app scales out to.')
param maximumInstanceCount int = 100

var tags = { 'azd-env-name': environmentName }

resource resourceGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'resources'
  scope: resourceGroup
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    principalId: principalId
    principalType: principalType
    defaultOnConflict: defaultOnConflict
    defaultReuse: defaultReuse
    maxBodyBytes: maxBodyBytes
    terminateTimeoutSeconds: terminateTimeoutSeconds
    lockWaitSeconds: lockWaitSeconds
    jobContainer: jobContainer
    managementLinks: managementLinks
    idempotencyTtlSeconds: idempotencyTtlSeconds
    nextRunWaitSeconds: nextRunWaitSeconds
    stuckPendingSeconds: stuckPendingSeconds
    queueBound: queueBound
    retentionEnabled: retentionEnabled
    retentionSchedule: retentionSchedule
    retentionDays: retentionDays
    retentionPurgeInstances: retentionPurgeInstances
    retentionMaxCalls: retentionMaxCalls
    retentionMaxSeconds: retentionMaxSeconds
    scheduleEnabled: scheduleEnabled
    schedule: schedule
    scheduleOrchestrator: scheduleOrchestrator
    scheduleInstanceId: scheduleInstanceId
    scheduleInput: scheduleInput
    scheduleOverlap: scheduleOverlap
    scheduleReuse: scheduleReuse
    storageTimeoutSeconds: storageTimeoutSeconds
    durableTimeoutSeconds: durableTimeoutSeconds
    lockContainer: lockContainer
    maximumInstanceCount: maximumInstanceCount
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup.name
output AZURE_FUNCTION_APP_NAME string = resources.outputs.functionAppName
output FUNCTION_APP_URL string = resources.outputs.functionAppUrl
