"""A device that enrolled over EST connects to mosquitto (`require_certificate true`, its CA from
cacerts) with its own key, and is refused once its certificate is revoked in the ledger and the CRL
is in mosquitto's `crlfile`."""

from __future__ import annotations

import asyncio

from cryptography import x509

from consumers import require
from demo.consumers import KeyFiles, Mosquitto
from esthelpers import FLEET, Device, crl_from_ledger, pem, revoke_in_ledger
from estclient import curl, enroll, unpack
from kvca_core import operations, revocation
from kvca_core.authority import parse_secret
from kvca_core.enrollment import DeviceEntry, make_codes

BROKER = "mqtt.fleet.example"
TOPIC = "devices/device-001/telemetry"


async def _broker_credential(ctx) -> tuple[object, list[x509.Certificate]]:
    """The broker's server certificate, made in the vault the usual way (`kvca request --exportable`)."""
    request = operations.IssueRequest(name="mqtt-broker", ca=FLEET, dns_names=(BROKER,), profile="server",
                                      exportable=True)
    outcome = await operations.issue(ctx, request)
    assert outcome.action == "issued", outcome
    content_type, value = await ctx.vault.get_secret_value("mqtt-broker")
    key, certs = parse_secret("mqtt-broker", content_type, value)
    return key, certs


async def _start(tmp_path, name: str, files, crl: bytes) -> Mosquitto:
    folder = tmp_path / name
    folder.mkdir()
    broker = Mosquitto(folder, files["ca"], files["cert"], files["key"])
    (folder / "crl.pem").write_bytes(crl)
    broker.conf.write_text(broker.conf.read_text() + f"crlfile {folder / 'crl.pem'}\n")
    return await asyncio.to_thread(broker.start)


async def test_mosquitto_takes_the_device_with_its_own_key_until_its_certificate_is_revoked(est_site, tmp_path):
    for program in ("mosquitto", "mosquitto_pub"):
        require(program)
    ctx = est_site.ctx
    device = Device.make(tmp_path / "devices", "device-001")
    (issued,) = await make_codes(ctx, FLEET, [DeviceEntry("device-001")], days=7)
    # The device: its CA certificates from cacerts, its certificate from simpleenroll.
    cacerts = await curl(device, est_site.frontend, f"/.well-known/est/{FLEET}/cacerts")
    chain = unpack(device, cacerts, "cacerts.pem")
    answer = await enroll(device, est_site.frontend, FLEET, code=issued.code)
    assert answer.status == 200, answer.text
    (leaf,) = unpack(device, answer)
    (device.folder / "device.pem").write_bytes(pem(leaf, est_site.intermediate))

    key_files = KeyFiles()
    servers: list[Mosquitto] = []
    try:
        broker_key, broker_certs = await _broker_credential(ctx)
        cert_file, key_file = key_files.write(tmp_path, "broker", broker_key, broker_certs)
        files = {"ca": tmp_path / "fleet-ca.pem", "cert": cert_file, "key": key_file}
        files["ca"].write_bytes(pem(*chain))  # what the broker trusts: the fleet's intermediate and root
        # One CRL per level of the chain (mosquitto checks each): the root's over the intermediate.
        root_crl = revocation.crl_pem(await revocation.sign_root_crl(ctx, FLEET)).encode()

        servers.append(await _start(tmp_path, "before", files, await crl_from_ledger(ctx, FLEET) + root_crl))
        published = await asyncio.to_thread(servers[-1].publish, files["ca"], device.folder / "device.pem",
                                             device.key, TOPIC, "21.5")
        assert published.returncode == 0, published.stderr + servers[-1].log_text()
        assert "u'device-001'" in servers[-1].log_text()  # named by the device ID in its certificate
        servers[-1].stop()

        record = await ctx.ledger.certificate(FLEET, leaf.serial_number)
        await revoke_in_ledger(ctx, record, "keyCompromise")
        crl = await crl_from_ledger(ctx, FLEET)
        assert [e.serial_number for e in x509.load_pem_x509_crl(crl)] == [leaf.serial_number]
        servers.append(await _start(tmp_path, "after", files, crl + root_crl))
        refused = await asyncio.to_thread(servers[-1].publish, files["ca"], device.folder / "device.pem",
                                          device.key, TOPIC, "should not arrive")
        assert refused.returncode != 0
        assert "certificate verify failed" in servers[-1].log_text(), servers[-1].log_text()
        assert "Received PUBLISH" not in servers[-1].log_text()
    finally:
        for server in servers:
            server.stop()
        key_files.remove()
