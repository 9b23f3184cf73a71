# azd `postdeploy` hook (azure.yaml), PowerShell twin of postdeploy.sh: once the code is
# deployed, turn on the Event Grid subscriptions, so that one `azd up` sets up everything.
# Why and how: see postdeploy.sh (Event Grid refuses an AzureFunction endpoint whose function
# does not exist yet, so the subscriptions wait for the code; the variable stays true afterwards,
# and the postdown hook sets it back to false).
$ErrorActionPreference = 'Stop'

if ($env:KVCA_DEPLOY_EVENT_SUBSCRIPTIONS -eq 'true') {
    Write-Host 'kvca: the Event Grid subscriptions are already provisioned (KVCA_DEPLOY_EVENT_SUBSCRIPTIONS=true).'
    exit 0
}

Write-Host 'kvca: the code is deployed; provisioning the Event Grid subscriptions to kvca_eventgrid (KVCA_DEPLOY_EVENT_SUBSCRIPTIONS=true).'
azd env set KVCA_DEPLOY_EVENT_SUBSCRIPTIONS true
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
# The host lists a new function a little after the deployment finishes: tried a few times, a minute apart.
$delay = if ($env:KVCA_DEPLOY_RETRY_SECONDS) { [int]$env:KVCA_DEPLOY_RETRY_SECONDS } else { 60 }
$attempt = 1
while ($true) {
    azd provision --no-prompt
    if ($LASTEXITCODE -eq 0) { break }
    if ($attempt -ge 4) {
        # Back to false: the next `azd up` provisions without them and this hook tries again.
        azd env set KVCA_DEPLOY_EVENT_SUBSCRIPTIONS false
        $host.UI.WriteErrorLine("kvca: could not provision the Event Grid subscriptions after $attempt attempts; the timer sweep still renews certificates. Run ``azd deploy`` again to retry.")
        exit 1
    }
    $attempt += 1
    Write-Host "kvca: provisioning failed (the function may not be listed yet); attempt $attempt in $delay s."
    Start-Sleep -Seconds $delay
}
Write-Host 'kvca: Event Grid subscriptions provisioned.'
