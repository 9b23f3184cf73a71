#!/bin/sh
# azd `postdeploy` hook (azure.yaml): once the code is deployed, turn on the Event Grid
# subscriptions, so that one `azd up` sets up everything.
#
# The subscriptions (infra/app/vault-access.bicep, infra/app/eventgrid-topic.bicep) deliver to
# the function kvca_eventgrid, and Event Grid refuses an AzureFunction endpoint whose function
# does not exist yet ("Destination endpoint not found"): they cannot be made in the first
# provision, before the code is there. So the first provision runs with
# KVCA_DEPLOY_EVENT_SUBSCRIPTIONS=false (main.parameters.json's default), and this hook sets the
# variable to true in the azd environment and provisions infra/main.bicep again. The variable
# stays true, so every later `azd provision` / `azd up` keeps the subscriptions in the template,
# and this hook then has nothing to do; `azd down` sets it back to false (the postdown hook).
#
# azd reloads the environment after each hook (Azure/azure-dev, cli/azd/pkg/ext/hooks_runner.go,
# RunHooks), so the `azd env set` below outlives this script. A nested `azd provision` runs with
# azd's own sign-in; no Azure CLI is needed.
set -eu

if [ "${KVCA_DEPLOY_EVENT_SUBSCRIPTIONS:-false}" = "true" ]; then
    echo "kvca: the Event Grid subscriptions are already provisioned (KVCA_DEPLOY_EVENT_SUBSCRIPTIONS=true)."
    exit 0
fi

echo "kvca: the code is deployed; provisioning the Event Grid subscriptions to kvca_eventgrid (KVCA_DEPLOY_EVENT_SUBSCRIPTIONS=true)."
azd env set KVCA_DEPLOY_EVENT_SUBSCRIPTIONS true
# The host lists a new function a little after the deployment finishes: a provision that comes
# too early fails on Event Grid's endpoint check, so it is tried a few times, a minute apart.
delay=${KVCA_DEPLOY_RETRY_SECONDS:-60}
attempt=1
until azd provision --no-prompt; do
    if [ "$attempt" -ge 4 ]; then
        # Back to false: the next `azd up` provisions without them and this hook tries again.
        azd env set KVCA_DEPLOY_EVENT_SUBSCRIPTIONS false
        echo "kvca: could not provision the Event Grid subscriptions after $attempt attempts; the timer sweep still renews certificates. Run \`azd deploy\` again to retry." >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    echo "kvca: provisioning failed (the function may not be listed yet); attempt $attempt in $delay s."
    sleep "$delay"
done
echo "kvca: Event Grid subscriptions provisioned."
