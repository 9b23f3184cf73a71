"""`kvca sign-csr CA --from DIR_OR_LIST` (a fleet's CSRs: one JSON line each, resumable) and
`kvca enroll-codes` (one-time codes, kept only as hashes, written to a 0600 file)."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

from cryptography import x509

from contract import check
from esthelpers import FLEET, Device
from kvca_core.enrollment import CODE_KIND, code_key


def _lines(out: str) -> list[dict]:
    return [check(json.loads(line)) for line in out.splitlines() if line.strip()]


def _fleet(tmp_path: Path, count: int) -> tuple[Path, list[Device]]:
    """`count` devices, each with its key in its own folder; their CSRs (only) copied to one folder."""
    csrs = tmp_path / "csrs"
    csrs.mkdir()
    devices = [Device.make(tmp_path / "devices", f"device-{n:03d}") for n in range(count)]
    for device in devices:
        (csrs / f"{device.device_id}.csr").write_bytes(device.csr())
    return csrs, devices


def _ledger_serials(kvca) -> list[str]:
    import asyncio

    from kvca_core.context import Context

    async def read() -> list[str]:
        async with Context.open() as ctx:
            return sorted([r.serial async for r in ctx.ledger.certificates(FLEET)])
    return asyncio.run(read())


def test_a_fleet_is_signed_one_json_line_each_and_a_second_run_signs_nothing_again(kvca, fleet_cli, tmp_path):
    csrs, devices = _fleet(tmp_path, 4)
    # One CSR the policy refuses: a name outside fleet.example.
    outsider = Device.make(tmp_path / "devices", "device-999")
    (csrs / "device-999.csr").write_bytes(outsider.csr(sans=["DNS:device-999.elsewhere.example"]))
    first = kvca("sign-csr", FLEET, "--from", str(csrs))
    assert first.code == 1, first.err  # one failed
    lines = {line["name"]: line for line in _lines(first.out)}
    assert {n: l["action"] for n, l in lines.items()} == {**{d.device_id: "signed" for d in devices},
                                                          "device-999": "failed"}
    assert "outside the allowed domains" in lines["device-999"]["reason"] and lines["device-999"]["serial"] is None
    for device in devices:
        line = lines[device.device_id]
        assert line["csr"] == str(csrs / f"{device.device_id}.csr")
        assert line["file"] == str(csrs / f"{device.device_id}.crt")
        chain = x509.load_pem_x509_certificates(Path(line["file"]).read_bytes())
        assert format(chain[0].serial_number, "x") == line["serial"] and len(chain) == 2
    assert "failed 1, signed 4" in first.err and "run the same command again" in first.err
    serials = _ledger_serials(kvca)
    assert serials == sorted(lines[d.device_id]["serial"] for d in devices)

    # Interrupted or not: the same command again signs nothing it signed before.
    for device in devices[:2]:
        (csrs / f"{device.device_id}.crt").unlink()  # a run cut short before it wrote these
    again = kvca("--json", "sign-csr", FLEET, "--from", str(csrs))
    assert again.code == 1
    relines = {line["name"]: line for line in _lines(again.out)}
    assert {n: l["action"] for n, l in relines.items()} == {**{d.device_id: "skipped" for d in devices},
                                                            "device-999": "failed"}
    assert all(relines[d.device_id]["serial"] == lines[d.device_id]["serial"] for d in devices)
    assert all((csrs / f"{d.device_id}.crt").exists() for d in devices)  # written again
    assert _ledger_serials(kvca) == serials


def test_a_list_of_csr_paths_and_an_output_folder(kvca, fleet_cli, tmp_path):
    csrs, devices = _fleet(tmp_path, 2)
    listing = tmp_path / "fleet.txt"
    listing.write_text("# the first two\n" + "".join(f"csrs/{d.device_id}.csr\n\n" for d in devices))
    out = tmp_path / "certs"
    out.mkdir()
    result = kvca("sign-csr", FLEET, "--from", str(listing), "--out", str(out), "--days", "30")
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["device-000.crt", "device-001.crt"]
    assert [line["action"] for line in _lines(result.out)] == ["signed", "signed"]


def test_an_unreadable_csr_refuses_the_whole_run_before_anything_is_signed(kvca, fleet_cli, tmp_path):
    csrs, _ = _fleet(tmp_path, 2)
    (csrs / "broken.csr").write_text("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    result = kvca("sign-csr", FLEET, "--from", str(csrs))
    assert result.code == 2 and "broken.csr" in result.err and len(result.err_lines) == 1
    assert _ledger_serials(kvca) == [] and not list(csrs.glob("*.crt"))
    twice = tmp_path / "twice.txt"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "device-000.csr").write_bytes((csrs / "device-000.csr").read_bytes())
    twice.write_text("csrs/device-000.csr\nother/device-000.csr\n")
    out = tmp_path / "certs"
    out.mkdir()
    clash = kvca("sign-csr", FLEET, "--from", str(twice), "--out", str(out))
    assert clash.code == 2 and "would both be written to" in clash.err


def test_enroll_codes_are_written_0600_and_the_ledger_keeps_only_their_hashes(kvca, fleet_cli, tmp_path, cli_env):
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id,sans\nsensor-1,\nsensor-2,URI:spiffe://fleet.example/sensor-2\n")
    out = tmp_path / "codes.csv"
    result = kvca("--json", "enroll-codes", FLEET, "--from", str(devices), "--days", "3", "--out", str(out))
    assert result.code == 0, result.err
    document = check(json.loads(result.out))
    assert (document["object"], document["devices"], document["mode"]) == ("enroll_codes", 2, "0600")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    rows = list(csv.DictReader(out.open()))
    assert [r["device_id"] for r in rows] == ["sensor-1", "sensor-2"]
    assert all(len(r["code"].replace("-", "")) == 26 for r in rows) and rows[0]["code"] != rows[1]["code"]
    # The ledger: a marker under each code's hash, and the codes nowhere in it.
    ledger = Path(cli_env["KVCA_LEDGER_TABLE_URL"].removeprefix("sqlite://")).read_bytes()
    for row in rows:
        assert row["code"].encode() not in ledger and row["code"].replace("-", "").encode() not in ledger
        assert code_key(FLEET, row["device_id"], row["code"]).split("~")[1].encode() in ledger
    # A codes file is never overwritten: the command refuses before it makes a code.
    again = kvca("enroll-codes", FLEET, "--from", str(devices), "--out", str(out))
    assert again.code == 2 and "exists" in again.err


def test_enroll_codes_refuses_bad_rows_and_a_ca_that_signs_no_external_csr(kvca, fleet_cli, tmp_path):
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id\nsensor 1\n")
    bad = kvca("enroll-codes", FLEET, "--from", str(devices), "--out", str(tmp_path / "a.csv"))
    assert bad.code == 2 and "line 2" in bad.err and "device ID 'sensor 1'" in bad.err
    devices.write_text("device_id\nsensor-1\nsensor-1\n")
    twice = kvca("enroll-codes", FLEET, "--from", str(devices), "--out", str(tmp_path / "a.csv"))
    assert twice.code == 2 and "already on line 2" in twice.err
    assert kvca("ca", "create", "web", "--subject", "CN=Web CA", "--policy", "{}").code == 0
    devices.write_text("device_id\nsensor-1\n")
    off = kvca("enroll-codes", "web", "--from", str(devices), "--out", str(tmp_path / "b.csv"))
    assert off.code == 1 and "external_csrs is false" in off.err
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "b.csv").exists()


def test_the_code_marker_names_its_device_ca_and_expiry(kvca, fleet_cli, tmp_path):
    import asyncio

    from kvca_core.context import Context

    devices = tmp_path / "devices.csv"
    devices.write_text("device_id,sans\nsensor-3,DNS:Sensor-3.Fleet.Example\n")
    out = tmp_path / "codes.csv"
    assert kvca("enroll-codes", FLEET, "--from", str(devices), "--out", str(out)).code == 0
    row = next(csv.DictReader(out.open()))

    async def marker():
        async with Context.open() as ctx:
            return await ctx.ledger.get(CODE_KIND, code_key(FLEET, "sensor-3", row["code"].lower()))
    data = asyncio.run(marker())
    assert (data["ca"], data["device"], data["sans"]) == (FLEET, "sensor-3", "DNS:sensor-3.fleet.example")
    assert data["expires"].startswith(row["expires"][:10]) and data["made_by"].startswith("cli:")
