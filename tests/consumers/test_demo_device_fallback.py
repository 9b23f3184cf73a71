"""`make demo` on a machine without mosquitto: the enrolled device still connects with its own key, to
Python's ssl module requiring a client certificate of the CA; a device whose certificate another CA
signed is refused there, so "accepted" means the handshake checked it."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consumers import foreign_root
from demo import consumers as demo_consumers
from demo import run


def _leaf(issuer, issuer_key, cn: str, eku, dns: str | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(issuer.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=7))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([eku]), critical=False))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def test_without_mosquitto_the_device_connects_over_mutual_tls_and_a_stranger_is_refused(tmp_path, monkeypatch):
    real_find = demo_consumers.find
    monkeypatch.setattr(demo_consumers, "find", lambda b: None if b.startswith("mosquitto") else real_find(b))
    ca, ca_key = foreign_root("Demo CA")
    other, other_key = foreign_root("Another CA")
    files = demo_consumers.KeyFiles()
    try:
        served, served_key = _leaf(ca, ca_key, "shop.demo.internal", ExtendedKeyUsageOID.SERVER_AUTH,
                                   "shop.demo.internal")
        server_cert, server_key = files.write(tmp_path, "server", served_key, [served])
        chain = demo_consumers.pem_file(tmp_path / "ca.pem", [ca])
        outcomes = {}
        for who, (issuer, key) in {"device": (ca, ca_key), "stranger": (other, other_key)}.items():
            cert, device_key = _leaf(issuer, key, run.DEVICE, ExtendedKeyUsageOID.CLIENT_AUTH)
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
