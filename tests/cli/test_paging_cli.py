"""The command line over a vault of more than one listing page, paged as the real Key Vault pages
(the nextLink drops includePending): `ca create` resumes a CA whose only versions are pending on
page 2, `ca list` and `list` see page 2, `sweep` signs what is pending there; and a sweep schedule
the Functions host would refuse is reported at start."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

FILLER = [f"a-{i:03d}" for i in range(30)]  # sorts before everything below: those land on page 2


def _fill(kv_clients) -> None:
    """30 self-signed certificates of nobody's, imported: the vault lists on two pages."""
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    for name in FILLER:
        subject = x509.Name.from_rfc4514_string(f"CN={name}")
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
        kv_clients.certificates.import_certificate(
            name, pkcs12.serialize_key_and_certificates(name.encode(), key, cert, None, NoEncryption()))


@pytest.mark.parametrize("current_includes_pending", [False, True])
def test_ca_create_list_request_and_sweep_over_two_pages(kvca, kv_clients, emulator, current_includes_pending):
    emulator.set_fidelity(paging_drops_params=True, current_includes_pending=current_includes_pending)
    _fill(kv_clients)
    # The intermediate's merge keeps being throttled: ca create stops with the intermediate
    # pending (its only version) on page 2.
    emulator.faults.add(kind="429", route=r"/certificates/zz-corp/pending/merge$", rate=1, retry_after=0.01)
    failed = kvca("ca", "create", "zz-corp", "--subject", "CN=ZZ Corp CA")
    assert failed.code == 1 and "throttling" in failed.err
    emulator.faults.clear()
    assert "zz-corp" not in kvca("ca", "list").out.split()

    # A little throttling without Retry-After is ridden out; the rerun finds the pending
    # intermediate past page 1 and finishes it.
    emulator.faults.add(kind="429", method="POST", route=r"/pending/merge$", count=1)
    resumed = kvca("ca", "create", "zz-corp", "--subject", "CN=ZZ Corp CA")
    assert resumed.code == 0, resumed.err
    assert "resumed an unfinished `kvca ca create`" in resumed.out
    assert [ca["name"] for ca in json.loads(kvca("--json", "ca", "list").out)["cas"]] == ["zz-corp"]

    for name in ("zz-a", "zz-b"):
        assert kvca("request", name, "--dns", f"{name}.example.com", "--ca", "zz-corp").code == 0
    listed = {c["name"]: c for c in json.loads(kvca("--json", "list").out)["certificates"]}
    assert {n: (c["state"], c["not_after"]) for n, c in listed.items()} == {
        "zz-a": ("pending", None), "zz-b": ("pending", None)}
    swept = kvca("--json", "sweep")
    assert swept.code == 0, swept.err
    assert json.loads(swept.out)["signed"] == 2
    assert {c["name"]: c["state"] for c in json.loads(kvca("--json", "list").out)["certificates"]} == {
        "zz-a": "valid", "zz-b": "valid"}
    assert json.loads(kvca("--json", "ca", "list").out)["cas"][0]["issued_valid"] == 2


@pytest.mark.parametrize("schedule", ["0 */6 * * *", "0 0 */6 * * 9"])
def test_a_sweep_schedule_the_host_would_refuse_stops_the_cli_at_start(kvca, monkeypatch, schedule):
    monkeypatch.setenv("KVCA_SWEEP_SCHEDULE", schedule)
    result = kvca("list")
    assert result.code != 0 and "KVCA_SWEEP_SCHEDULE" in result.err and len(result.err_lines) == 1
