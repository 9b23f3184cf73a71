"""`kvca renew` means a new signed version now, or an error saying why (never a quiet exit 0);
`kvca cancel` withdraws a pending request of a certificate kvca manages, and nothing else."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import ResourceNotFoundError

from clihelpers import import_exportable_leaf, vault_snapshot


def _versions(kv_clients, name: str) -> list[str]:
    return [v.version for v in kv_clients.certificates.list_properties_of_certificate_versions(name)]


def test_renew_right_after_the_first_issuance_renews(kvca, kv_clients, corp):
    assert kvca("request", "api", "--dns", "api.corp.internal", "--ca", corp, "--sign").code == 0
    result = kvca("renew", "api")
    assert result.code == 0, result.err
    assert len(_versions(kv_clients, "api")) == 2


def test_renew_right_after_a_renewal_fails_saying_so_and_force_renews_anyway(kvca, kv_clients, corp, emulator):
    assert kvca("request", "api", "--dns", "api.corp.internal", "--ca", corp, "--sign").code == 0
    emulator.clock.advance(seconds=600)
    assert kvca("renew", "api").code == 0
    before = vault_snapshot(kv_clients)
    again = kvca("renew", "api")
    assert again.code == 1
    assert len(again.err_lines) == 1, again.err
    assert again.err_lines[0].startswith("kvca: error: certificate 'api': version ")
    assert "s ago; not renewing it again so soon (hint: renew with force" in again.err_lines[0]
    assert "kvca renew --force" in again.err_lines[0]
    assert vault_snapshot(kv_clients) == before  # nothing was created
    forced = kvca("--json", "renew", "api", "--force")
    assert forced.code == 0, forced.err
    body = json.loads(forced.out)
    assert body["action"] == "renewed" and body["version"] != before["api"][0][0]
    assert len(_versions(kv_clients, "api")) == 3


def test_renew_after_the_guard_makes_a_new_version_without_force(kvca, kv_clients, corp, emulator):
    assert kvca("request", "api", "--dns", "api.corp.internal", "--ca", corp, "--sign").code == 0
    emulator.clock.advance(seconds=600)  # past the 5-minute guard against double clicks
    result = kvca("renew", "api")
    assert result.code == 0, result.err
    assert result.out.startswith("api: renewed, version ")
    assert len(_versions(kv_clients, "api")) == 2


def test_renew_force_and_if_due_together_are_a_usage_error(kvca, corp):
    result = kvca("renew", "api", "--force", "--if-due")
    assert result.code == 2
    assert result.err_lines == ["kvca: error: request: if-due and force contradict each other: force renews now, "
                                "whether due or not"]


def test_cancel_withdraws_a_pending_request_and_frees_the_name(kvca, kv_clients, corp):
    assert kvca("request", "web", "--dns", "web.corp.internal", "--ca", corp).code == 0
    assert kv_clients.certificates.get_certificate_operation("web").status == "inProgress"
    cancelled = kvca("cancel", "web")
    assert cancelled.code == 0, cancelled.err
    assert cancelled.out.startswith("web: cancelled")
    with pytest.raises(ResourceNotFoundError):
        kv_clients.certificates.get_certificate_operation("web")
    # The name can be requested again, and signed; with nothing pending, cancel says so.
    assert kvca("request", "web", "--dns", "web.corp.internal", "--ca", corp, "--sign").code == 0
    assert kv_clients.certificates.get_certificate("web").cer
    before = vault_snapshot(kv_clients)
    idle = kvca("--json", "cancel", "web")
    assert idle.code == 0, idle.err
    assert json.loads(idle.out)["action"] == "skipped" and "nothing to cancel" in json.loads(idle.out)["reason"]
    assert vault_snapshot(kv_clients) == before


def test_cancel_refuses_what_kvca_does_not_manage_and_unknown_names(kvca, kv_clients, corp):
    import_exportable_leaf(kv_clients, "foreign")
    before = vault_snapshot(kv_clients)
    for name, text in (("foreign", "certificate 'foreign': has no kvca-ca tag, so kvca does not manage it"),
                       ("corp", "certificate 'corp': is a CA certificate"),
                       ("nope", "certificate 'nope': no such certificate in the vault")):
        result = kvca("cancel", name)
        assert result.code == 1, (name, result.out)
        assert len(result.err_lines) == 1 and result.err_lines[0].startswith(f"kvca: error: {text}"), result.err
    assert vault_snapshot(kv_clients) == before
