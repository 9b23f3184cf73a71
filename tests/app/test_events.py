"""Event Grid events: parsed and validated as untrusted input; decisions per type and vault."""

import datetime as dt

import pytest

from kvca_core import events
from kvca_core.errors import InvalidRequest


def kv_event(event_type="Microsoft.KeyVault.CertificateNearExpiry", *, vault="myvault", name="api",
             version="0123456789abcdef0123456789abcdef", nbf=1559081980, exp=1559082102):
    return {
        "id": "e1", "topic": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{vault}",
        "subject": name, "eventType": event_type, "eventTime": "2019-07-25T01:08:33.1036736Z",
        "data": {"Id": f"https://{vault}.vault.azure.net/certificates/{name}/{version}", "VaultName": vault,
                 "ObjectType": "Certificate", "ObjectName": name, "Version": version, "NBF": nbf, "EXP": exp},
        "dataVersion": "1", "metadataVersion": "1",
    }


@pytest.mark.parametrize("nbf", [1559081980, "1559081980", 1559081980.0, None])
def test_nbf_and_exp_may_be_numbers_strings_or_null(nbf):
    event = events.parse_event(kv_event(nbf=nbf, exp=None if nbf is None else "1559082102"))
    if nbf is None:
        assert event.not_before is None and event.expires_on is None
    else:
        assert event.not_before == dt.datetime.fromtimestamp(1559081980, dt.timezone.utc)
        assert event.expires_on == dt.datetime.fromtimestamp(1559082102, dt.timezone.utc)


@pytest.mark.parametrize("event_type,action", [
    ("Microsoft.KeyVault.CertificateNearExpiry", events.RENEW),
    ("Microsoft.KeyVault.CertificateNewVersionCreated", events.SIGN_PENDING),
    ("Kvca.CertificatePendingRequest", events.SIGN_PENDING),
])
def test_certificate_events_of_this_vault_map_to_one_operation(event_type, action):
    decision = events.decide(kv_event(event_type), vault_name="MyVault")  # vault names are case-insensitive
    assert decision.action == action
    assert decision.event.name == "api"


@pytest.mark.parametrize("event_type", ["Microsoft.KeyVault.CertificateExpired",
                                        "Microsoft.KeyVault.SecretNearExpiry",
                                        "Microsoft.KeyVault.VaultAccessPolicyChanged", "Something.Else"])
def test_other_event_types_are_ignored_with_a_reason(event_type):
    decision = events.decide(kv_event(event_type), vault_name="myvault")
    assert decision.action is None and event_type in decision.reason


def test_events_from_another_vault_are_ignored():
    decision = events.decide(kv_event(vault="othervault"), vault_name="myvault")
    assert decision.action is None and "othervault" in decision.reason


@pytest.mark.parametrize("mutate,fragment", [
    (lambda e: e.update(data="nope"), "'data' must be a JSON object"),
    (lambda e: e["data"].pop("ObjectName"), "ObjectName"),
    (lambda e: e["data"].pop("VaultName"), "VaultName"),
    (lambda e: e["data"].update(ObjectName="../secrets/x"), "not a Key Vault object name"),
    (lambda e: e["data"].update(ObjectName="a" * 128), "not a Key Vault object name"),
    (lambda e: e["data"].update(Version="abc/../x"), "not a Key Vault version"),
    (lambda e: e["data"].update(NBF=True), "boolean"),
    (lambda e: e["data"].update(EXP="soon"), "neither epoch seconds nor a date"),
    (lambda e: e["data"].update(EXP=-5), "not a valid epoch time"),
    (lambda e: e["data"].update(ObjectName=42), "must be a string"),
    (lambda e: e.pop("eventType"), "eventType"),
])
def test_malformed_events_are_refused_naming_the_field(mutate, fragment):
    event = kv_event()
    mutate(event)
    with pytest.raises(InvalidRequest) as info:
        events.decide(event, vault_name="myvault")
    assert fragment in str(info.value)


def test_an_event_that_is_not_an_object_is_refused():
    with pytest.raises(InvalidRequest):
        events.parse_event(["not", "an", "object"])


def test_kvcas_own_event_round_trips_through_the_parser():
    raw = events.pending_request_event(vault_name="myvault", vault_url="https://myvault.vault.azure.net/",
                                       name="web-1")
    assert raw["eventType"] == "Kvca.CertificatePendingRequest" and raw["dataVersion"] == "1"
    assert raw["data"] == {"Id": "https://myvault.vault.azure.net/certificates/web-1/pending",
                           "VaultName": "myvault", "ObjectType": "Certificate", "ObjectName": "web-1"}
    decision = events.decide(raw, vault_name="myvault")
    assert decision.action == events.SIGN_PENDING and decision.event.version is None
