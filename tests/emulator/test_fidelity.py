"""The fidelity switches and the call log, and the behaviours of the real Key Vault that the
Azure SDK test suites recorded (named per test), through the real SDK."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import urllib.parse

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.certificates import CertificatePolicy
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from kvemulator import Emulator, Fidelity
from kvemulator import _crypto as kc

from .helpers import TestCA
from .test_protocol import call


def unknown_policy(subject: str = "CN=pending", **kwargs) -> CertificatePolicy:
    return CertificatePolicy(issuer_name="Unknown", subject=subject, **kwargs)


def test_fidelity_defaults_are_the_real_service_and_clear_controls_restores_them(emulator):
    assert emulator.fidelity == Fidelity()
    assert emulator.fidelity.unknown_issuer_events  # unconfirmed: the emulator's old behaviour
    assert emulator.fidelity.paging_drops_params
    assert not emulator.fidelity.current_includes_pending
    emulator.set_fidelity(paging_drops_params=False, cancel_settle_seconds=4)
    assert emulator.fidelity.cancel_settle_seconds == 4.0 and not emulator.fidelity.paging_drops_params
    emulator.clear_controls()
    assert emulator.fidelity == Fidelity()


@pytest.mark.parametrize("changes", [{"no_such_switch": True}, {"paging_drops_params": 1},
                                     {"cancel_settle_seconds": -1}, {"cancel_settle_seconds": "2"},
                                     {"soft_delete_settle_seconds": float("nan")}])
def test_a_bad_fidelity_change_is_refused_and_changes_nothing(emulator, changes):
    with pytest.raises(ValueError):
        emulator.set_fidelity(current_includes_pending=True, **changes)
    assert emulator.fidelity == Fidelity()
    status, body, _ = call(emulator, "POST", "/_emulator/fidelity", json.dumps(changes).encode())
    assert status == 400 and body["error"]["code"] == "BadParameter"
    assert emulator.fidelity == Fidelity()


def test_fidelity_control_route_reads_and_changes_the_switches(emulator):
    status, body, _ = call(emulator, "POST", "/_emulator/fidelity",
                           json.dumps({"current_includes_pending": True}).encode())
    assert status == 200 and body["current_includes_pending"] is True
    assert emulator.fidelity.current_includes_pending
    status, body, _ = call(emulator, "GET", "/_emulator/fidelity")
    assert status == 200 and body == {**Fidelity().describe(), "current_includes_pending": True}


def test_emulator_takes_its_fidelity_at_construction(tmp_path):
    em = Emulator(tls_dir=tmp_path, fidelity=Fidelity(paging_drops_params=False))
    assert em.fidelity == Fidelity(paging_drops_params=False)


def test_requests_logs_each_authenticated_call_by_route_template(emulator, kv_clients):
    kv_clients.certificates.begin_create_certificate("logged", unknown_policy())
    kv_clients.certificates.get_certificate_operation("logged")
    assert emulator.requests == [("POST", "POST /certificates/{name}/create"),
                                 ("GET", "GET /certificates/{name}/pending")]
    emulator.reset()
    assert emulator.requests == []


# ---------------------------------------------------------------- helpers

CA = TestCA()


def pending(certs, name: str, **kwargs):
    op = certs.begin_create_certificate(name, unknown_policy(f"CN={name}", key_type="EC", **kwargs)).result()
    assert op.status == "inProgress"
    return op


def merge(certs, name: str, op, **kwargs):
    leaf = CA.sign_csr(op.csr)
    return certs.merge_certificate(name, [leaf.public_bytes(serialization.Encoding.DER)], **kwargs)


def self_signed(certs, name: str, months: int = 12, **kwargs):
    return certs.begin_create_certificate(name, CertificatePolicy(
        issuer_name="Self", subject=f"CN={name}", key_type="EC", validity_in_months=months,
        **kwargs)).result()


def epoch(when: dt.datetime) -> int:
    return int(when.timestamp())


def query_of(link: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)


def kv_error(info: pytest.ExceptionInfo) -> tuple[int, str, str]:
    err = info.value
    return err.status_code, err.error.code, err.error.message


# ---------------------------------------------------------------- paging

@pytest.mark.parametrize("drops", [True, False])
def test_next_link_keeps_only_api_version_and_skiptoken(emulator, kv_clients, drops):
    emulator.set_fidelity(paging_drops_params=drops)
    for i in range(3):
        pending(kv_clients.certificates, f"link-{i}")
    status, body, _ = call(emulator, "GET", "/certificates?api-version=7.6&maxresults=2&includePending=true")
    assert status == 200 and len(body["value"]) == 2
    kept = set(query_of(body["nextLink"]))
    assert "&$skiptoken=" in body["nextLink"]  # written as the service writes it
    if drops:
        assert kept == {"api-version", "$skiptoken"}
    else:
        assert kept == {"api-version", "$skiptoken", "maxresults", "includePending"}


def test_versions_and_deleted_lists_drop_the_parameters_too_but_secret_lists_keep_theirs(emulator, kv_clients):
    emulator.set_fidelity(soft_delete_settle_seconds=0)  # no 2 s poll per delete
    certs = kv_clients.certificates
    for _ in range(3):
        self_signed(certs, "many-versions")
    for i in range(3):
        self_signed(certs, f"to-delete-{i}")
        certs.begin_delete_certificate(f"to-delete-{i}").wait()
        kv_clients.secrets.set_secret(f"plain-{i}", "v")
    for path in ("/certificates/many-versions/versions", "/deletedcertificates"):
        status, body, _ = call(emulator, "GET", f"{path}?api-version=7.6&maxresults=2")
        assert status == 200 and set(query_of(body["nextLink"])) == {"api-version", "$skiptoken"}, path
    status, body, _ = call(emulator, "GET", "/secrets?api-version=7.6&maxresults=2")
    assert set(query_of(body["nextLink"])) == {"api-version", "$skiptoken", "maxresults"}


@pytest.mark.parametrize("drops", [True, False])
def test_pending_only_certificates_past_the_first_page_are_lost_when_the_link_drops_include_pending(
        emulator, kv_clients, drops):
    emulator.set_fidelity(paging_drops_params=drops)
    certs = kv_clients.certificates
    for i in range(30):
        pending(certs, f"wait-{i:02d}")
    listed = [c.name for c in certs.list_properties_of_certificates(include_pending=True)]
    assert listed == [f"wait-{i:02d}" for i in range(25 if drops else 30)]


async def test_the_aio_client_follows_the_dropped_link_too(emulator, kv_aio_clients):
    certs = kv_aio_clients.certificates
    for i in range(27):
        await certs.create_certificate(f"aio-wait-{i:02d}", unknown_policy("CN=a", key_type="EC"))
    listed = [c.name async for c in certs.list_properties_of_certificates(include_pending=True)]
    assert listed == [f"aio-wait-{i:02d}" for i in range(25)]


def test_pages_hold_25_unless_maxresults_is_sent_and_a_dropped_maxresults_falls_back_to_25(emulator, kv_clients):
    certs = kv_clients.certificates
    for i in range(40):
        self_signed(certs, f"sz-{i:02d}")
    sizes = [len(list(p)) for p in certs.list_properties_of_certificates().by_page()]
    assert sizes == [25, 15]  # the SDK sends no maxresults unless asked: the service's 25
    sizes = [len(list(p)) for p in certs.list_properties_of_certificates(max_page_size=5).by_page()]
    assert sizes == [5, 25, 10]  # page 2 on: the link dropped maxresults
    emulator.set_fidelity(paging_drops_params=False)
    sizes = [len(list(p)) for p in certs.list_properties_of_certificates(max_page_size=5).by_page()]
    assert sizes == [5] * 8


def test_a_next_page_from_a_shorter_list_continues_after_the_last_item_shown(emulator, kv_clients):
    # Page 1 lists pending-only ones too; page 2 (without includePending) must start after
    # page 1's last name, not at an offset into the shorter list (nothing twice, nothing skipped).
    certs = kv_clients.certificates
    for i in range(30):
        if i % 2:
            pending(certs, f"mix-{i:02d}")
        else:
            self_signed(certs, f"mix-{i:02d}")
    listed = [c.name for c in certs.list_properties_of_certificates(include_pending=True)]
    first = [f"mix-{i:02d}" for i in range(25)]
    rest = [f"mix-{i:02d}" for i in range(25, 30) if i % 2 == 0]
    assert listed == first + rest


# ---------------------------------------------------------------- a pending-only certificate

def test_pending_only_certificate_answers_get_with_policy_dates_and_no_certificate(emulator, kv_clients):
    certs = kv_clients.certificates
    pending(certs, "only-pending", validity_in_months=3)
    cert = certs.get_certificate("only-pending")
    props = cert.properties
    assert props.version  # a versioned id
    assert props.enabled is False
    assert cert.cer is None and cert.key_id is None and cert.secret_id is None
    assert props.x509_thumbprint is None
    assert epoch(props.not_before) == epoch(props.created_on) - 600
    nbf = props.not_before
    assert props.expires_on == kc.add_months(nbf, 3)  # the policy's validity_in_months
    status, raw, _ = call(emulator, "GET", f"/certificates/only-pending/{props.version}?api-version=7.6")
    assert status == 200 and not {"kid", "sid", "x5t", "cer"} & set(raw)
    assert raw["attributes"]["exp"] == epoch(kc.add_months(nbf, 3))


def test_pending_only_list_item_is_disabled_with_dates_no_thumbprint_and_an_empty_subject(emulator, kv_clients):
    certs = kv_clients.certificates
    pending(certs, "listed-pending")
    self_signed(certs, "listed-done")
    items = {c.name: c for c in certs.list_properties_of_certificates(include_pending=True)}
    item = items["listed-pending"]
    assert item.enabled is False and item.x509_thumbprint is None
    assert item.not_before is not None and item.expires_on is not None
    assert items["listed-done"].enabled is True and items["listed-done"].x509_thumbprint
    status, raw, _ = call(emulator, "GET", "/certificates?api-version=7.6&includePending=true")
    by_id = {i["id"].rsplit("/", 1)[1]: i for i in raw["value"]}
    assert by_id["listed-pending"]["subject"] == "" and "x5t" not in by_id["listed-pending"]
    assert by_id["listed-done"]["subject"] == "CN=listed-done"
    assert [c.name for c in certs.list_properties_of_certificates()] == ["listed-done"]


def test_versions_list_shows_the_pending_version_disabled_with_dates_and_no_thumbprint(kv_clients):
    certs = kv_clients.certificates
    done = self_signed(certs, "two-versions")
    pending(certs, "two-versions")
    versions = {v.version: v for v in certs.list_properties_of_certificate_versions("two-versions")}
    assert len(versions) == 2
    (new,) = [v for k, v in versions.items() if k != done.properties.version]
    assert new.enabled is False and new.x509_thumbprint is None and new.expires_on is not None
    assert versions[done.properties.version].enabled and versions[done.properties.version].x509_thumbprint


# ---------------------------------------------------------------- withdrawing, cancelling, merging

def test_deleting_the_pending_operation_leaves_the_never_completed_version_behind(kv_clients):
    certs = kv_clients.certificates
    op = pending(certs, "withdrawn")
    deleted_op = certs.delete_certificate_operation("withdrawn")
    assert deleted_op.status == "inProgress" and deleted_op.csr == op.csr
    with pytest.raises(ResourceNotFoundError) as info:
        certs.get_certificate_operation("withdrawn")
    assert kv_error(info)[:2] == (404, "PendingCertificateNotFound")
    left = certs.get_certificate("withdrawn")
    assert left.properties.enabled is False and left.cer is None
    deleted = certs.begin_delete_certificate("withdrawn").result()
    assert deleted.properties.version == left.properties.version
    assert deleted.properties.enabled is False and deleted.cer is None


def test_cancel_answers_in_progress_and_reads_cancelled_only_after_the_settle_delay(emulator, kv_clients):
    emulator.set_fidelity(cancel_settle_seconds=9)
    certs = kv_clients.certificates
    pending(certs, "cancel-slow")
    answer = certs.cancel_certificate_operation("cancel-slow")
    assert answer.cancellation_requested is True and answer.status == "inProgress"
    emulator.clock.advance(seconds=5)
    later = certs.get_certificate_operation("cancel-slow")
    assert later.cancellation_requested is True and later.status == "inProgress"
    emulator.clock.advance(seconds=5)
    assert certs.get_certificate_operation("cancel-slow").status == "cancelled"


def test_cancel_with_no_settle_delay_reads_cancelled_at_once(emulator, kv_clients):
    emulator.set_fidelity(cancel_settle_seconds=0)
    certs = kv_clients.certificates
    pending(certs, "cancel-fast")
    assert certs.cancel_certificate_operation("cancel-fast").status == "cancelled"


@pytest.mark.parametrize("state", ["never-created", "completed", "withdrawn"])
def test_merge_with_nothing_pending_is_a_404_even_with_a_garbage_x5c(emulator, kv_clients, state):
    certs = kv_clients.certificates
    name = f"nothing-{state}"
    if state == "completed":
        merge(certs, name, pending(certs, name))
    elif state == "withdrawn":
        pending(certs, name)
        certs.delete_certificate_operation(name)
    status, body, _ = call(emulator, "POST", f"/certificates/{name}/pending/merge?api-version=7.6",
                           json.dumps({"x5c": ["not base64 at all!"]}).encode())
    assert status == 404
    assert body["error"] == {"code": "PendingCertificateNotFound",
                             "message": f"Pending Certificate not found: {name}"}
    with pytest.raises(ResourceNotFoundError):
        certs.merge_certificate(name, [b"garbage"])


def test_completed_operation_reads_completed_with_target_and_no_status_details(emulator, kv_clients):
    certs = kv_clients.certificates
    merge(certs, "finished", pending(certs, "finished"))
    op = certs.get_certificate_operation("finished")
    assert op.status == "completed" and op.target.endswith("/certificates/finished")
    status, raw, _ = call(emulator, "GET", "/certificates/finished/pending?api-version=7.6")
    assert status == 200 and "status_details" not in raw and raw["target"] == op.target


def test_created_of_a_merged_version_is_the_merge_time_not_the_request_time(emulator, kv_clients):
    certs = kv_clients.certificates
    op = pending(certs, "late-merge")
    requested = epoch(certs.get_certificate("late-merge").properties.created_on)
    emulator.clock.advance(hours=5)
    merged = merge(certs, "late-merge", op)
    assert epoch(merged.properties.created_on) >= requested + 5 * 3600
    assert abs(epoch(merged.properties.created_on) - epoch(emulator.clock.now())) <= 2


def test_created_of_a_self_issued_version_is_when_it_completed(emulator, kv_clients):
    emulator.clock.advance(days=3)
    cert = self_signed(kv_clients.certificates, "self-created")
    assert abs(epoch(cert.properties.created_on) - epoch(emulator.clock.now())) <= 2


# ---------------------------------------------------------------- 409s

def test_create_or_import_while_a_request_is_pending_is_a_409_with_code_forbidden(emulator, kv_clients):
    certs = kv_clients.certificates
    pending(certs, "busy")
    with pytest.raises(HttpResponseError) as info:
        certs.begin_create_certificate("busy", unknown_policy("CN=busy", key_type="EC"))
    assert kv_error(info)[:2] == (409, "Forbidden")
    assert "pending key vault certificate's status is inProgress" in kv_error(info)[2]
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = CA.sign(key.public_key(), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "busy")]))
    pfx = pkcs12.serialize_key_and_certificates(None, key, leaf, None, serialization.NoEncryption())
    with pytest.raises(HttpResponseError) as info:
        certs.import_certificate("busy", pfx)
    assert kv_error(info)[:2] == (409, "Forbidden")


def test_create_of_a_deleted_but_recoverable_name_is_a_409_conflict_with_its_inner_code(emulator, kv_clients):
    certs = kv_clients.certificates
    self_signed(certs, "tombstone")
    certs.begin_delete_certificate("tombstone").wait()
    with pytest.raises(HttpResponseError) as info:
        certs.begin_create_certificate("tombstone", unknown_policy("CN=t", key_type="EC"))
    assert kv_error(info)[:2] == (409, "Conflict")
    assert info.value.error.innererror == {"code": "ObjectIsDeletedButRecoverable"}


def test_a_second_change_to_a_pending_certificate_within_the_window_is_a_409(emulator, kv_clients):
    emulator.set_fidelity(pending_conflict_seconds=5)
    certs = kv_clients.certificates
    op = pending(certs, "contended")
    certs.cancel_certificate_operation("contended")
    for second in (lambda: certs.delete_certificate_operation("contended"),
                   lambda: merge(certs, "contended", op)):
        with pytest.raises(HttpResponseError) as info:
            second()
        status, code, message = kv_error(info)
        assert (status, code) == (409, "Conflict")
        assert message.startswith("There was a conflict while updating/deleting pending certificate")
    emulator.clock.advance(seconds=6)
    certs.delete_certificate_operation("contended")


def test_changes_to_a_pending_certificate_do_not_conflict_when_the_window_is_off(emulator, kv_clients):
    assert emulator.fidelity.pending_conflict_seconds == 0
    certs = kv_clients.certificates
    pending(certs, "uncontended")
    certs.cancel_certificate_operation("uncontended")
    certs.delete_certificate_operation("uncontended")


# ---------------------------------------------------------------- events, soft delete

def test_near_expiry_and_expired_fire_for_the_current_version_only(emulator, kv_clients):
    certs = kv_clients.certificates
    self_signed(certs, "renewed", months=2)
    newer = self_signed(certs, "renewed", months=12)
    emulator.take_events()
    emulator.clock.advance(days=70)  # past the old version's NearExpiry and its expiry
    assert emulator.take_events() == []
    emulator.clock.advance(days=270)  # past the newer version's NearExpiry, not its expiry
    events = emulator.take_events()
    assert [(e["eventType"].rsplit(".", 1)[1], e["data"]["Version"]) for e in events] == [
        ("CertificateNearExpiry", newer.properties.version)]


@pytest.mark.parametrize("fires", [True, False])
def test_events_for_merged_versions_follow_the_unknown_issuer_events_switch(emulator, kv_clients, fires):
    emulator.set_fidelity(unknown_issuer_events=fires)
    certs = kv_clients.certificates
    merged = merge(certs, "from-ca", pending(certs, "from-ca"))  # a 90-day leaf
    self_signed(certs, "own", months=2)
    kinds = [(e["eventType"].rsplit(".", 1)[1], e["subject"]) for e in emulator.take_events()]
    assert (("CertificateNewVersionCreated", "from-ca") in kinds) is fires
    assert ("CertificateNewVersionCreated", "own") in kinds
    emulator.clock.advance(days=100)  # past both certificates' NearExpiry and expiry
    seen = {(e["eventType"].rsplit(".", 1)[1], e["data"]["Version"]) for e in emulator.take_events()}
    assert (("CertificateNearExpiry", merged.properties.version) in seen) is fires
    assert (("CertificateExpired", merged.properties.version) in seen) is fires
    assert {kind for kind, _ in seen} >= {"CertificateNearExpiry", "CertificateExpired"}


@pytest.mark.parametrize("settle", [9.0, 0.0])
def test_a_deleted_certificate_reads_404_until_soft_delete_settles(emulator, kv_clients, settle):
    emulator.set_fidelity(soft_delete_settle_seconds=settle)  # 9 s: the recorded real delay
    certs = kv_clients.certificates
    self_signed(certs, "settling")
    certs.begin_delete_certificate("settling")
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate("settling")
    if settle:
        with pytest.raises(ResourceNotFoundError):
            certs.get_deleted_certificate("settling")
        assert list(certs.list_deleted_certificates()) == []
        emulator.clock.advance(seconds=settle + 1)
    assert certs.get_deleted_certificate("settling").name == "settling"
    assert [d.name for d in certs.list_deleted_certificates()] == ["settling"]


# ---------------------------------------------------------------- tags, reuse_key

def test_tags_on_a_pending_version_read_back_on_that_version(kv_clients):
    certs = kv_clients.certificates
    op = certs.begin_create_certificate("tagged", unknown_policy("CN=tagged", key_type="EC"),
                                        tags={"owner": "ops"}).result()
    version = certs.get_certificate("tagged").properties.version
    assert certs.get_certificate_version("tagged", version).properties.tags == {"owner": "ops"}
    certs.update_certificate_properties("tagged", version, tags={"owner": "sec", "ticket": "42"})
    assert certs.get_certificate_version("tagged", version).properties.tags == {"owner": "sec", "ticket": "42"}
    merged = merge(certs, "tagged", op)
    assert merged.properties.version == version and merged.properties.tags == {"owner": "sec", "ticket": "42"}


def test_reuse_key_csr_is_over_the_self_version_key_which_signs_while_the_new_version_is_pending(
        emulator, kv_clients):
    certs, keys = kv_clients.certificates, kv_clients.keys
    first = self_signed(certs, "ca-key", exportable=False)
    op = certs.begin_create_certificate("ca-key", unknown_policy(
        "CN=ca-key", key_type="EC", reuse_key=True, exportable=False)).result()
    csr = x509.load_der_x509_csr(op.csr)
    old_public = x509.load_der_x509_certificate(first.cer).public_key()
    assert csr.public_key() == old_public
    digest = hashlib.sha256(b"tbs").digest()
    signer = CryptographyClient(first.key_id, emulator.credential(), **emulator.client_kwargs())
    signature = signer.sign(SignatureAlgorithm.es256, digest).signature
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    old_public.verify(utils.encode_dss_signature(r, s), b"tbs", ec.ECDSA(hashes.SHA256()))
    new_version = certs.get_certificate_operation("ca-key")  # still pending
    assert new_version.status == "inProgress"
    versions = [v.version for v in certs.list_properties_of_certificate_versions("ca-key")]
    pending_version = next(v for v in versions if v != first.properties.version)
    assert keys.get_key("ca-key", pending_version).properties.enabled is False
    with pytest.raises(HttpResponseError) as info:
        CryptographyClient(f"{emulator.url}/keys/ca-key/{pending_version}", emulator.credential(),
                           **emulator.client_kwargs()).sign(SignatureAlgorithm.es256, digest)
    assert info.value.status_code == 403


# ---------------------------------------------------------------- which version is current

@pytest.mark.parametrize("includes", [False, True])
@pytest.mark.parametrize("newer", ["pending", "abandoned"])
def test_versionless_get_answers_the_newest_completed_version_unless_the_switch_says_newest(
        emulator, kv_clients, includes, newer):
    emulator.set_fidelity(current_includes_pending=includes)
    certs = kv_clients.certificates
    done = self_signed(certs, "which")
    pending(certs, "which")
    if newer == "abandoned":
        certs.delete_certificate_operation("which")
    got = certs.get_certificate("which")
    if includes:
        assert got.properties.version != done.properties.version and got.cer is None
        assert got.properties.enabled is False
    else:
        assert got.properties.version == done.properties.version and got.cer == done.cer
    item = next(iter(certs.list_properties_of_certificates()))
    assert (item.x509_thumbprint is None) is includes


@pytest.mark.parametrize("includes", [False, True])
def test_pending_only_certificate_answers_its_pending_version_under_either_switch(
        emulator, kv_clients, includes):
    emulator.set_fidelity(current_includes_pending=includes)
    certs = kv_clients.certificates
    pending(certs, "lonely")
    got = certs.get_certificate("lonely")
    assert got.properties.version and got.cer is None and got.properties.enabled is False


# ---------------------------------------------------------------- throttling

THROTTLED = {"error": {"code": "Throttled", "message": (
    "Request was not processed because too many requests were received. "
    "Reason: VaultRequestTypeLimitReached")}}


@pytest.mark.parametrize("retry_after", [True, False])
def test_throttled_answer_has_the_captured_body_and_retry_after_per_switch(emulator, retry_after):
    """AzureSignTool#219: the one captured 429 had no Retry-After; the switch adds one."""
    emulator.throttling(True, limits={"other": 1}, retry_after=retry_after)
    assert call(emulator, "GET", "/certificates?api-version=7.6")[0] == 200
    status, body, headers = call(emulator, "GET", "/certificates?api-version=7.6")
    assert status == 429 and body == THROTTLED
    assert ("Retry-After" in headers) is retry_after
    if retry_after:
        assert 1 <= int(headers["Retry-After"]) <= 10


@pytest.mark.parametrize("retry_after", [True, False])
def test_injected_429_faults_carry_retry_after_only_when_given(emulator, retry_after):
    emulator.faults.add(kind="429", route="^/certificates$", count=1, retry_after=2 if retry_after else None)
    status, body, headers = call(emulator, "GET", "/certificates?api-version=7.6")
    assert status == 429 and body["error"]["code"] == "Throttled"
    assert body["error"]["message"].endswith("Reason: VaultRequestTypeLimitReached")
    assert headers.get("Retry-After") == ("2" if retry_after else None)


def no_retry_certificates(emulator):
    from azure.keyvault.certificates import CertificateClient
    return CertificateClient(emulator.url, emulator.credential(), retry_total=0, **emulator.client_kwargs())


@pytest.mark.parametrize("kty,allowed", [("EC", 20), ("EC-HSM", 10)])
def test_certificate_creates_count_against_the_key_create_limit_of_20_and_hsm_halves_it(
        emulator, kty, allowed):
    emulator.throttling(True)
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=t", key_type=kty,
                               exportable=False if kty.endswith("HSM") else None)
    with no_retry_certificates(emulator) as certs:
        for i in range(allowed):
            certs.begin_create_certificate(f"burst-{i:02d}", policy)
        with pytest.raises(HttpResponseError) as info:
            certs.begin_create_certificate("one-too-many", policy)
    assert info.value.status_code == 429 and info.value.error.code == "Throttled"


