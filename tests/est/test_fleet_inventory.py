"""The fleet in the inventory: devices' certificates come from the ledger (the vault never held them),
newest per device, with the state a device's re-enrollment decides; `GET /api/certificates` shows a
caller only the devices its rules cover, and `kvca list` says where each certificate lives."""

from __future__ import annotations

import json

from apphelpers import call_http, easy_auth_headers
from esthelpers import FLEET, Device
from kvca_core import context, operations, revocation
from kvca_core.ledger import EXTERNAL

OID = "7a1c2e3f-4b5d-4e6f-8a9b-0c1d2e3f4a5b"


async def _enroll(ctx, folder, device_id: str, days: int, *, sans=()) -> str:
    device = Device.make(folder, device_id) if not (folder / device_id).exists() else Device(folder / device_id,
                                                                                             device_id)
    signed = await operations.sign_csr(ctx, FLEET, device.csr(sans=sans, name=f"{days}.csr"), validity_days=days)
    return signed.record.serial


async def test_devices_appear_newest_first_with_their_state_and_only_to_callers_they_are_in_scope_for(
        app, fleet, tmp_path, monkeypatch):
    ctx = fleet
    await operations.issue(ctx, operations.IssueRequest(name="gateway", ca=FLEET,
                                                        dns_names=("gw.fleet.example",)))
    old = await _enroll(ctx, tmp_path, "sensor-1", 30)
    app.clock.advance(days=10)
    renewed = await _enroll(ctx, tmp_path, "sensor-1", 90)  # re-enrolled: only this one is shown
    due = await _enroll(ctx, tmp_path, "s2.fleet.example", 30, sans=["DNS:s2.fleet.example"])
    gone = await _enroll(ctx, tmp_path, "sensor-3", 90)
    await revocation.revoke(ctx, reason="keyCompromise", ca=FLEET, serial=gone)
    app.clock.advance(days=22)  # s2: 8 days left of 30, inside its last third

    report = await operations.inventory_report(ctx)
    by_name = {i.name: i for i in report.certificates}
    assert set(by_name) == {"gateway", "sensor-1", "s2.fleet.example", "sensor-3"}
    assert by_name["gateway"].location == "vault" and by_name["gateway"].state == "valid"
    assert (by_name["sensor-1"].serial, by_name["sensor-1"].state, by_name["sensor-1"].location) == \
        (renewed, "valid", EXTERNAL)
    assert old not in {i.serial for i in report.certificates}
    assert (by_name["s2.fleet.example"].serial, by_name["s2.fleet.example"].state, by_name["s2.fleet.example"].days_left) == (due, "due", 7)
    assert by_name["s2.fleet.example"].sans == ("s2.fleet.example",) and by_name["s2.fleet.example"].version is None
    assert by_name["sensor-3"].state == "revoked"
    assert [i.name for i in report.certificates][0] == "s2.fleet.example"  # soonest expiry first
    soon = await operations.inventory_report(ctx, expiring_within_days=10)
    assert [i.name for i in soon.certificates] == ["s2.fleet.example"]

    # Over HTTP: a caller whose rule covers fleet.example sees the gateway and s2, whose every name
    # is inside (its device id is its DNS name); a bare device id such as sensor-1 is covered only by
    # a rule for every name.
    rules = {"roles": {"fleet.ops": {"actions": ["inventory"], "cas": [FLEET], "dns_suffixes": ["fleet.example"]}}}
    monkeypatch.setenv("KVCA_ACCESS_RULES", json.dumps(rules))
    monkeypatch.setenv("KVCA_TRUST_EASY_AUTH", "true")
    await context.reset_shared()
    status, body, _ = await call_http("kvca_inventory", "GET", "api/certificates",
                                      headers=easy_auth_headers(OID, "Fleet ops", ("fleet.ops",)))
    assert status == 200, body
    assert sorted((c["name"], c["location"]) for c in body["certificates"]) == \
        [("gateway", "vault"), ("s2.fleet.example", "external")]
