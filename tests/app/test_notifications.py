"""Webhook notifications (kvca_core/notify.py), received by a real HTTP server on loopback that
the test starts: a renewal that really fails (a disabled CA), a CA that really nears expiry or has
expired (a short-lived CA imported the recipe's way, the emulator's clock moved), a revocation.
One JSON shape (Slack `text`, a Teams Workflows Adaptive Card, kvca's own fields), nothing secret in
it, and a webhook that fails or is not there never fails the operation."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from cryptography import x509

from kvca_core.rim import webhook as webhook_rim
from kvca_core import context, notify, operations, revocation
from kvca_core.errors import ConfigurationError, KvcaError
from kvca_core.vocabulary import NOTIFIED_TAG
from kvca_core.operations import IssueRequest
from kvca_core.settings import Settings

from apphelpers import call_http, deliver, import_recipe_ca, run_timer

TOKEN = "T0KEN-s3cr3t-d0-not-log"  # the secret part of the URL, as Slack's and Teams' URLs carry one
ADAPTIVE = "application/vnd.microsoft.card.adaptive"


@dataclass
class Webhook:
    url: str
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200
    received: list[dict] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    hold: asyncio.Event | None = None  # set: the webhook answers only once the test releases it

    def events(self, event: str | None = None) -> list[dict]:
        return [b for b in self.received if event is None or b["kvca"]["event"] == event]


@pytest.fixture
async def webhook(app, monkeypatch):
    """A webhook on 127.0.0.1 (plain http: allowed for loopback only), set as KVCA_NOTIFY_WEBHOOK_URL
    before the app's context is built."""
    hook = Webhook(url="")

    async def receive(request: web.Request) -> web.Response:
        assert request.match_info["token"] == TOKEN
        assert request.content_type == "application/json"
        data = await request.read()
        hook.raw.append(data)
        hook.received.append(json.loads(data))
        if hook.hold is not None:
            await hook.hold.wait()
        return web.Response(status=hook.statuses.pop(0) if hook.statuses else 200, text="ok")

    server = web.Application()
    server.router.add_post("/hooks/{token}", receive)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    hook.url = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
    monkeypatch.setenv("KVCA_NOTIFY_WEBHOOK_URL", hook.url)
    monkeypatch.setattr(webhook_rim, "BACKOFF_SECONDS", (0.0, 0.0))  # retries at once: the test need not wait
    try:
        yield hook
    finally:
        await context.reset_shared()  # closes the notifier's session before the server goes
        await runner.cleanup()


def assert_shape(body: dict, event: str) -> dict:
    """The one shape: Slack's `text`, Teams' Adaptive Card attachment, kvca's versioned fields."""
    assert body["type"] == "message"
    assert isinstance(body["text"], str) and body["text"].startswith("kvca: ")
    [attachment] = body["attachments"]
    assert attachment["contentType"] == ADAPTIVE and attachment["fallback"]
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.2"
    assert card["body"][0]["type"] == "TextBlock" and card["body"][0]["text"] in body["text"]
    fields = body["kvca"]
    assert fields["version"] == 1 and fields["event"] == event and fields["vault"] == "kvemulator"
    assert fields["time"].endswith("+00:00")
    return fields


def assert_nothing_secret(hook: Webhook) -> None:
    for raw in hook.raw:
        text = raw.decode()
        assert TOKEN not in text
        for marker in ("PRIVATE KEY", "BEGIN CERTIFICATE", "MII"):  # PEM, or base64 DER/PFX
            assert marker not in text


async def _ca_with_due_leaves(app, ctx, names=("web", "api")):
    await import_recipe_ca(ctx.vault, "corp")
    for name in names:
        outcome = await operations.issue(ctx, IssueRequest(name=name, ca="corp", dns_names=(f"{name}.corp.internal",)))
        assert outcome.action == "issued"
    app.clock.advance(days=340)  # 12-month leaves: due
    await ctx.vault.update_properties("corp", None, enabled=False)  # an administrator disabled the CA


async def test_a_sweep_whose_renewals_fail_sends_one_notice_listing_them(app, webhook):
    ctx = await context.shared()
    await _ca_with_due_leaves(app, ctx)
    await run_timer()  # the timer trigger's sweep
    [body] = webhook.events(notify.RENEWAL_FAILED)
    fields = assert_shape(body, notify.RENEWAL_FAILED)
    assert fields["source"] == "sweep" and fields["failed"] == 2 and fields["truncated"] is False
    assert sorted(f["certificate"] for f in fields["failures"]) == ["api", "web"]
    assert all("the CA is disabled" in f["reason"] for f in fields["failures"])
    assert "2 certificates failed to renew" in body["text"] and "- api: " in body["text"]
    assert_nothing_secret(webhook)


async def test_an_http_renewal_the_ca_refuses_sends_a_notice_naming_the_certificate(app, webhook):
    ctx = await context.shared()
    await _ca_with_due_leaves(app, ctx, names=("web",))
    status, answer, _ = await call_http("kvca_renew", "POST", "certificates/web/renew", body={"if_due": True},
                                        route_params={"name": "web"})
    assert status == 422 and answer["error"] == "PolicyViolation", answer
    await ctx.notifier.drain()  # posted in the background: the answer did not wait for it
    [body] = webhook.events()
    fields = assert_shape(body, notify.RENEWAL_FAILED)
    assert fields["source"] == "renew" and fields["failures"][0]["certificate"] == "web"
    assert "renewal of certificate 'web' failed" in body["text"] and "the CA is disabled" in body["text"]


async def test_an_http_refusal_is_answered_without_waiting_for_a_slow_webhook(app, webhook):
    """The review's finding: the notice was sent inline, so a webhook that hangs held the refused
    renewal's answer for up to three 10-second attempts. Here the webhook does not answer until
    the test has the HTTP answer in hand: inline delivery would never get there."""
    ctx = await context.shared()
    await _ca_with_due_leaves(app, ctx, names=("web",))
    webhook.hold = asyncio.Event()
    status, answer, _ = await asyncio.wait_for(call_http(
        "kvca_renew", "POST", "certificates/web/renew", body={"if_due": True}, route_params={"name": "web"}), 8)
    assert status == 422 and answer["error"] == "PolicyViolation"
    webhook.hold.set()
    await ctx.notifier.drain()
    [body] = webhook.events(notify.RENEWAL_FAILED)
    assert body["kvca"]["failures"][0]["certificate"] == "web"


async def test_a_near_expiry_event_whose_renewal_the_ca_refuses_sends_a_notice(app, webhook):
    """The Event Grid trigger: the emulator's own CertificateNearExpiry event, delivered to the handler."""
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp")
    await operations.issue(ctx, IssueRequest(name="web", ca="corp", dns_names=("web.corp.internal",)))
    await ctx.vault.update_properties("corp", None, enabled=False)
    app.take_events()
    app.clock.advance(days=340)
    near = [e for e in app.take_events() if e["eventType"] == "Microsoft.KeyVault.CertificateNearExpiry"
            and e["data"]["ObjectName"] == "web"]
    assert near
    await deliver(near[0])  # refused (a policy violation): acknowledged, and told
    await ctx.notifier.drain()
    [body] = webhook.events()
    fields = assert_shape(body, notify.RENEWAL_FAILED)
    assert fields["source"] == "renew" and fields["failures"][0]["certificate"] == "web"


async def test_a_renewal_refused_as_not_due_or_not_managed_sends_nothing(app, webhook):
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp")
    await operations.issue(ctx, IssueRequest(name="web", ca="corp", dns_names=("web.corp.internal",)))
    assert (await operations.renew(ctx, "web")).action == "skipped"  # not due
    with pytest.raises(KvcaError, match="is a CA certificate"):
        await operations.renew(ctx, "corp")  # a CA: not managed
    with pytest.raises(KvcaError, match="no such certificate"):
        await operations.renew(ctx, "nothing-here")
    assert webhook.events() == []


async def test_a_ca_nearing_expiry_is_told_once_a_day_and_again_when_it_expires(app, webhook):
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp", years=2)  # the intermediate lives 1 year: inside 398 days
    await run_timer()
    await run_timer()  # the same day: told already (the mark on the CA version)
    [body] = webhook.events(notify.CA_EXPIRING)
    fields = assert_shape(body, notify.CA_EXPIRING)
    assert fields["ca"] == "corp" and fields["role"] == "intermediate" and 360 <= fields["days_left"] <= 366
    assert fields["hint"] == "kvca ca rotate corp" and "leaves are now capped at that date" in body["text"]
    current = await ctx.vault.get_certificate("corp")
    assert current.tags[NOTIFIED_TAG].endswith(" expiring") and current.tags["kvca-role"] == "intermediate"
    app.clock.advance(days=1)
    await run_timer()
    assert len(webhook.events(notify.CA_EXPIRING)) == 2  # a new day
    app.clock.advance(days=400)
    await run_timer()
    [expired] = webhook.events(notify.CA_EXPIRED)
    fields = assert_shape(expired, notify.CA_EXPIRED)
    assert fields["days_left"] < 0 and "expired on" in expired["text"]
    assert_nothing_secret(webhook)


async def test_a_revocation_is_told_once(app, webhook):
    ctx = await context.shared()
    await import_recipe_ca(ctx.vault, "corp")
    issued = await operations.issue(ctx, IssueRequest(name="web", ca="corp", dns_names=("web.corp.internal",)))
    result = await revocation.revoke(ctx, "web", reason="keyCompromise")
    assert result.action == "revoked"
    again = await revocation.revoke(ctx, "web", reason="keyCompromise")
    assert again.action == "already-revoked"
    await ctx.notifier.drain()
    [body] = webhook.events()
    fields = assert_shape(body, notify.REVOKED)
    assert fields["certificate"] == "web" and fields["serial"] == issued.serial
    assert fields["certificate_version"] == issued.version and fields["reason"] == "keyCompromise"
    assert fields["ca"] == "corp" and f"serial {issued.serial}" in body["text"]
    assert_nothing_secret(webhook)


async def test_a_webhook_answering_500_is_retried_twice_and_never_fails_the_sweep(app, webhook, caplog):
    webhook.statuses = [500, 503, 500]
    ctx = await context.shared()
    await _ca_with_due_leaves(app, ctx)
    with caplog.at_level(logging.INFO, logger="kvca_core.notify"):
        summary = await operations.sweep(ctx)
    assert summary.failed == 2 and len(summary.failures) == 2
    assert len(webhook.received) == 3  # the first attempt and two retries
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("kvca notify")]
    assert len(failed) == 1 and "host=127.0.0.1" in failed[0] and "status=500" in failed[0] and "attempts=3" in failed[0]
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


async def test_a_webhook_answering_4xx_is_not_retried(app, webhook):
    webhook.statuses = [400]
    ctx = await context.shared()
    await _ca_with_due_leaves(app, ctx, names=("web",))
    summary = await operations.sweep(ctx)
    assert summary.failed == 1 and len(webhook.received) == 1


async def test_a_webhook_that_is_not_listening_never_fails_the_sweep_nor_a_revocation(app, monkeypatch, caplog):
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KVCA_NOTIFY_WEBHOOK_URL", f"http://127.0.0.1:{port}/hooks/{TOKEN}")
    monkeypatch.setattr(webhook_rim, "BACKOFF_SECONDS", (0.0, 0.0))
    ctx = await context.shared()
    await _ca_with_due_leaves(app, ctx, names=("web",))
    with caplog.at_level(logging.INFO, logger="kvca_core.notify"):
        summary = await operations.sweep(ctx)
        result = await revocation.revoke(ctx, "web", reason="superseded")
        await ctx.notifier.drain()
    assert summary.failed == 1 and result.action == "revoked"
    messages = [r.getMessage() for r in caplog.records]
    refused = [m for m in messages if "outcome=failed" in m and "host=127.0.0.1" in m]
    assert len(refused) == 2 and all("ClientConnectorError" in m and "attempts=3" in m for m in refused)
    assert all(TOKEN not in m for m in messages)


async def test_a_dry_run_sends_nothing(app, webhook):
    ctx = await context.shared()
    await _ca_with_due_leaves(app, ctx)
    await import_recipe_ca(ctx.vault, "short", years=2)
    summary = await operations.sweep(ctx, dry_run=True)
    assert summary.ca_warnings and webhook.received == []


def test_drain_returns_past_notices_of_a_loop_that_closed(caplog):
    """A notice posted on a loop that closed before it ran, and a finished one whose done callback
    never ran there: neither may hold drain on the next loop. Before, the finished one made it spin
    without yielding (seen once in a suite run on Python 3.13): run in a thread, so that a drain
    that never returns fails this test instead of hanging the suite."""
    notifier = webhook_rim.Notifier(f"http://127.0.0.1:9/hooks/{TOKEN}")
    closed = asyncio.new_event_loop()

    async def post_and_leave() -> None:
        notifier.post("renewal-failed", {"text": "x"})  # a task of this loop, not started yet

    closed.run_until_complete(post_and_leave())
    finished = closed.create_task(asyncio.sleep(0))
    closed.run_until_complete(finished)
    notifier._posted.add(finished)  # as if its done callback (the discard) had never run
    closed.close()
    assert len(notifier._posted) == 2
    returned = threading.Event()

    def drain_on_a_new_loop() -> None:
        asyncio.run(notifier.drain())
        returned.set()

    with caplog.at_level(logging.WARNING, logger="kvca_core.notify"):
        threading.Thread(target=drain_on_a_new_loop, daemon=True).start()
        assert returned.wait(20), "drain did not return"
    assert not notifier._posted
    assert [r.getMessage() for r in caplog.records if "abandoned" in r.getMessage()] == [
        "kvca notify outcome=abandoned reason=posted on another event loop, not finished"]


def test_the_webhook_must_be_https_except_on_loopback_and_a_refusal_never_quotes_the_url():
    base = {"KVCA_VAULT_URL": "https://corp.vault.azure.net/"}
    for ok in (f"https://hooks.slack.com/services/{TOKEN}", f"http://127.0.0.1:8080/{TOKEN}",
               f"http://localhost/{TOKEN}", f"http://[::1]:9/{TOKEN}"):
        settings = Settings.from_env({**base, "KVCA_NOTIFY_WEBHOOK_URL": ok})
        assert settings.notify_webhook_url == ok and TOKEN not in repr(settings)
    for bad, named in ((f"http://hooks.example.com/{TOKEN}", "'hooks.example.com'"),
                       (f"ftp://hooks.example.com/{TOKEN}", "scheme 'ftp'"),
                       (f"https:///{TOKEN}", "with a host")):
        with pytest.raises(ConfigurationError) as caught:
            Settings.from_env({**base, "KVCA_NOTIFY_WEBHOOK_URL": bad})
        assert "KVCA_NOTIFY_WEBHOOK_URL" in str(caught.value) and named in str(caught.value)
        assert TOKEN not in str(caught.value)
    assert Settings.from_env(base).notify_webhook_url == ""


def _device_csr(device: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())  # the device's; dropped with the test
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
            .sign(key, hashes.SHA256()).public_bytes(Encoding.PEM))


async def test_devices_that_have_not_re_enrolled_are_told_once_per_state_and_listed_by_the_sweep(app, webhook):
    from kvca_core.ca import create_ca

    ctx = await context.shared()
    await create_ca(ctx, "fleet", subject="CN=Fleet CA", key="ec-p256", years=2,
                    policy={"external_csrs": True, "external_profiles": ["client"],
                            "cn_forms": ["dns-name", "device-id"], "allowed_domains": ["fleet.example"]})
    for device, days in (("meter-1", 30), ("meter-2", 30), ("meter-3", 90)):
        await operations.sign_csr(ctx, "fleet", _device_csr(device), validity_days=days)
    app.clock.advance(days=22)  # meter-1 and meter-2: 8 days left, inside their last third
    await operations.sign_csr(ctx, "fleet", _device_csr("meter-2"), validity_days=90)  # meter-2 re-enrolls

    await run_timer()
    [notice] = webhook.events(notify.DEVICES_DUE)
    assert_shape(notice, notify.DEVICES_DUE)
    fields = notice["kvca"]
    assert fields["count"] == 1 and fields["expired"] == 0
    assert [(d["device"], d["ca"], d["state"]) for d in fields["devices"]] == [("meter-1", "fleet", "due")]
    # The next sweep lists it again, but the webhook was told: one read of the markers finds it, and
    # nothing is inserted (a fleet that stays due costs a query per sweep, not a write per device).
    tries = []
    insert_once = ctx.ledger.insert_once

    async def counted(kind, key, data):
        tries.append(kind)
        return await insert_once(kind, key, data)

    ctx.ledger.insert_once = counted
    summary = await operations.sweep(ctx)
    del ctx.ledger.insert_once
    assert [(d.name, d.state) for d in summary.devices_due] == [("meter-1", "due")]
    assert summary.to_dict()["devices_due_count"] == 1 and len(webhook.events(notify.DEVICES_DUE)) == 1
    assert notify.DEVICE_TOLD_KIND not in tries

    app.clock.advance(days=9)  # meter-1 expired without re-enrolling: told once more, as expired
    await run_timer()
    last = webhook.events(notify.DEVICES_DUE)[-1]["kvca"]
    assert len(webhook.events(notify.DEVICES_DUE)) == 2
    assert [(d["device"], d["state"]) for d in last["devices"]] == [("meter-1", "expired")] and last["expired"] == 1
