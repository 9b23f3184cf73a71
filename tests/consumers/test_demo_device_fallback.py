"""`make demo` on a machine without mosquitto: the enrolled device still connects with its own key, to
Python's ssl module requiring a client certificate of the CA; a device whose certificate another CA
signed is refused there, so "accepted" means the handshake checked it."""

from __future__ import annotations

from cryptography.x509.oid import ExtendedKeyUsageOID

from consumers import foreign_root, leaf_of
from demo import consumers as demo_consumers
from demo import run


def test_without_mosquitto_the_device_connects_over_mutual_tls_and_a_stranger_is_refused(tmp_path, monkeypatch):
    real_find = demo_consumers.find
    monkeypatch.setattr(demo_consumers, "find", lambda b: None if b.startswith("mosquitto") else real_find(b))
    ca, ca_key = foreign_root("Demo CA")
    other, other_key = foreign_root("Another CA")
    files = demo_consumers.KeyFiles()
    try:
        served, served_key = leaf_of(ca, ca_key, "shop.demo.internal", ExtendedKeyUsageOID.SERVER_AUTH,
                                   "shop.demo.internal")
        server_cert, server_key = files.write(tmp_path, "server", served_key, [served])
        chain = demo_consumers.pem_file(tmp_path / "ca.pem", [ca])
        outcomes = {}
        for who, (issuer, key) in {"device": (ca, ca_key), "stranger": (other, other_key)}.items():
            cert, device_key = leaf_of(issuer, key, run.DEVICE, ExtendedKeyUsageOID.CLIENT_AUTH)
            device_cert, device_key_file = files.write(tmp_path, who, device_key, [cert])
            servers: list = []
            try:
                outcomes[who] = run._device_connects(demo_consumers, servers, tmp_path, server_cert, server_key,
                                                     chain, device_cert, device_key_file)
            finally:
                for server in servers:
                    server.stop()
        assert outcomes == {"device": True, "stranger": False}
    finally:
        files.remove()
