"""kvca's "now" is the vault's (kvca_core/clock.py): the Date header of Key Vault's answers, read
by the Key Vault clients that kvca_core/rim/keyvault.py builds and by nothing else.

The real SDK over HTTPS against the emulator, whose clock is moved; stand-in servers (Python's
http.server, headers written by hand) for a vault that sends no or a malformed Date, and for
the Event Grid topic and the webhook, whose answers must not move kvca's clock."""

from __future__ import annotations

import datetime as dt
import os
import email.utils
import http.client
import http.server
import json
import logging
import ssl
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509

from kvca_core import clock, operations
from kvca_core.ca import create_ca
from kvca_core.context import Context
from kvca_core.errors import NotFound
from kvca_core.events import pending_request_event
from kvca_core.notify import Notice, payload
from kvca_core.operations import IssueRequest
from kvca_core.settings import Settings
from kvca_core.signing.issue import BACKDATE
from kvca_core.rim.keyvault import KeyVault
from kvemulator._tls import make_server_context

UTC = dt.timezone.utc
# How closely kvca follows the vault: Date has one-second resolution, plus loopback latency.
CLOSE = dt.timedelta(seconds=2.5)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def _http_date(when: dt.datetime) -> str:
    return when.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


class StandIn:
    """A server that answers every request with `status` and a JSON body, and a Date header
    exactly as set: `date=None` sends none (http.server's `send_response` would add one; this
    writes the status line and headers itself). HTTPS with a CA of its own when `tls_dir` is given."""

    def __init__(self, tls_dir: Path | None = None, *, status: int = 404) -> None:
        self.date: str | None = None
        self.status = status
        self.requests: list[str] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stand_in.requests.append(f"{self.command} {self.path}")
                body = json.dumps({"error": {"code": "NotFound", "message": "stand-in"}}).encode() \
                    if stand_in.status >= 400 else b""
                self.send_response_only(stand_in.status)
                if stand_in.date is not None:
                    self.send_header("Date", stand_in.date)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.ca_path: Path | None = None
        if tls_dir is not None:
            context, self.ca_path = make_server_context(tls_dir, ["127.0.0.1"])
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls_dir is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "StandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def _bundle(tmp_path: Path, *paths: Path) -> Iterator[str]:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"".join(Path(p).read_bytes() for p in paths))
    yield str(bundle)


async def _answer_from(vault) -> None:
    """One Key Vault call whose answer is a 404: it carries a Date like any other."""
    with pytest.raises(NotFound):
        await vault.get_certificate("no-such-certificate")


def _dates(emulator, method: str, path: str, headers: dict[str, str] | None = None) -> list[str]:
    host, port = emulator.url.removeprefix("https://").split(":")
    connection = http.client.HTTPSConnection(host, int(port), timeout=10,
                                             context=ssl.create_default_context(cafile=str(emulator.ca_path)))
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.headers.get_all("Date") or []
    finally:
        connection.close()


def test_the_emulator_dates_each_key_vault_answer_once_by_its_own_clock_and_control_answers_by_real_time(emulator):
    emulator.clock.advance(days=400)
    bearer = {"Authorization": "Bearer any"}
    for method, path, headers in (("GET", "/certificates?api-version=7.6", None),  # the 401 challenge
                                  ("GET", "/certificates?api-version=7.6", bearer),  # 200
                                  ("GET", "/certificates/missing?api-version=7.6", bearer),  # 404
                                  ("GET", "/certificates", bearer)):  # 400: no api-version
        dates = _dates(emulator, method, path, headers)
        assert len(dates) == 1, (path, dates)
        assert abs(email.utils.parsedate_to_datetime(dates[0]) - emulator.clock.now()) <= CLOSE, (path, dates)
    control = _dates(emulator, "GET", "/_emulator/clock")
    assert len(control) == 1 and abs(email.utils.parsedate_to_datetime(control[0]) - _utcnow()) <= CLOSE


def _follows(emulator) -> bool:
    return abs(clock.now() - emulator.clock.now()) <= CLOSE


async def test_kvca_follows_the_vaults_clock_forward_and_back_from_its_next_answer(app, ctx):
    await _answer_from(ctx.vault)
    assert abs(clock.now() - _utcnow()) < dt.timedelta(seconds=1)  # in step: the system clock as it is

    app.clock.set(_utcnow() + dt.timedelta(days=400))
    assert not _follows(app)  # moved behind kvca's back: nothing changes until the vault answers
    await _answer_from(ctx.vault)
    assert _follows(app), (clock.now(), app.clock.now())
    # Never ahead of the vault: Date is truncated to the second and stamped before the answer left.
    assert clock.now() <= app.clock.now()

    app.clock.set(_utcnow() - dt.timedelta(days=3))  # a vault behind this machine: followed too
    await ctx.vault.get_pending("no-such-certificate")
    assert _follows(app), (clock.now(), app.clock.now())

    app.clock.set(_utcnow())
    await _answer_from(ctx.vault)
    # Within the threshold the offset is not applied: exactly the system clock, no jitter.
    assert abs(clock.offset()) <= clock.OFFSET_THRESHOLD
    before, seen, after = _utcnow(), clock.now(), _utcnow()
    assert before <= seen <= after


