"""What keeps the emulator fast on a large vault, seen from outside: expiry events come from
a schedule (a reloaded vault, a deleted certificate, a held switch), lists come from a sorted
index (in name order across inserts, deletes and pages), and the Python import that fills a
vault without HTTP."""

from __future__ import annotations

import random

import pytest
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from kvemulator import Emulator

from .helpers import TestCA

CA = TestCA()


def kinds(events) -> list[tuple[str, str]]:
    return [(e["eventType"].rsplit(".", 1)[1], e["subject"]) for e in events]


def self_signed(certs, name: str, months: int):
    return certs.begin_create_certificate(name, CertificatePolicy(
        issuer_name="Self", subject=f"CN={name}", key_type="EC", validity_in_months=months)).result()


def leaf_pem(name: str, days: int = 365) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = CA.sign(key.public_key(), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), days=days)
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + cert.public_bytes(serialization.Encoding.PEM)).decode()


# ---------------------------------------------------------------- the expiry schedule

def test_a_reloaded_vault_fires_the_events_still_due_and_not_those_already_fired(tmp_path):
    state = tmp_path / "vault.json"
    with Emulator(tls_dir=tmp_path / "tls", state_path=state) as first:
        with CertificateClient(first.url, first.credential(), **first.client_kwargs()) as certs:
            self_signed(certs, "lasting", months=2)
        first.take_events()
        first.clock.advance(days=35)  # past NearExpiry (30 days before the end), not the end
        assert kinds(first.take_events()) == [("CertificateNearExpiry", "lasting")]
    with Emulator(tls_dir=tmp_path / "tls", state_path=state) as second:
        second.clock.advance(days=1)
        assert second.take_events() == []  # NearExpiry fired before the restart: not again
        second.clock.advance(days=30)
        assert kinds(second.take_events()) == [("CertificateExpired", "lasting")]


def test_a_deleted_certificate_fires_nothing_until_it_is_recovered(emulator, kv_clients):
    emulator.set_fidelity(soft_delete_settle_seconds=0)
    certs = kv_clients.certificates
    emulator.import_certificate("dormant", leaf_pem("dormant", days=33))  # NearExpiry in 3 days
    certs.begin_delete_certificate("dormant").wait()
    emulator.take_events()
    emulator.clock.advance(days=5)  # within the 7 recoverable days
    assert emulator.take_events() == []
    certs.begin_recover_deleted_certificate("dormant").wait()
    assert kinds(emulator.take_events()) == [("CertificateNearExpiry", "dormant")]


def test_events_held_while_the_switch_is_off_fire_once_it_is_turned_on(emulator, kv_clients):
    emulator.set_fidelity(unknown_issuer_events=False)
    certs = kv_clients.certificates
    op = certs.begin_create_certificate("held", CertificatePolicy(
        issuer_name="Unknown", subject="CN=held", key_type="EC")).result()
    leaf = CA.sign_csr(op.csr, days=90)
    certs.merge_certificate("held", [leaf.public_bytes(serialization.Encoding.DER)])
    emulator.clock.advance(days=100)
    assert emulator.take_events() == []
    emulator.set_fidelity(unknown_issuer_events=True)
    emulator.clock.advance(seconds=1)
    assert kinds(emulator.take_events()) == [("CertificateNearExpiry", "held"), ("CertificateExpired", "held")]
    emulator.clock.advance(days=1)
    assert emulator.take_events() == []


def test_deleted_secrets_and_certificates_are_purged_when_due_and_not_after_a_recovery(emulator, kv_clients):
    emulator.set_fidelity(soft_delete_settle_seconds=0)
    certs, secrets = kv_clients.certificates, kv_clients.secrets
    for name in ("purged", "kept"):
        self_signed(certs, name, months=12)
        certs.begin_delete_certificate(name).wait()
        secrets.set_secret(f"{name}-secret", "v")
        secrets.begin_delete_secret(f"{name}-secret").wait()
    certs.begin_recover_deleted_certificate("kept").wait()
    secrets.begin_recover_deleted_secret("kept-secret").wait()
    emulator.clock.advance(days=8)  # past the 7 recoverable days
    assert list(certs.list_deleted_certificates()) == [] and list(secrets.list_deleted_secrets()) == []
    assert certs.get_certificate("kept").name == "kept" and secrets.get_secret("kept-secret").value == "v"


