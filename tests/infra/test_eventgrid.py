"""Event Grid: the vault's system topic and kvca's own topic both deliver to
the app's Event Grid function, retry, and dead-letter with their own identity."""

from __future__ import annotations

import json
import re

import pytest

from bicepwalk import INFRA, ROOT, accessor_path, call, load

# The name the Functions app registers its Event Grid trigger under
# (blueprints/**); Event Grid addresses the function by it.
EVENTGRID_FUNCTION = "kvca_eventgrid"

SUBSCRIPTIONS = {
    # file: (subscription type, included event types)
    "app/vault-access.bicep": ("Microsoft.EventGrid/systemTopics/eventSubscriptions",
                               {"Microsoft.KeyVault.CertificateNearExpiry",
                                "Microsoft.KeyVault.CertificateNewVersionCreated"}),
    "app/eventgrid-topic.bicep": ("Microsoft.EventGrid/topics/eventSubscriptions",
                                  {"Kvca.CertificatePendingRequest"}),
}


def _subscription(path):
    rtype, _ = SUBSCRIPTIONS[path]
    return load(path).one(rtype)


@pytest.mark.parametrize("path", SUBSCRIPTIONS)
def test_subscription_filters_to_the_events_kvca_handles(path):
    _, events = SUBSCRIPTIONS[path]
    sub = _subscription(path)
    assert set(sub.get("properties.filter.includedEventTypes")) == events
    assert sub.get("properties.eventDeliverySchema") == "EventGridSchema"


@pytest.mark.parametrize("path", SUBSCRIPTIONS)
def test_subscription_delivers_to_the_eventgrid_function(path):
    sub = _subscription(path)
    destination = sub.get("properties.destination")
    assert destination["endpointType"] == "AzureFunction"
    resource_id = call(destination["properties"]["resourceId"])
    assert resource_id and resource_id[0] == "resource_id"
    args = resource_id[1]
    assert args["resource_type"] == "Microsoft.Web/sites/functions"
    assert (args["resource_name_1"], args["resource_name_2"]) == ("functionAppName", "eventGridFunctionName")
    # One event per call: a failure retries (and dead-letters) that event alone.
    assert destination["properties"]["maxEventsPerBatch"] == 1


def test_main_names_the_function_kvca_eventgrid_for_both_subscriptions():
    main = load("main.bicep")
    assert main.variables["eventGridFunctionName"] == EVENTGRID_FUNCTION
    for symbol in ("vaultAccess", "topic"):
        params = main.modules[symbol].body["params"]
        assert params["eventGridFunctionName"] == "eventGridFunctionName"
        assert params["functionAppName"] == "functionAppName"
    assert main.modules["functionApp"].body["params"]["name"] == "functionAppName"


@pytest.mark.parametrize("path", SUBSCRIPTIONS)
def test_subscription_retries_then_dead_letters_with_the_topic_identity(path):
    template = load(path)
    sub = _subscription(path)
    retry = sub.get("properties.retryPolicy")
    assert 1 <= retry["maxDeliveryAttempts"] <= 30 and 1 <= retry["eventTimeToLiveInMinutes"] <= 1440
    dead = sub.get("properties.deadLetterWithResourceIdentity")
    assert dead, "no dead-lettering (deadLetterWithResourceIdentity)"
    assert sub.get("properties.deadLetterDestination") is None, "dead-lettering must not use a storage key"
    assert dead["identity"] == {"type": "UserAssigned", "userAssignedIdentity": "eventGridIdentityId"}
    assert dead["deadLetterDestination"] == {
        "endpointType": "StorageBlob",
        "properties": {"resourceId": "deadLetterStorageId", "blobContainerName": "deadLetterContainerName"},
    }
    # Event Grid dead-letters with an identity of the topic itself, so the
    # topic must carry that same identity.
    topic = sub.parent
    assert topic.get("identity.type") == "UserAssigned"
    assignments = topic.get("identity.userAssignedIdentities")
    assert [k.strip("'") for k in assignments] == ["${eventGridIdentityId}"]
    assert template.params["eventGridIdentityId"].type == "string"


def test_dead_letters_go_to_the_container_the_event_grid_identity_may_write():
    main = load("main.bicep")
    assert main.modules["storage"].body["params"]["deadLetterContainerName"] == "deadLetterContainerName"
    for symbol in ("vaultAccess", "topic"):
        params = main.modules[symbol].body["params"]
        assert params["deadLetterContainerName"] == "deadLetterContainerName"
        assert accessor_path(params["deadLetterStorageId"]) == ["storage", "outputs", "id"]
        assert accessor_path(params["eventGridIdentityId"]) == ["eventGridIdentity", "outputs", "id"]


def test_system_topic_watches_the_vault():
    template = load("app/vault-access.bicep")
    topic = template.one("Microsoft.EventGrid/systemTopics")
    assert topic.get("properties.topicType") == "Microsoft.KeyVault.vaults"
    assert accessor_path(topic.get("properties.source")) == ["vault", "id"]
    assert template.resources["vault"].type == "Microsoft.KeyVault/vaults"
    # A system topic must live where its source is.
    assert accessor_path(topic.get("location")) == ["vault", "location"]


def test_custom_topic_takes_event_grid_schema_and_entra_only_publishers():
    topic = load("app/eventgrid-topic.bicep").one("Microsoft.EventGrid/topics")
    assert topic.get("properties.inputSchema") == "EventGridSchema"
    assert topic.get("properties.disableLocalAuth") is True


@pytest.mark.parametrize("path", SUBSCRIPTIONS)
def test_subscriptions_wait_until_the_code_is_deployed(path):
    # Event Grid refuses an AzureFunction endpoint whose function does not exist yet.
    sub = _subscription(path)
    assert sub.condition == "eventSubscriptionsEnabled"


def test_event_subscriptions_are_off_by_default_for_the_first_azd_up():
    main = load("main.bicep")
    assert main.params["eventSubscriptionsEnabled"].default is False
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["eventSubscriptionsEnabled"]["value"].endswith("=false}")


def test_the_app_registers_its_event_grid_trigger_under_that_name():
    # Read as text, not imported: the contract is the decorator pair in blueprints/.
    decorated = re.compile(
        r"""@\w+\.function_name\(\s*(?:name\s*=\s*)?["'](\w+)["']\s*\)\s*@\w+\.event_grid_trigger\(""")
    names = [name for path in sorted((ROOT / "blueprints").rglob("*.py"))
             for name in decorated.findall(path.read_text())]
    assert names == [EVENTGRID_FUNCTION], f"Event Grid triggers registered in blueprints/: {names}"
