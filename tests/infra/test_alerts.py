"""Alerts (infra/app/alerts.bicep): failed renewals, CA expiry and CRL publishing from the
dimensions of kvca's structured log records, dead-lettered or dropped events on both Event Grid
topics, one action group whose receivers are parameters, and the webhook setting the app reads
(KVCA_NOTIFY_WEBHOOK_URL) passed as a secure parameter."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bicepwalk import accessor_path, app_settings, call, load
from kvca_core.errors import KvcaError

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


# The structured record kvca logs per operation (OpenTelemetry log attributes, customDimensions in
# Application Insights' `traces`): each dimension, and the values it takes where they are a closed set.
DIMENSIONS = {
    "kvca.operation": {"issue", "renew", "sign_pending", "sweep", "cancel", "revoke", "publish_crl", "ocsp",
                       "sign_csr", "enroll", "ca_warning"},
    "kvca.outcome": {"signed", "renewed", "issued", "requested", "skipped", "failed", "refused", "error",
                     "cancelled", "revoked", "already-revoked", "ca-expiring", "ca-expired"},
    "kvca.kind": {cls.__name__ for cls in KvcaError.__subclasses__()}
    | {sub.__name__ for cls in KvcaError.__subclasses__() for sub in cls.__subclasses__()},
    "kvca.source": {"event", "timer", "http", "cli"},
    "kvca.certificate": None, "kvca.version": None, "kvca.serial": None, "kvca.ca": None, "kvca.reason": None,
}
# What each log rule fires on: rule key -> records that must and must not fire it.
FIRES = {
    "failed-renewals": (
        [{"operation": "sweep", "outcome": "failed"},
         {"operation": "renew", "outcome": "refused", "kind": "PolicyViolation"},
         {"operation": "sign_pending", "outcome": "error", "kind": "UpstreamError"},
         {"operation": "renew", "outcome": "error", "kind": "Throttled"},
         {"operation": "renew", "outcome": "refused", "kind": "NotFound"},
         {"operation": "sign_pending", "outcome": "refused", "kind": "ConfigurationError"}],
        [{"operation": "renew", "outcome": "refused", "kind": "NotManaged"},
         {"operation": "renew", "outcome": "refused", "kind": "Conflict"},
         {"operation": "renew", "outcome": "refused", "kind": "InvalidRequest"},
         {"operation": "renew", "outcome": "renewed"}, {"operation": "sweep", "outcome": "skipped"},
         {"operation": "issue", "outcome": "failed"}]),
    "ca-expiring": ([{"operation": "ca_warning", "outcome": "ca-expiring"}],
                    [{"operation": "ca_warning", "outcome": "ca-expired"}, {"operation": "sweep", "outcome": "failed"}]),
    "ca-expired": ([{"operation": "ca_warning", "outcome": "ca-expired"}],
                   [{"operation": "ca_warning", "outcome": "ca-expiring"}]),
    "crl-publishing": ([{"operation": "publish_crl", "outcome": "failed"}, {"operation": "publish_crl", "outcome": "error"}],
                       [{"operation": "publish_crl", "outcome": "signed"}, {"operation": "revoke", "outcome": "failed"}]),
}


def _rules():
    return {rule["key"]: rule for rule in _alerts().variables["logRules"]}


def _query(rule) -> str:
    """The rule's KQL as Bicep builds it: '${kvcaRecords} | ${rule.filter} | ${kvcaColumns}'."""
    template = _alerts()
    [condition] = template.one("Microsoft.Insights/scheduledQueryRules").get("properties.criteria.allOf")
    assert condition["query"] == "${kvcaRecords} | ${rule.filter} | ${kvcaColumns}"
    return " | ".join([template.variables["kvcaRecords"], rule["filter"], template.variables["kvcaColumns"]])


def _columns() -> dict[str, str]:
    """column -> dimension, from the records prologue's `extend c = tostring(customDimensions["d"])`."""
    prologue = _alerts().variables["kvcaRecords"]
    return dict(re.findall(r'(\w+) = tostring\(customDimensions\["([^"]+)"\]\)', prologue))


def _fires(rule, record: dict[str, str]) -> bool:
    """Evaluate a rule's `where` filter (==, in (...), and, or, parentheses) on one record."""
    expression = rule["filter"].removeprefix("where ")
    assert re.fullmatch(r'[\w\s()",=.-]+', expression), expression  # nothing but the grammar above
    python = re.sub(r"\bin \(([^)]*)\)", r"in [\1]", expression)
    columns = {column: record.get(column, "") for column in _columns()}
    return eval(python, {"__builtins__": {}}, columns)  # noqa: S307 - the filter text of our own template


def test_the_log_rules_query_kvcas_dimensions_never_the_message_text():
    columns = _columns()
    assert set(columns.values()) <= set(DIMENSIONS), set(columns.values()) - set(DIMENSIONS)
    assert {"operation": "kvca.operation", "outcome": "kvca.outcome", "kind": "kvca.kind",
            "certificate": "kvca.certificate", "ca": "kvca.ca"}.items() <= columns.items()
    for rule in _rules().values():
        query = _query(rule)
        assert query.startswith("traces | where isnotempty(customDimensions[\"kvca.operation\"])")
        assert "message" not in query
        assert set(re.findall(r'customDimensions\["([^"]+)"\]', query)) <= set(DIMENSIONS)


