"""docs/devices.md, run: every shell block marked `<!-- run: operator -->` or `<!-- run: device -->`,
in order, with bash, as the operator (the `kvca` command against the emulator) and as the device (in
a folder of its own), against the Functions app behind the test front end and a mosquitto broker.
What the story says happens is checked between the blocks."""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from consumers import require
from demo.consumers import Mosquitto
from docblocks import marked_blocks, run_bash_async
from esthelpers import FLEET
from frontend import FrontEnd, server_credential

DOC = Path(__file__).resolve().parents[2] / "docs" / "devices.md"


def runnable_blocks() -> list[tuple[str, str]]:
    return [(block.label, block.script) for block in marked_blocks(DOC, "run: (operator|device)")]


async def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return await run_bash_async(script, cwd, env)


async def test_the_device_story_runs_as_written(app, tmp_path, monkeypatch):
    from kvca_core import context

    for program in ("mosquitto", "mosquitto_pub", "curl", "openssl"):
        require(program)
    blocks = runnable_blocks()
    assert [role for role, _ in blocks] == ["operator", "operator", "device", "device", "device", "operator",
                                            "device", "operator"], \
        "docs/devices.md's runnable blocks changed: update this test"
    monkeypatch.setenv("KVCA_TRUST_CLIENT_CERT_HEADER", "true")
    await context.reset_shared()
    ctx = await context.shared()
    frontend = FrontEnd(asyncio.get_running_loop(), tmp_path / "frontend", []).start()
    operator, device = tmp_path / "operator", tmp_path / "device"
    operator.mkdir()
    device.mkdir(mode=0o700)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "EST": f"{frontend.url}/.well-known/est/{FLEET}", "CURL_CA_BUNDLE": str(frontend.cafile)}
    steps = iter(blocks)

    async def run(expected_role: str) -> subprocess.CompletedProcess:
        role, script = next(steps)
        assert role == expected_role
        done = await _bash(script, operator if role == "operator" else device, env)
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
        return done

    broker = None
    try:
        await run("operator")  # kvca ca create fleet ... --policy {external_csrs ...}
        await run("operator")  # kvca enroll-codes
        (row,) = list(csv.DictReader((operator / "codes.csv").open()))
        env["CODE"] = row["code"]  # handed to the device
        root = x509.load_der_x509_certificate((await ctx.vault.get_certificate(f"{FLEET}-root")).cer)
        intermediate = x509.load_der_x509_certificate((await ctx.vault.get_certificate(FLEET)).cer)
        frontend.trust([root, intermediate])  # App Service takes any client certificate; Python's TLS needs its CA

        await run("device")  # key, CSR, cacerts, simpleenroll, openssl verify
        first = x509.load_pem_x509_certificate((device / "device.pem").read_bytes())
        assert first.subject.rfc4514_string() == "CN=device-001"
        assert (await ctx.ledger.certificate(FLEET, first.serial_number)).requested_by == "est:device-001"

        # The broker: the fleet CA as `kvca export-chain fleet --which both` gives it; its own
        # certificate from a CA of its own (as an Event Grid namespace's is a public CA's).
        ca_file = operator / "fleet-ca.pem"
        exported = await _bash(f"kvca export-chain {FLEET} --which both --out {ca_file}", operator, env)
        assert exported.returncode == 0, exported.stderr
        broker_ca, broker_cert, broker_key = server_credential(tmp_path / "broker-tls", "localhost")
        (tmp_path / "broker").mkdir()
        broker = await asyncio.to_thread(Mosquitto(tmp_path / "broker", ca_file, broker_cert, broker_key).start)
        env.update(MQTT_HOST="localhost", MQTT_PORT=str(broker.port), BROKER_CA=str(broker_ca))
        await run("device")  # mosquitto_pub with the device's own key
        assert "u'device-001'" in broker.log_text() and "Received PUBLISH" in broker.log_text()

        await run("device")  # simplereenroll with a new key
        second = x509.load_pem_x509_certificate((device / "device.pem").read_bytes())
        assert second.subject == first.subject and second.serial_number != first.serial_number

        env["SERIAL"] = format(second.serial_number, "x")
        listed = await run("operator")  # kvca ledger list; kvca revoke --ca --serial; kvca crl
        assert env["SERIAL"] in listed.stdout
        crl = x509.load_pem_x509_crl((operator / "fleet.crl").read_bytes())
        assert [entry.serial_number for entry in crl] == [second.serial_number]
        # The broker again, now with the CRL: the device is refused at the handshake.
        broker.stop()
        (tmp_path / "broker-crl").mkdir()
        broker = Mosquitto(tmp_path / "broker-crl", ca_file, broker_cert, broker_key)
        broker.conf.write_text(broker.conf.read_text() + f"crlfile {operator / 'fleet.crl'}\n")
        broker = await asyncio.to_thread(broker.start)
        env["MQTT_PORT"] = str(broker.port)
        publish = await _bash(blocks[3][1], device, env)  # section 4's mosquitto_pub, as the device ran it
        assert publish.returncode != 0 and "certificate verify failed" in broker.log_text(), broker.log_text()
        refused = await run("device")
        assert refused.stdout.startswith("403\n") and "was revoked (keyCompromise" in refused.stdout

        await run("operator")  # the intermediate for an Event Grid namespace
        assert x509.load_pem_x509_certificate((operator / "fleet-intermediate.pem").read_bytes()) == intermediate
        # The device's key stayed where it was made.
        assert [p.name for p in operator.iterdir() if p.suffix == ".key"] == []
    finally:
        if broker is not None:
            broker.stop()
        frontend.stop()
