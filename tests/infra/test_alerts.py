"""Alerts (infra/app/alerts.bicep): failed renewals from kvca's own log lines, dead-lettered events
on both Event Grid topics, one action group whose receivers are parameters, and the webhook setting
the app reads (KVCA_NOTIFY_WEBHOOK_URL) passed as a secure parameter."""

from __future__ import annotations

import re

import pytest

from bicepwalk import accessor_path, app_settings, call, load

ALERTS = "app/alerts.bicep"


def _alerts():
    return load(ALERTS)


def test_main_deploys_the_alerts_after_the_topics_exist():
    main = load("main.bicep")
    module = main.modules["alerts"]
    assert main.module_paths["alerts"] == "app/alerts.bicep"
    params = module.body["params"]
    # Outputs of the modules that make the topics: the alert waits for both.
    assert accessor_path(params["systemTopicId"]) == ["vaultAccess", "outputs", "systemTopicId"]
    assert accessor_path(params["customTopicId"]) == ["topic", "outputs", "id"]
    assert accessor_path(params["applicationInsightsId"]) == ["monitoring", "outputs", "applicationInsightsId"]
    assert params["alertEmail"] == "alertEmail" and params["alertWebhookUrl"] == "alertWebhookUrl"
    assert load("app/vault-access.bicep").outputs["systemTopicId"]
    assert load("app/monitoring.bicep").outputs["applicationInsightsId"]


@pytest.mark.parametrize("path, name", [("main.bicep", "alertEmail"), ("main.bicep", "alertWebhookUrl"),
                                        (ALERTS, "alertEmail"), (ALERTS, "alertWebhookUrl")])
def test_the_receivers_are_optional_described_parameters(path, name):
    param = load(path).params[name]
    assert param.default == "" and param.description
    if name == "alertWebhookUrl":
        assert "secure" in param.decorators, "a webhook URL usually carries a token"


def test_the_action_group_exists_only_with_a_receiver_and_the_rules_name_it_only_then():
    template = _alerts()
    group = template.one("Microsoft.Insights/actionGroups")
    assert group.condition == "hasReceivers"
    # !(empty(alertEmail) && empty(alertWebhookUrl)): a receiver of either kind makes the group.
    assert template.variables["hasReceivers"] == {"operator": {"type": "not", "operands": {"bool_value": {
        "operator": {"type": "and", "operands": {"operand_1": call_empty("alertEmail"),
                                                 "operand_2": call_empty("alertWebhookUrl")}}}}}}
    assert group.get("location") == "global" and len(group.get("properties.groupShortName")) <= 12
    assert group.get("properties.enabled") is True
    email = group.get("properties.emailReceivers")["operator"]["operands"]
    assert email["true_value"] == [] and email["false_value"][0]["emailAddress"] == "alertEmail"
    hook = group.get("properties.webhookReceivers")["operator"]["operands"]
    assert hook["true_value"] == [] and hook["false_value"][0]["serviceUri"] == "alertWebhookUrl"
    assert hook["false_value"][0]["useCommonAlertSchema"] is True
    ids = template.variables["actionGroupIds"]["operator"]["operands"]
    assert ids["condition"] == "hasReceivers" and ids["false_value"] == []
    assert accessor_path(ids["true_value"][0]) == ["actionGroup", "id"]


def call_empty(name):
    return {"function": {"type": "empty", "parameters": {"item_to_test": name}}}


def test_failed_renewals_alert_on_the_log_lines_kvca_writes():
    rule = _alerts().one("Microsoft.Insights/scheduledQueryRules")
    assert rule.get("properties.scopes") == ["applicationInsightsId"]
    assert rule.get("properties.actions.actionGroups") == "actionGroupIds"
    assert rule.get("properties.enabled") is True and 0 <= rule.get("properties.severity") <= 4
    [condition] = rule.get("properties.criteria.allOf")
    assert (condition["timeAggregation"], condition["operator"], condition["threshold"]) == ("Count", "GreaterThan", 0)
    query = condition["query"]
    assert query.startswith("traces | where ")
    # What kvca_core/operations.py logs for a failed renewal, matched the way the query matches it.
    sweep_line = "kvca op=sweep certificate=web outcome=failed reason=CA 'corp': the CA is disabled"
    assert sweep_line.startswith("kvca op=sweep certificate=") and "outcome=failed" in sweep_line
    regex = re.search(r'matches regex @"([^"]+)"', query).group(1).replace("\\\\", "\\")
    assert re.search(regex, "kvca op=renew certificate=web outcome=refused kind=PolicyViolation reason=...")
    assert re.search(regex, "kvca op=sign_pending certificate=web outcome=error kind=UpstreamError reason=...")
    assert not re.search(regex, "kvca op=renew certificate=web outcome=refused kind=NotManaged reason=...")
    assert not re.search(regex, "kvca op=renew certificate=web outcome=refused kind=Conflict reason=...")


def test_the_log_lines_the_alert_matches_are_the_ones_operations_writes(caplog):
    """The alert's query and kvca's log format are two copies of one fact: keep them in step."""
    import logging

    from kvca_core import telemetry
    from kvca_core.errors import PolicyViolation

    with caplog.at_level(logging.INFO, logger="kvca_core.telemetry"):
        telemetry.record("sweep", "failed", certificate="web", reason="CA 'corp': the CA is disabled")
        telemetry.refusal("renew", "web", PolicyViolation("the CA is disabled", subject="CA 'corp'"))
    assert [r.getMessage() for r in caplog.records] == [
        "kvca op=sweep certificate=web outcome=failed reason=CA 'corp': the CA is disabled",
        "kvca op=renew certificate=web outcome=refused kind=PolicyViolation reason=CA 'corp': the CA is disabled"]


def test_dead_lettered_events_alert_on_both_topics():
    template = _alerts()
    alert = template.one("Microsoft.Insights/metricAlerts")
    assert alert.get("location") == "global"
    topics = {t["key"]: t for t in template.variables["deadLetterTopics"]}
    assert {t["namespace"]: t["id"] for t in topics.values()} == {
        "Microsoft.EventGrid/systemTopics": "systemTopicId", "Microsoft.EventGrid/topics": "customTopicId"}
    criteria = alert.get("properties.criteria")
    assert criteria["'odata.type'"] == "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
    [criterion] = criteria["allOf"]
    assert criterion["metricName"] == "DeadLetteredCount" and criterion["timeAggregation"] == "Total"
    assert (criterion["operator"], criterion["threshold"], criterion["criterionType"]) == \
        ("GreaterThan", 0, "StaticThresholdCriterion")
    assert accessor_path(criterion["metricNamespace"]) == ["topic", "namespace"]
    assert [accessor_path(s) for s in alert.get("properties.scopes")] == [["topic", "id"]]


def test_the_notification_webhook_reaches_the_app_as_a_secure_parameter():
    main, function = load("main.bicep"), load("app/function.bicep")
    assert "secure" in main.params["notifyWebhookUrl"].decorators
    assert "secure" in function.params["notifyWebhookUrl"].decorators
    assert main.modules["functionApp"].body["params"]["notifyWebhookUrl"] == "notifyWebhookUrl"
    settings = app_settings(function.one("Microsoft.Web/sites"))
    assert settings["KVCA_NOTIFY_WEBHOOK_URL"] == "notifyWebhookUrl"
    assert call(settings["KVCA_CA_RENEW_BEFORE_DAYS"]) == ("string", {"value_to_convert": "caRenewBeforeDays"})
    assert function.params["caRenewBeforeDays"].default == 398
