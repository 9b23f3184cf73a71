"""Soft delete, recovery and purge; plain secrets; identity; paging."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.keyvault.secrets import SecretClient

SELF_EC = CertificatePolicy(issuer_name="Self", subject="CN=obj", key_type="EC")


def make(certs, name: str) -> None:
    certs.begin_create_certificate(name, SELF_EC).result()


def test_delete_recover_and_purge_certificate(kv_clients):
    certs = kv_clients.certificates
    make(certs, "gone")
    poller = certs.begin_delete_certificate("gone")
    poller.wait()  # soft delete completes asynchronously; wait() polls until it has
    deleted = poller.result()
    assert deleted.recovery_id.endswith("/deletedcertificates/gone")
    assert deleted.deleted_on is not None and deleted.scheduled_purge_date > deleted.deleted_on
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate("gone")
    with pytest.raises(ResourceNotFoundError):
        kv_clients.secrets.get_secret("gone")
    assert [d.name for d in certs.list_deleted_certificates()] == ["gone"]
    # The name is reserved while deleted.
    with pytest.raises(ResourceExistsError):
        certs.begin_create_certificate("gone", SELF_EC)
    recovered = certs.begin_recover_deleted_certificate("gone").result()
    assert recovered.name == "gone" and certs.get_certificate("gone").cer
    certs.begin_delete_certificate("gone").wait()
    certs.purge_deleted_certificate("gone")
    with pytest.raises(ResourceNotFoundError):
        certs.get_deleted_certificate("gone")
    make(certs, "gone")


def test_deleted_items_are_purged_when_the_retention_passes(kv_clients, emulator):
    make(kv_clients.certificates, "expiring-delete")
    kv_clients.certificates.begin_delete_certificate("expiring-delete").result()
    emulator.clock.advance(days=8)
    with pytest.raises(ResourceNotFoundError):
        kv_clients.certificates.get_deleted_certificate("expiring-delete")


def test_plain_secrets_set_get_list_update_delete(kv_clients):
    secrets = kv_clients.secrets
    first = secrets.set_secret("plain", "one", content_type="text/plain", tags={"a": "b"})
    second = secrets.set_secret("plain", "two")
    assert secrets.get_secret("plain").value == "two"
    assert secrets.get_secret("plain", first.properties.version).value == "one"
    assert {p.version for p in secrets.list_properties_of_secret_versions("plain")} == {
        first.properties.version, second.properties.version}
    secrets.update_secret_properties("plain", first.properties.version, enabled=False)
    with pytest.raises(HttpResponseError) as info:
        secrets.get_secret("plain", first.properties.version)
    assert info.value.status_code == 403
    make(kv_clients.certificates, "with-cert")
    listed = {p.name: p for p in secrets.list_properties_of_secrets()}
    assert set(listed) == {"plain", "with-cert"}
    assert listed["with-cert"].managed is True
    # A certificate's secret cannot be set or deleted through the secrets API.
    with pytest.raises(ResourceExistsError):
        secrets.set_secret("with-cert", "x")
    secrets.begin_delete_secret("plain").result()
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret("plain")
    secrets.begin_recover_deleted_secret("plain").result()
    assert secrets.get_secret("plain").value == "two"
    secrets.begin_delete_secret("plain").result()
    secrets.purge_deleted_secret("plain")
    assert [d.name for d in secrets.list_deleted_secrets()] == []


def test_default_azure_credential_uses_the_emulators_identity_endpoint(emulator, emulator_environ):
    cred = DefaultAzureCredential(exclude_cli_credential=True, exclude_powershell_credential=True,
                                  exclude_developer_cli_credential=True)
    with CertificateClient(emulator.url, cred, **emulator.client_kwargs()) as certs, \
            SecretClient(emulator.url, cred, **emulator.client_kwargs()) as secrets:
        make(certs, "via-identity")
        assert secrets.get_secret("via-identity").value
    assert emulator.identity_requests >= 1


def test_identity_endpoint_refuses_a_wrong_header(emulator):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(emulator.identity_endpoint + "?api-version=2019-08-01&resource=x",
                                 headers={"X-IDENTITY-HEADER": "wrong"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    info.value.close()
    assert info.value.code == 401


@pytest.mark.parametrize("drops", [True, False])
def test_paging_over_sixty_certificates_with_include_pending(kv_clients, emulator, drops):
    emulator.set_fidelity(paging_drops_params=drops)
    certs = kv_clients.certificates
    for i in range(60):
        make(certs, f"page-{i:02d}")
    for i in range(5):
        certs.begin_create_certificate(f"pend-{i}", CertificatePolicy(
            issuer_name="Unknown", subject="CN=p", key_type="EC")).result()
    completed = [c.name for c in certs.list_properties_of_certificates(max_page_size=7)]
    assert completed == [f"page-{i:02d}" for i in range(60)]
    every = [c.name for c in certs.list_properties_of_certificates(include_pending=True)]
    pages = list(certs.list_properties_of_certificates(include_pending=True, max_page_size=25).by_page())
    if drops:
        # The real nextLink drops includePending: the pending-only "pend-*" sort after
        # "page-*", onto page 3, and are lost there (azure-sdk-for-python#38589).
        assert every == [f"page-{i:02d}" for i in range(60)]
        assert [len(list(page)) for page in pages] == [25, 25, 10]
    else:
        assert len(every) == 65 and len(set(every)) == 65
        assert [len(list(page)) for page in pages] == [25, 25, 15]
