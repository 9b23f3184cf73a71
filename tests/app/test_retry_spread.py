"""Retries spread instead of synchronised: azure-core waits exactly the Retry-After Key Vault sends (the
end of its 10-second window), so every throttled caller would come back at the same instant."""

from __future__ import annotations

from kvca_core.rim.azure import RETRY_SPREAD_CAP, _request_key, spread


def test_a_retry_waits_at_least_what_the_service_asked_and_at_most_a_capped_spread_more():
    for asked in (0.05, 1.0, 3.0, 10.0, 60.0):
        waits = [spread(asked) for _ in range(200)]
        assert all(asked <= w <= asked + min(asked, RETRY_SPREAD_CAP) for w in waits)
        assert len(set(waits)) > 150  # spread, not one instant
    assert spread(0) == 0


def test_one_token_request_is_one_flight_however_the_sdk_spells_it():
    scope = ("https://vault.azure.net/.default",)
    tenant = "00000000-0000-0000-0000-000000000000"
    key_vault = _request_key("get_token_info", scope, {"options": {"enable_cae": True, "tenant_id": tenant}})
    azure_core = _request_key("get_token_info", scope,
                              {"options": {"claims": None, "tenant_id": tenant, "enable_cae": True}})
    assert key_vault == azure_core
    assert _request_key("get_token_info", scope, {"options": {"tenant_id": "other", "enable_cae": True}}) != key_vault
    assert _request_key("get_token_info", scope, {"options": {"claims": "x", "tenant_id": tenant}}) != key_vault