@pytest.mark.parametrize("key", sorted(FIRES))
def test_each_rule_compares_only_values_kvca_logs(key):
    rule, columns = _rules()[key], _columns()
    compared = re.findall(r'(\w+) == "([^"]+)"', rule["filter"])
    compared += [(column, value) for column, values in re.findall(r"(\w+) in \(([^)]*)\)", rule["filter"])
                 for value in re.findall(r'"([^"]+)"', values)]
    assert compared
    for column, value in compared:
        allowed = DIMENSIONS[columns[column]]
        assert allowed is not None and value in allowed, f"{key}: {column} == {value!r} is not a value kvca logs"


@pytest.mark.parametrize("key", sorted(FIRES))
def test_each_rule_fires_on_its_records_and_no_others(key):
    rule = _rules()[key]
    fire, quiet = FIRES[key]
    assert [r for r in fire if not _fires(rule, r)] == []
    assert [r for r in quiet if _fires(rule, r)] == []


def test_the_log_rules_are_the_intended_ones_with_their_severity_and_windows():
    rules = _rules()
    assert set(rules) == set(FIRES)
    assert rules["ca-expired"]["severity"] < rules["ca-expiring"]["severity"], "an expired CA is the worse news"
    # A CA warning comes from the 6-hourly sweep: a day-long window keeps the alert open between sweeps.
    assert rules["ca-expiring"]["windowSize"] == rules["ca-expired"]["windowSize"] == "P1D"
    alert = _alerts().one("Microsoft.Insights/scheduledQueryRules")
    assert alert.get("properties.scopes") == ["applicationInsightsId"]
    assert alert.get("properties.actions.actionGroups") == "actionGroupIds"
    assert alert.get("properties.enabled") is True
    [condition] = alert.get("properties.criteria.allOf")
    assert (condition["timeAggregation"], condition["operator"], condition["threshold"]) == ("Count", "GreaterThan", 0)
    for rule in rules.values():
        assert 0 <= rule["severity"] <= 4 and rule["displayName"].startswith("kvca: ")


def test_host_json_turns_on_opentelemetry_and_the_worker_streams_the_apps_records():
    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
    settings = app_settings(load("app/function.bicep").one("Microsoft.Web/sites"))
    assert settings["PYTHON_ENABLE_OPENTELEMETRY"] == "true"
    # The app configures the exporter with its identity; the worker's own setup has no credential.
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in settings


def test_undelivered_events_alert_on_both_topics_dead_lettered_or_dropped():
    template = _alerts()
    alert = template.one("Microsoft.Insights/metricAlerts")
    assert alert.get("location") == "global"
    topics = {t["key"]: t for t in template.variables["deadLetterTopics"]}
    assert {t["namespace"]: t["id"] for t in topics.values()} == {
        "Microsoft.EventGrid/systemTopics": "systemTopicId", "Microsoft.EventGrid/topics": "customTopicId"}
    metrics = [m["metric"] for m in template.variables["undeliveredMetrics"]]
    assert metrics == ["DeadLetteredCount", "DroppedEventCount"]
    # range(0, 4): every topic (i % 2) with every metric (i / 2).
    loop = template.variables["undelivered"]
    assert loop["loop_type"]["detail"]["array_name"] == {
        "function": {"type": "range", "parameters": {"start_index": 0, "count": len(topics) * len(metrics)}}}
    pairs = {(i % 2, i // 2) for i in range(4)}
    assert pairs == {(t, m) for t in range(len(topics)) for m in range(len(metrics))}
    criteria = alert.get("properties.criteria")
    assert criteria["'odata.type'"] == "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
    [criterion] = criteria["allOf"]
    assert accessor_path(criterion["metricName"]) == ["alert", "metric", "metric"]
    assert criterion["timeAggregation"] == "Total"
    assert (criterion["operator"], criterion["threshold"], criterion["criterionType"]) == \
        ("GreaterThan", 0, "StaticThresholdCriterion")
    assert accessor_path(criterion["metricNamespace"]) == ["alert", "topic", "namespace"]
    assert [accessor_path(s) for s in alert.get("properties.scopes")] == [["alert", "topic", "id"]]


def test_the_notification_webhook_reaches_the_app_as_a_secure_parameter():
    main, function = load("main.bicep"), load("app/function.bicep")
    assert "secure" in main.params["notifyWebhookUrl"].decorators
    assert "secure" in function.params["notifyWebhookUrl"].decorators
    assert main.modules["functionApp"].body["params"]["notifyWebhookUrl"] == "notifyWebhookUrl"
    settings = app_settings(function.one("Microsoft.Web/sites"))
    assert settings["KVCA_NOTIFY_WEBHOOK_URL"] == "notifyWebhookUrl"
    assert call(settings["KVCA_CA_RENEW_BEFORE_DAYS"]) == ("string", {"value_to_convert": "caRenewBeforeDays"})
    assert function.params["caRenewBeforeDays"].default == 398
