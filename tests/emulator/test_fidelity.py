"""The fidelity switches and the call log, and the behaviours of the real Key Vault recorded
in keyvault-facts.md ("Observed in recorded sessions (second round)"), through the real SDK."""

from __future__ import annotations

import json

import pytest
from azure.keyvault.certificates import CertificatePolicy

from kvemulator import Emulator, Fidelity

from .test_protocol import call


def unknown_policy(subject: str = "CN=pending", **kwargs) -> CertificatePolicy:
    return CertificatePolicy(issuer_name="Unknown", subject=subject, **kwargs)


def test_fidelity_defaults_are_the_real_service_and_clear_controls_restores_them(emulator):
    assert emulator.fidelity == Fidelity()
    assert emulator.fidelity.paging_drops_params and emulator.fidelity.throttle_retry_after
    assert not emulator.fidelity.current_includes_pending
    emulator.set_fidelity(paging_drops_params=False, cancel_settle_seconds=4)
    assert emulator.fidelity.cancel_settle_seconds == 4.0 and not emulator.fidelity.paging_drops_params
    emulator.clear_controls()
    assert emulator.fidelity == Fidelity()


@pytest.mark.parametrize("changes", [{"no_such_switch": True}, {"paging_drops_params": 1},
                                     {"cancel_settle_seconds": -1}, {"cancel_settle_seconds": "2"},
                                     {"soft_delete_settle_seconds": float("nan")}])
def test_a_bad_fidelity_change_is_refused_and_changes_nothing(emulator, changes):
    with pytest.raises(ValueError):
        emulator.set_fidelity(current_includes_pending=True, **changes)
    assert emulator.fidelity == Fidelity()
    status, body, _ = call(emulator, "POST", "/_emulator/fidelity", json.dumps(changes).encode())
    assert status == 400 and body["error"]["code"] == "BadParameter"
    assert emulator.fidelity == Fidelity()


def test_fidelity_control_route_reads_and_changes_the_switches(emulator):
    status, body, _ = call(emulator, "POST", "/_emulator/fidelity",
                           json.dumps({"current_includes_pending": True}).encode())
    assert status == 200 and body["current_includes_pending"] is True
    assert emulator.fidelity.current_includes_pending
    status, body, _ = call(emulator, "GET", "/_emulator/fidelity")
    assert status == 200 and body == {**Fidelity().describe(), "current_includes_pending": True}


def test_emulator_takes_its_fidelity_at_construction(tmp_path):
    em = Emulator(tls_dir=tmp_path, fidelity=Fidelity(paging_drops_params=False))
    assert em.fidelity == Fidelity(paging_drops_params=False)


def test_requests_logs_each_authenticated_call_by_route_template(emulator, kv_clients):
    kv_clients.certificates.begin_create_certificate("logged", unknown_policy())
    kv_clients.certificates.get_certificate_operation("logged")
    assert emulator.requests == [("POST", "POST /certificates/{name}/create"),
                                 ("GET", "GET /certificates/{name}/pending")]
    emulator.reset()
    assert emulator.requests == []
