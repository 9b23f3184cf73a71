"""A connection that fails says why: refused, TLS verification and why, DNS, timeout, and
the identity endpoint when it is the token request that failed. Each through the real `kvca` with
the real SDK clients, against a real failure on loopback: a closed port, the emulator without its
CA, TLS servers with an expired certificate or one for another name, a server that never answers.
One line on stderr, exit code 1, the host and port but never the URL's path or query; `--debug`
prints the OS's or OpenSSL's own exception beneath kvca's. Also the webhook's log line and the CRL
blob store, which name their causes the same way."""

from __future__ import annotations

import datetime as dt

import logging

import pytest
from azure.core.credentials import AzureNamedKeyCredential

from clihelpers import Result, run_subprocess
from kvca_core.rim import webhook
from kvca_core import notify
from kvca_core.rim.blob import CrlStore
from kvca_core.errors import UpstreamError
from kvca_core.notify import Notice, payload
from kvca_core.rim.webhook import Notifier
from nethelpers import closed_port, loopback_ca, serve  # noqa: F401 (fixtures)

BUNDLE_HINT = "set KVCA_TLS_CA_BUNDLE to the PEM file of the CA that issued the vault's certificate"


@pytest.fixture(autouse=True)
def root_logging_restored():
    """`kvca --debug` in-process leaves the root logger at DEBUG with its handler (cli._setup_logging):
    put it back, so a later test's caplog does not collect every library's debug lines."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


def assert_one_error_line(result: Result, *expected: str) -> str:
    """Exit 1, nothing on stdout, one line on stderr holding every `expected` text, and none of the
    request's URL beyond host and port (the SDK's own messages quote it, query and all)."""
    assert result.code == 1, (result.code, result.err)
    assert "Traceback" not in result.err
    [line] = result.err_lines
    assert line.startswith("kvca: error: "), line
    for text in expected:
        assert text in line, line
    assert "api-version" not in line and "/certificates" not in line and "https://" not in line, line
    return line


def test_a_closed_port_reads_refused_with_its_host_and_port_on_one_line(cli_env, tmp_path):
    port = closed_port()
    result = run_subprocess(["list", "--vault", f"https://127.0.0.1:{port}"], cli_env, tmp_path,
                            use_script=True, timeout=60)
    line = assert_one_error_line(result, f"could not reach Key Vault: connection to 127.0.0.1:{port} refused",
                                 "hint: is the port in the vault URL right, and is the vault (locally: the "
                                 "emulator) running there?")
    assert "ServiceRequestError" not in line


def test_debug_shows_the_refused_connection_beneath_kvcas_error(kvca):
    port = closed_port()
    result = kvca("list", "--debug", "--vault", f"https://127.0.0.1:{port}")
    assert result.code == 1
    assert "Traceback" in result.err
    # The OS's own exception, aiohttp's and azure-core's wrappers, then kvca's: the whole chain.
    assert "ConnectionRefusedError: [Errno 111]" in result.err
    assert "aiohttp.client_exceptions.ClientConnectorError" in result.err
    assert "The above exception was the direct cause of the following exception" in result.err
    assert result.err.rstrip().endswith(f"connection to 127.0.0.1:{port} refused (hint: is the port in the vault "
                                        "URL right, and is the vault (locally: the emulator) running there?)")


@pytest.mark.parametrize("bundle", ["unset", "another CA"])
def test_the_emulator_without_its_ca_reads_tls_verification_failed_with_the_bundle_hint(
        kvca, emulator, loopback_ca, monkeypatch, bundle):
    if bundle == "unset":
        monkeypatch.delenv("KVCA_TLS_CA_BUNDLE")  # the system trust store: no kvemulator CA in it
    else:  # a stale ca.pem, e.g. of an emulator started before this one
        monkeypatch.setenv("KVCA_TLS_CA_BUNDLE", str(loopback_ca.pem_path))
    result = kvca("list")
    where = emulator.url.removeprefix("https://")
    assert_one_error_line(result, f"could not reach Key Vault: TLS verification of {where} failed: "
                          "unable to get local issuer certificate", BUNDLE_HINT, "the emulator's ca.pem")


def test_an_expired_server_certificate_reads_certificate_has_expired(kvca, loopback_ca, serve, tmp_path,
                                                                     monkeypatch):
    server = serve("tls", loopback_ca.server_context(tmp_path, ["127.0.0.1"], expired=True))
    monkeypatch.setenv("KVCA_TLS_CA_BUNDLE", str(loopback_ca.pem_path))  # trusted: only its date is wrong
    result = kvca("list", "--vault", server.url)
    assert_one_error_line(result, f"TLS verification of 127.0.0.1:{server.port} failed: certificate has expired",
                          "hint: check the server's certificate and this machine's clock")


@pytest.mark.parametrize("host, words", [
    ("localhost", "hostname mismatch, certificate is not valid for 'localhost'"),
    ("127.0.0.1", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
])
def test_a_trusted_certificate_for_another_name_reads_the_mismatch(kvca, loopback_ca, serve, tmp_path,
                                                                    monkeypatch, host, words):
    server = serve("tls", loopback_ca.server_context(tmp_path, ["vault.other.example"]))
    monkeypatch.setenv("KVCA_TLS_CA_BUNDLE", str(loopback_ca.pem_path))
    result = kvca("list", "--vault", f"https://{host}:{server.port}")
    assert_one_error_line(result, f"TLS verification of {host}:{server.port} failed: {words}",
                          "hint: use the host name the server's certificate was issued for")


def test_a_name_that_does_not_resolve_reads_dns(cli_env, tmp_path):
    # RFC 6761: .invalid never resolves. A subprocess with a timeout: a resolver that hangs fails
    # the test instead of holding the suite.
    result = run_subprocess(["list", "--vault", "https://kvca-test.invalid"], cli_env, tmp_path, timeout=90)
    assert_one_error_line(result, "could not reach Key Vault: DNS lookup of kvca-test.invalid failed: ",
                          "hint: check the host name in the URL")


def test_a_server_that_accepts_and_never_answers_reads_the_connect_timeout(cli_env, serve, tmp_path):
    server = serve("silent")  # takes the TCP connection, never says a word of TLS
    env = {**cli_env, "KVCA_CONNECT_TIMEOUT_SECONDS": "0.5"}
    # azure-core's default would wait 300 s, four times: the subprocess's timeout is the test's bound.
    result = run_subprocess(["list", "--vault", server.url], env, tmp_path, timeout=60)
    assert_one_error_line(result, f"could not reach Key Vault: connecting to 127.0.0.1:{server.port} timed out "
                          "after 0.5 s (TCP connect and TLS handshake)", "KVCA_CONNECT_TIMEOUT_SECONDS")


def test_a_vault_that_takes_the_request_and_never_answers_reads_the_read_timeout(cli_env, loopback_ca, serve,
                                                                                   tmp_path):
    server = serve("tls-silent", loopback_ca.server_context(tmp_path, ["127.0.0.1"]))
    env = {**cli_env, "KVCA_TLS_CA_BUNDLE": str(loopback_ca.pem_path), "KVCA_READ_TIMEOUT_SECONDS": "0.5"}
    result = run_subprocess(["list", "--vault", server.url], env, tmp_path, timeout=60)
    assert_one_error_line(result, f"could not reach Key Vault: 127.0.0.1:{server.port} sent nothing for 0.5 s "
                          "(read timeout)", "KVCA_READ_TIMEOUT_SECONDS")


def test_an_identity_endpoint_that_refuses_reads_no_token_with_the_cause(kvca, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{port}/msi/token")  # a stale endpoint
    result = kvca("list", "--debug")
    assert result.code == 1
    assert "ConnectionRefusedError" in result.err  # the managed identity's own failure, chained
    last = result.err_lines[-1]
    assert last.startswith("kvca: error: certificate list: could not get a token for Key Vault: "
                           f"connection to 127.0.0.1:{port} refused"), last
    assert "IDENTITY_ENDPOINT" in last


def test_a_token_failure_is_one_line_in_a_fresh_process(cli_env, tmp_path):
    """azure-identity logs a multi-line "DefaultAzureCredential failed" WARNING of its own; the
    CLI prints only its one error line, which names the cause."""
    port = closed_port()
    result = run_subprocess(["list"], {**cli_env, "IDENTITY_ENDPOINT": f"http://127.0.0.1:{port}/msi/token"},
                            tmp_path)
    assert_one_error_line(result, "could not get a token for Key Vault: ", f"127.0.0.1:{port} refused")


def test_the_emulator_without_the_challenge_switch_names_the_setting(cli_env, tmp_path):
    """The emulator's 401 challenge names https://vault.azure.net, which is not 127.0.0.1: the SDK
    refuses with a bare ValueError, once read "unexpected ValueError"."""
    env = {k: v for k, v in cli_env.items() if k != "KVCA_VERIFY_CHALLENGE_RESOURCE"}
    result = run_subprocess(["list"], env, tmp_path)
    assert_one_error_line(result, "authentication challenge names another resource than the vault's host",
                          "KVCA_VERIFY_CHALLENGE_RESOURCE=false")


# --- the webhook and the CRL blob store ----------------------------------------------------------

async def _notify(url: str, caplog) -> str:
    notifier = Notifier(url)
    try:
        with caplog.at_level(logging.WARNING, logger="kvca_core.notify"):
            notice = Notice("renewal-failed", "kvca: test notice")
            body = payload(notice, vault="kvemulator", now=dt.datetime.now(dt.timezone.utc))
            assert await notifier.send(notice.event, body) is False
    finally:
        await notifier.close()
    [line] = [r.getMessage() for r in caplog.records if "outcome=failed" in r.getMessage()]
    return line


async def test_a_webhook_that_refuses_logs_the_refused_connection(caplog, monkeypatch):
    monkeypatch.setattr(webhook, "BACKOFF_SECONDS", (0.0, 0.0))
    port = closed_port()
    line = await _notify(f"http://127.0.0.1:{port}/hooks/T0KEN-s3cr3t", caplog)
    assert f"attempts=3 cause=the webhook: connection to 127.0.0.1:{port} refused (hint: " in line
    assert "T0KEN" not in line and "/hooks" not in line


async def test_a_webhook_whose_certificate_is_untrusted_logs_why_tls_failed(caplog, monkeypatch, loopback_ca,
                                                                          serve, tmp_path):
    monkeypatch.setattr(webhook, "BACKOFF_SECONDS", (0.0, 0.0))
    server = serve("tls", loopback_ca.server_context(tmp_path, ["127.0.0.1"]))  # not in the system store
    line = await _notify(f"https://127.0.0.1:{server.port}/hooks/T0KEN-s3cr3t", caplog)
    assert (f"cause=the webhook: TLS verification of 127.0.0.1:{server.port} failed: "
            "unable to get local issuer certificate") in line
    assert "T0KEN" not in line


async def test_a_crl_store_that_refuses_names_blob_storage_its_host_and_port_never_its_query():
    port = closed_port()
    # A SAS in the URL (kvca uses its identity, but a setting may hold one): never in a message.
    store = CrlStore(f"https://127.0.0.1:{port}/devstoreaccount1/crl?sv=2024-01-01&sig=S3CR3T",
                     AzureNamedKeyCredential("devstoreaccount1", "a2V5"))
    try:
        with pytest.raises(UpstreamError) as raised:
            await store.publish("corp", b"not a CRL: never sent", max_age=60, number=1)
    finally:
        await store.close()
    text = str(raised.value)
    assert f"could not reach Blob storage: connection to 127.0.0.1:{port} refused" in text
    assert "S3CR3T" not in text and "sig=" not in text
    assert isinstance(raised.value.__cause__.inner_exception.os_error, ConnectionRefusedError)  # chained