async def test_the_cryptography_client_and_the_secrets_client_move_the_clock_too(app, ctx):
    await create_ca(ctx, "clock-ca", subject="CN=Clock CA", key="ec-p256", years=5)
    key_id = (await ctx.vault.get_certificate("clock-ca")).key_id
    for call in (lambda: ctx.vault.sign_digest(key_id, "ES256", b"\0" * 32),
                 lambda: ctx.vault.get_secret_value("clock-ca")):
        app.clock.advance(days=10)
        assert not _follows(app)
        await call()
        assert _follows(app), call


async def test_a_skew_beyond_five_minutes_is_logged_once_naming_the_vault_host(app, ctx, caplog, monkeypatch):
    monkeypatch.setattr(clock, "_warned", False)  # once per process: earlier tests may have used it up
    caplog.set_level(logging.WARNING, logger="kvca_core.clock")
    app.clock.advance(minutes=4)
    await _answer_from(ctx.vault)
    assert not caplog.records  # 4 minutes: followed, not worth a warning
    app.clock.advance(minutes=2)
    await _answer_from(ctx.vault)
    app.clock.advance(days=1)
    await _answer_from(ctx.vault)
    warnings = [r for r in caplog.records if r.name == "kvca_core.clock"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "127.0.0.1" in message and "+3" in message  # +359 s: the host and the skew, nothing else


@pytest.mark.parametrize("date", [None, "", "yesterday", "Mon, 99 Foo 2020 25:61:00 GMT",
                                  "Tue, 01 Jan 2030 00:00:00 -0000", "Fri, 31 Dec 99999 23:59:59 GMT"],
                         ids=["absent", "empty", "words", "impossible", "no-zone", "year-99999"])
async def test_a_missing_or_malformed_date_leaves_the_clock_alone_and_never_fails_a_call(
        app, ctx, tmp_path, date):
    app.clock.advance(days=10)
    await _answer_from(ctx.vault)
    assert _follows(app)
    known = clock.offset()
    with StandIn(tmp_path / "tls") as stand_in:
        settings = Settings.from_env({**app.environ(), "KVCA_VAULT_URL": stand_in.url,
                                      "KVCA_TLS_CA_BUNDLE": str(stand_in.ca_path)})
        vault = KeyVault(settings, app.async_credential())
        try:
            stand_in.date = date
            await _answer_from(vault)  # the 404 comes back as NotFound, whatever the Date
            assert stand_in.requests and clock.offset() == known
            # The same stand-in with a good Date moves the clock: the answers above were read.
            stand_in.date = _http_date(_utcnow() + dt.timedelta(days=3))
            await _answer_from(vault)
            assert abs(clock.offset() - dt.timedelta(days=3)) <= CLOSE
        finally:
            await vault.close()


async def test_answers_from_event_grid_and_the_webhook_do_not_move_the_clock(app, tmp_path):
    """The Event Grid publisher shares the vault's transport (one connection pool): only the Key
    Vault clients' pipelines read Date. The webhook has its own session and never reads it."""
    far = _http_date(_utcnow() + dt.timedelta(days=400))
    with StandIn(tmp_path / "tls", status=200) as topic, StandIn(status=200) as webhook:
        topic.date = webhook.date = far
        env = {**app.environ(), "KVCA_LEDGER_TABLE_URL": os.environ["KVCA_LEDGER_TABLE_URL"],
               "KVCA_EVENTGRID_TOPIC_ENDPOINT": f"{topic.url}/api/events",
               "KVCA_NOTIFY_WEBHOOK_URL": f"{webhook.url}/hook"}
        with _bundle(tmp_path, app.ca_path, topic.ca_path) as bundle:
            env["KVCA_TLS_CA_BUNDLE"] = bundle
            async with Context.open(Settings.from_env(env), credential=app.async_credential()) as ctx:
                await _answer_from(ctx.vault)  # the emulator, on real time
                assert abs(clock.offset()) <= clock.OFFSET_THRESHOLD
                await ctx.publisher.publish(pending_request_event(vault_name=app.vault_name, vault_url=app.url,
                                                                  name="api"))
                notice = Notice(event="test", title="clock test")
                assert await ctx.notifier.send(notice.event, payload(notice, vault="v", now=clock.now()))
                assert topic.requests and webhook.requests
                assert abs(clock.offset()) <= clock.OFFSET_THRESHOLD, clock.offset()
                # The same far Date from the vault would have moved it.
                app.clock.set(_utcnow() + dt.timedelta(days=400))
                await _answer_from(ctx.vault)
                assert clock.offset() > dt.timedelta(days=399)


async def test_a_leaf_signed_400_days_on_the_vaults_clock_is_dated_by_the_vault(app, ctx):
    await create_ca(ctx, "clock-ca", subject="CN=Clock CA", key="ec-p256", years=5)
    app.clock.advance(days=400)
    outcome = await operations.issue(ctx, IssueRequest(name="later", ca="clock-ca", dns_names=("later.corp.internal",),
                                                       validity_months=12))
    assert outcome.action == "issued", outcome
    leaf = x509.load_der_x509_certificate((await ctx.vault.get_certificate("later")).cer)
    vault_now = app.clock.now()
    # notBefore: the vault's now, backdated for clock skew (the signing engine's rule).
    expected = vault_now - BACKDATE
    assert abs(leaf.not_valid_before_utc - expected) <= dt.timedelta(seconds=30), (leaf.not_valid_before_utc, expected)
    assert leaf.not_valid_before_utc > _utcnow() + dt.timedelta(days=399)  # not the system's
    assert leaf.not_valid_after_utc > vault_now + dt.timedelta(days=360)