# ---------------------------------------------------------------- lists from the sorted index

def test_lists_walk_the_names_in_order_across_inserts_deletes_and_pages(emulator, kv_clients):
    emulator.set_fidelity(paging_drops_params=False, soft_delete_settle_seconds=0)
    certs, secrets, keys = kv_clients.all()
    names = [f"n-{i:03d}" for i in range(60)]
    random.Random(7).shuffle(names)
    for name in names[:40]:
        emulator.import_certificate(name, leaf_pem(name))
    for name in names[40:]:
        secrets.set_secret(name, "plain")
    gone = sorted(names[:40])[::5]
    for name in gone:
        certs.begin_delete_certificate(name).wait()
    certs.purge_deleted_certificate(gone[0])
    live = sorted(set(names[:40]) - set(gone))

    def listed(pages) -> list[str]:
        return [item.name for page in pages for item in page]

    assert listed(certs.list_properties_of_certificates(max_page_size=7).by_page()) == live
    assert listed(keys.list_properties_of_keys(max_page_size=7).by_page()) == live
    assert listed(secrets.list_properties_of_secrets(max_page_size=7).by_page()) == sorted(live + names[40:])
    assert listed(certs.list_deleted_certificates(max_page_size=3).by_page()) == gone[1:]


def test_a_page_ends_where_the_names_end_even_when_the_rest_is_left_out(emulator, kv_clients):
    """The last page of a list whose remaining names are all filtered out (pending-only ones
    without includePending) carries no nextLink, as a filtered list's last page does."""
    certs = kv_clients.certificates
    for i in range(25):
        emulator.import_certificate(f"a-{i:02d}", leaf_pem(f"a-{i:02d}"))
    certs.begin_create_certificate("z-pending", CertificatePolicy(issuer_name="Unknown", subject="CN=z",
                                                                  key_type="EC"))
    pages = list(certs.list_properties_of_certificates().by_page())
    assert [len(list(p)) for p in pages] == [25]


# ---------------------------------------------------------------- the Python import

def test_python_import_takes_pem_text_and_pfx_bytes_like_the_import_route(emulator, kv_clients):
    certs = kv_clients.certificates
    from_pem = emulator.import_certificate("from-pem", leaf_pem("from-pem"), tags={"owner": "ops"})
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = CA.sign(key.public_key(), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "from-pfx")]))
    pfx = pkcs12.serialize_key_and_certificates(b"p", key, leaf, None,
                                                serialization.BestAvailableEncryption(b"pw"))
    emulator.import_certificate("from-pfx", pfx, password="pw")
    got = certs.get_certificate("from-pem")
    assert got.properties.version == from_pem["id"].rsplit("/", 1)[1] and got.properties.tags == {"owner": "ops"}
    assert got.policy.content_type == "application/x-pem-file"
    assert x509.load_der_x509_certificate(certs.get_certificate("from-pfx").cer) == leaf
    assert kinds(emulator.take_events()) == [("CertificateNewVersionCreated", "from-pem"),
                                             ("CertificateNewVersionCreated", "from-pfx")]


@pytest.mark.parametrize("value,why", [("not a certificate", "400 BadParameter"),
                                       (b"\x30\x03\x02\x01\x00", "400 BadParameter")])
def test_python_import_refuses_what_the_route_refuses_with_the_services_status(emulator, value, why):
    with pytest.raises(ValueError, match=why):
        emulator.import_certificate("refused", value)
    with pytest.raises(ValueError, match="400 BadParameter: The request URI contains an invalid name"):
        emulator.import_certificate("bad name!", leaf_pem("x"))
