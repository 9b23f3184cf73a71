"""mosquitto with `require_certificate true` and the CA `kvca export-chain` gives: a device
certificate whose CN is a device ID (no DNS name, as Event Grid's MQTT broker names clients by
their subject) connects and publishes; a server-profile certificate of the same CA and a foreign
CA's client certificate are refused."""

from __future__ import annotations

import subprocess

from cryptography.x509.oid import ExtendedKeyUsageOID

from consumers import Credential, foreign_root, issue, leaf_of, require, secret_credential
from demo.consumers import Mosquitto

DEVICE, BROKER = "device-001", "mqtt.fleet.internal"


def _foreign_device() -> Credential:
    """A client certificate with the same device ID, issued by a CA the broker does not trust."""
    root, root_key = foreign_root()
    leaf, key = leaf_of(root, root_key, DEVICE, ExtendedKeyUsageOID.CLIENT_AUTH)
    return Credential(key, leaf, [root])


def test_mosquitto_accepts_a_device_id_certificate_and_refuses_server_and_foreign_certificates(
        kvca, kv_clients, tmp_path, key_files, servers, fleet):
    ca_file = tmp_path / "fleet-ca.pem"
    assert kvca("export-chain", fleet, "--which", "both", "--out", str(ca_file)).code == 0
    issue(kvca, "mqtt-broker", "--dns", BROKER, "--ca", fleet, "--profile", "server")
    issue(kvca, DEVICE, "--subject", f"CN={DEVICE}", "--ca", fleet, "--profile", "client")

    for name in ("mosquitto", "mosquitto_pub", "mosquitto_sub"):
        require(name)
    broker_cred, _, _ = secret_credential(kv_clients, "mqtt-broker")
    device_cred, _, _ = secret_credential(kv_clients, DEVICE)
    assert device_cred.leaf.subject.rfc4514_string() == f"CN={DEVICE}"
    broker_cert, broker_key = broker_cred.write(key_files, tmp_path, "broker")
    device_cert, device_key = device_cred.write(key_files, tmp_path, "device")
    (tmp_path / "mosquitto").mkdir()
    broker = Mosquitto(tmp_path / "mosquitto", ca_file, broker_cert, broker_key)
    servers.append(broker.start())

    # The device subscribes and publishes with its own certificate; the message goes round.
    topic = f"devices/{DEVICE}/telemetry"
    subscriber = broker.subscribe(ca_file, device_cert, device_key, topic)
    assert broker.wait_for_log(f"u'{DEVICE}'"), broker.log_text()  # subscribed before anything is sent
    published = broker.publish(ca_file, device_cert, device_key, topic, "21.5")
    assert published.returncode == 0, published.stderr + broker.log_text()
    received, errors = subscriber.communicate(timeout=60)
    assert subscriber.returncode == 0, errors + broker.log_text()
    assert received.strip() == f"{topic} 21.5"
    # The broker knew the client by the device ID in its certificate's CN.
    assert f"u'{DEVICE}'" in broker.log_text()

    # A server-profile certificate of the same CA (no clientAuth EKU) is refused at the handshake,
    # and so is a client certificate from a foreign CA, though its CN is the same device ID.
    before = broker.log_text().count("certificate verify failed")
    as_server = broker.publish(ca_file, broker_cert, broker_key, topic, "should not arrive")
    assert as_server.returncode != 0
    foreign_cert, foreign_key = _foreign_device().write(key_files, tmp_path, "foreign")
    foreign = broker.publish(ca_file, foreign_cert, foreign_key, topic, "should not arrive")
    assert foreign.returncode != 0
    assert broker.log_text().count("certificate verify failed") == before + 2, broker.log_text()
    assert broker.log_text().count("Received PUBLISH") == 1  # only the device's message got through
    # Why, as OpenSSL (mosquitto's TLS library) tells it for the same files and the same CA file.
    assert "unsuitable certificate purpose" in _verify_as_client(ca_file, broker_cert)
    assert "self-signed certificate in certificate chain" in _verify_as_client(ca_file, foreign_cert)


def _verify_as_client(ca_file, cert_file) -> str:
    """`openssl verify -purpose sslclient`: the check a TLS server makes of a client's chain."""
    proc = subprocess.run([require("openssl"), "verify", "-purpose", "sslclient", "-CAfile", str(ca_file),
                           "-untrusted", str(cert_file), str(cert_file)], capture_output=True, text=True)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr
