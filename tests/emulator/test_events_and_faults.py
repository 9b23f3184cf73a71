"""Events as the clock passes thresholds, the Event Grid topic, faults and throttling."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time

import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from cryptography.hazmat.primitives import serialization

from .helpers import TestCA

EVENT_FIELDS = {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"}
DATA_FIELDS = {"Id", "VaultName", "ObjectType", "ObjectName", "Version", "NBF", "EXP"}


def issue(kv_clients, name: str, days: int) -> str:
    certs = kv_clients.certificates
    op = certs.begin_create_certificate(name, CertificatePolicy(
        issuer_name="Unknown", subject=f"CN={name}", key_type="EC")).result()
    leaf = TestCA().sign_csr(op.csr, days=days)
    merged = certs.merge_certificate(name, [leaf.public_bytes(serialization.Encoding.DER)])
    return merged.properties.version


def types(events) -> list[tuple[str, str]]:
    return [(e["eventType"].rsplit(".", 1)[1], e["subject"]) for e in events]


def test_new_version_event_has_key_vault_fields(kv_clients, emulator):
    version = issue(kv_clients, "evented", days=90)
    events = emulator.take_events()
    assert types(events) == [("CertificateNewVersionCreated", "evented")]
    event = events[0]
    assert set(event) == EVENT_FIELDS and set(event["data"]) == DATA_FIELDS
    assert event["topic"].endswith("/providers/Microsoft.KeyVault/vaults/kvemulator")
    assert event["data"]["Id"] == f"{emulator.url}/certificates/evented/{version}"
    assert event["data"]["Version"] == version and event["data"]["VaultName"] == "kvemulator"
    assert event["data"]["ObjectType"] == "Certificate"
    assert isinstance(event["data"]["EXP"], int) and event["data"]["EXP"] > event["data"]["NBF"]
    dt.datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00")[:26] + "+00:00")
    assert emulator.take_events() == []  # take clears


def test_near_expiry_and_expired_fire_once_as_the_clock_passes(kv_clients, emulator):
    issue(kv_clients, "short", days=90)
    issue(kv_clients, "long", days=400)
    emulator.take_events()
    seen: list[tuple[str, str, str]] = []
    emulator.subscribe(lambda e: seen.append((e["eventType"], e["subject"], threading.current_thread().name)))
    emulator.clock.advance(days=59)
    assert emulator.take_events() == []
    emulator.clock.advance(days=2)
    assert types(emulator.take_events()) == [("CertificateNearExpiry", "short")]
    emulator.clock.advance(days=1)
    assert emulator.take_events() == []  # once per version
    emulator.clock.set(emulator.clock.now() + dt.timedelta(days=30))
    assert types(emulator.take_events()) == [("CertificateExpired", "short")]
    emulator.clock.advance(days=400)
    assert types(emulator.take_events()) == [("CertificateNearExpiry", "long"),
                                             ("CertificateExpired", "long")]
    assert [s[:2] for s in seen] == [("Microsoft.KeyVault.CertificateNearExpiry", "short"),
                                     ("Microsoft.KeyVault.CertificateExpired", "short"),
                                     ("Microsoft.KeyVault.CertificateNearExpiry", "long"),
                                     ("Microsoft.KeyVault.CertificateExpired", "long")]
    assert {s[2] for s in seen} == {"kvemulator"}  # callbacks run on the emulator's thread


def test_control_api_moves_the_clock(kv_clients, emulator):
    import ssl
    import urllib.request
    issue(kv_clients, "ctl", days=40)
    emulator.take_events()
    req = urllib.request.Request(f"{emulator.url}/_emulator/clock", method="POST",
                                 data=json.dumps({"advance": {"days": 41}}).encode())
    ctx = ssl.create_default_context(cafile=str(emulator.ca_path))
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["offset_seconds"] >= 41 * 86400
    assert types(emulator.take_events()) == [("CertificateNearExpiry", "ctl"), ("CertificateExpired", "ctl")]


class _Sink(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers["Content-Length"])
        type(self).received.append((self.headers.get("aeg-event-type"), json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        return None


def test_webhook_receives_event_grid_batches(kv_clients, emulator):
    _Sink.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        emulator.subscribe_webhook(f"http://127.0.0.1:{server.server_address[1]}/api/events")
        issue(kv_clients, "hooked", days=90)
        deadline = time.monotonic() + 10
        while not _Sink.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
    header, batch = _Sink.received[0]
    assert header == "Notification"
    assert [e["eventType"] for e in batch] == ["Microsoft.KeyVault.CertificateNewVersionCreated"]


@pytest.mark.parametrize("credential", ["key", "token"])
def test_event_grid_publisher_client_reaches_subscribers_and_outbox(emulator, credential):
    cred = AzureKeyCredential("any-key") if credential == "key" else emulator.credential()
    got = []
    emulator.subscribe(got.append)
    # The sync client drops constructor kwargs for basic topics (azure-eventgrid 4.22,
    # _patch.py): connection_verify has to go with each send().
    client = EventGridPublisherClient(emulator.topic_endpoint, cred)
    verify = {"connection_verify": str(emulator.ca_path)}
    client.send([EventGridEvent(subject="certificates/app", event_type="kvca.CertificatePendingRequest",
                                data={"name": "app"}, data_version="1")], **verify)
    client.send([CloudEvent(source="/kvca", type="kvca.Test", data={"x": 1})], **verify)
    client.close()
    events = emulator.take_events()
    assert [e.get("eventType") or e.get("type") for e in events] == [
        "kvca.CertificatePendingRequest", "kvca.Test"]
    assert events[0]["data"] == {"name": "app"} and got == events


async def test_aio_event_grid_publisher_client_publishes(emulator):
    from azure.eventgrid.aio import EventGridPublisherClient as AioPublisher
    async with AioPublisher(emulator.topic_endpoint, emulator.async_credential(),
                            connection_verify=str(emulator.ca_path)) as client:
        await client.send([EventGridEvent(subject="a", event_type="kvca.Aio", data={}, data_version="1")])
    assert [e["eventType"] for e in emulator.take_events()] == ["kvca.Aio"]


def test_event_grid_topic_refuses_unauthenticated_publish(emulator):
    import ssl
    import urllib.error
    import urllib.request
    ctx = ssl.create_default_context(cafile=str(emulator.ca_path))
    req = urllib.request.Request(emulator.topic_endpoint, method="POST", data=b"[]",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, context=ctx, timeout=10)
    info.value.close()
    assert info.value.code == 401


@pytest.mark.parametrize("kind", ["429", "503", "500", "drop"])
def test_sdk_retries_through_injected_faults(kv_clients, emulator, kind):
    kv_clients.secrets.set_secret("flaky", "v")
    emulator.faults.add(kind=kind, route=r"^/secrets/flaky", count=2, retry_after=0.1)
    started = time.monotonic()
    assert kv_clients.secrets.get_secret("flaky").value == "v"
    assert time.monotonic() - started < 15
    assert emulator.faults.list() == []  # both faults were used


def test_injected_fault_reaches_a_client_that_does_not_retry(emulator):
    emulator.faults.add(kind="503", method="GET", route="/certificates/", retry_after=3)
    with CertificateClient(emulator.url, emulator.credential(), retry_total=0,
                           **emulator.client_kwargs()) as certs:
        with pytest.raises(HttpResponseError) as info:
            certs.get_certificate("x")
    assert info.value.status_code == 503
    assert info.value.response.headers["Retry-After"] == "3"
    assert info.value.error.code == "ServiceUnavailable"


def test_latency_fault_slows_matching_requests(kv_clients, emulator):
    kv_clients.secrets.set_secret("slow", "v")
    emulator.faults.add(kind="latency", route="/secrets/slow", seconds=0.3, count=1)
    started = time.monotonic()
    kv_clients.secrets.get_secret("slow")
    assert time.monotonic() - started >= 0.3


def test_rate_fault_fails_about_that_share(emulator):
    emulator.faults.add(kind="500", rate=0.5)
    with CertificateClient(emulator.url, emulator.credential(), retry_total=0,
                           **emulator.client_kwargs()) as certs:
        failures = 0
        for _ in range(60):
            try:
                certs.get_certificate_policy("none")
            except HttpResponseError as err:
                failures += err.status_code == 500
    assert 10 <= failures <= 50


@pytest.mark.parametrize("retry_after", [False, True])
def test_throttling_answers_429_over_the_limit_with_retry_after_on_request(emulator, retry_after):
    emulator.throttling(True, limits={"other": 4}, retry_after=retry_after)
    with CertificateClient(emulator.url, emulator.credential(), retry_total=0,
                           **emulator.client_kwargs()) as certs:
        statuses = []
        for _ in range(7):
            try:
                certs.get_certificate_policy("none")
            except HttpResponseError as err:
                statuses.append((err.status_code, err.response.headers.get("Retry-After")))
    # The SDK's first request is the unauthenticated one (401) and counts too.
    assert [s for s, _ in statuses].count(429) == 3
    if retry_after:
        assert all(1 <= int(r) <= 10 for s, r in statuses if s == 429)
    else:
        assert all(r is None for s, r in statuses if s == 429)