@pytest.mark.parametrize("kty,size,allowed", [("RSA", 2048, 16), ("RSA", 3072, 4), ("RSA", 4096, 2),
                                              ("EC-HSM", None, 8)])
def test_key_operations_are_a_weighted_sum_rsa_3072_4096_and_hsm_cost_more(
        emulator, kv_clients, kty, size, allowed):
    # A budget of 16 software RSA-2048 operations: RSA-3072 costs 4 (4,000 vs 1,000 per 10 s),
    # RSA-4096 8 (vs 500), HSM doubles (half the limits).
    kwargs = {"key_size": size} if size else {"exportable": False}
    cert = kv_clients.certificates.begin_create_certificate("weighted", CertificatePolicy(
        issuer_name="Self", subject="CN=w", key_type=kty, **kwargs)).result()
    emulator.throttling(True, limits={"key-other": 16})
    sign = json.dumps({"alg": "RS256" if kty == "RSA" else "ES256",
                       "value": kc.b64url(hashlib.sha256(b"x").digest())}).encode()
    path = f"/keys/weighted/{cert.properties.version}/sign?api-version=7.6"
    statuses = [call(emulator, "POST", path, sign)[0] for _ in range(allowed + 1)]
    assert statuses == [200] * allowed + [429]


def test_default_limits_are_the_documented_per_10_seconds_figures():
    from kvemulator._faults import LIMITS, KeySpec, weight
    assert LIMITS == {"key-create": 20, "key-other": 4000, "secret-create": 300, "other": 4000}
    assert LIMITS["key-other"] // weight("key-other", KeySpec(3072, False)) == 1000
    assert LIMITS["key-other"] // weight("key-other", KeySpec(4096, False)) == 500
    assert LIMITS["key-other"] // weight("key-other", KeySpec(None, True)) == 2000
    assert LIMITS["key-create"] // weight("key-create", KeySpec(2048, True)) == 10
