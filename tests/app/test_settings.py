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
