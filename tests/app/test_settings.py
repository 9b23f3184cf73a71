"""kvca_core.settings: every problem reported at once, at start."""

from __future__ import annotations

import json

import pytest

from kvca_core.errors import ConfigurationError
from kvca_core.settings import Settings

VAULT = {"KVCA_VAULT_URL": "https://corp.vault.azure.net/"}


def test_the_vault_name_is_derived_from_an_azure_vault_url():
    assert Settings.from_env(VAULT).vault_name == "corp"


def test_every_malformed_setting_is_reported_in_one_error():
    env = {"KVCA_VAULT_URL": "http://corp", "KVCA_CONCURRENCY": "0", "KVCA_VERIFY_CHALLENGE_RESOURCE": "maybe"}
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    text = str(caught.value)
    assert "KVCA_VAULT_URL='http://corp' must be an https:// URL" in text
    assert "KVCA_CONCURRENCY='0' must be at least 1" in text
    assert "KVCA_VERIFY_CHALLENGE_RESOURCE='maybe' is not a boolean" in text


@pytest.mark.parametrize("policy, named", [
    ({"max_validity_days": 90, "allow_wildcard": False}, "'allow_wildcard'"),           # a typo, one policy
    ({"corp-ca": {"max_validity_days": 90}, "web-ca": {"allowed_domains": "x.internal"}},
     "['web-ca']"),                                                                      # one broken entry of many
    ({"*": {"max_validity_days": 90}, "corp-ca": "strict"}, "['corp-ca']"),             # not an object
])
def test_a_broken_issuance_policy_is_reported_at_start_not_at_first_issuance(policy, named):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**VAULT, "KVCA_ISSUANCE_POLICY": json.dumps(policy)})
    assert named in str(caught.value)


def test_a_valid_per_ca_issuance_policy_is_accepted():
    policy = {"corp-ca": {"allowed_domains": ["corp.internal"], "allow_wildcards": False}, "*": {"max_validity_days": 90}}
    assert Settings.from_env({**VAULT, "KVCA_ISSUANCE_POLICY": json.dumps(policy)}).issuance_policy == policy


@pytest.mark.parametrize("schedule", ["0 0 */6 * * *", "0 30 9 * * Mon-Fri", "*/30 * * * * *", "0 0 0 1,15 Jan,Jul *",
                                      "0  5-55/10  *  * * *"])
def test_a_six_field_ncrontab_schedule_is_accepted(schedule):
    assert Settings.from_env({**VAULT, "KVCA_SWEEP_SCHEDULE": schedule}).sweep_schedule == " ".join(schedule.split())


@pytest.mark.parametrize("schedule, named", [
    ("0 */6 * * *", "not 5 field(s)"),                 # a Unix cron: the host would disable the timer
    ("0 0 */6 * * * 2030", "not 7 field(s)"),
    ("0 0 24 * * *", "the hour field '24' is malformed"),
    ("0 0 */0 * * *", "step '0'"),
    ("0 0 9-5 * * *", "runs backwards"),
    ("0 0 * 0 * *", "the day field '0' is malformed"),
    ("0 0 * * Foo *", "the month field 'Foo' is malformed"),
    ("00:05:00", "not 1 field(s)"),                    # a TimeSpan: App Service plans only
])
def test_a_malformed_sweep_schedule_is_reported_with_every_other_problem(schedule, named):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"KVCA_VAULT_URL": "http://corp", "KVCA_SWEEP_SCHEDULE": schedule})
    assert named in str(caught.value) and "KVCA_VAULT_URL='http://corp'" in str(caught.value)


def test_the_cli_may_leave_the_schedule_unset_but_the_host_may_not():
    assert Settings.from_env(VAULT).sweep_schedule == "0 0 */6 * * *"  # a laptop runs no timer
    with pytest.raises(ConfigurationError, match="KVCA_SWEEP_SCHEDULE is required in the app settings"):
        Settings.from_env(VAULT, host=True)
