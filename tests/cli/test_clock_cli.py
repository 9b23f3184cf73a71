"""The issue's user story: a CLI user moves the emulator's clock with its control route and sees
renewal at work. `kvca` runs in real subprocesses, so nothing in this process can point its
clock anywhere: it follows the vault's Date header (kvca_core/clock.py) or nothing."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import urllib.request

from cryptography import x509

from clihelpers import run_subprocess


def _control(emulator, path: str, body: dict | None = None) -> dict:
    """What `curl --cacert ca.pem -X POST https://.../_emulator/clock -d '{...}'` does."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{emulator.url}{path}", data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=str(emulator.ca_path))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def _kvca(env, tmp_path, *argv: str):
    result = run_subprocess(["--json", *argv], env, tmp_path)
    assert result.code == 0, result.err
    return result


def _states(env, tmp_path) -> dict[str, str]:
    return {item["name"]: item["state"] for item in json.loads(_kvca(env, tmp_path, "list").out)["certificates"]}


def test_a_cli_user_moving_the_emulators_clock_sees_the_certificate_due_and_sweep_renews_it(
        kvca, cli_env, corp, kv_clients, emulator, tmp_path):
    assert kvca("request", "api", "--dns", "api.corp.internal", "--ca", corp, "--sign").code == 0
    first = kv_clients.certificates.get_certificate("api")
    not_after = first.properties.expires_on

    # The clock where it is: nothing is due, the sweep renews nothing.
    assert _states(cli_env, tmp_path) == {"api": "valid"}
    assert json.loads(_kvca(cli_env, tmp_path, "sweep").out)["renewed"] == 0

    # Ten days before expiry, moved through the control API as a user would with curl.
    days = (not_after - dt.datetime.now(dt.timezone.utc)).days - 10
    moved = _control(emulator, "/_emulator/clock", {"advance": {"days": days}})
    assert moved["offset_seconds"] >= days * 86400
    assert _states(cli_env, tmp_path) == {"api": "due"}
    swept = json.loads(_kvca(cli_env, tmp_path, "sweep").out)
    assert swept["renewed"] == 1, swept

    versions = [v for v in kv_clients.certificates.list_properties_of_certificate_versions("api")]
    assert len(versions) == 2
    renewed = x509.load_der_x509_certificate(bytes(kv_clients.certificates.get_certificate("api").cer))
    vault_now = emulator.clock.now()
    # Signed on the vault's clock (notBefore backdated 5 minutes), not this machine's.
    assert vault_now - dt.timedelta(minutes=6) <= renewed.not_valid_before_utc <= vault_now
    assert renewed.not_valid_after_utc > not_after
    assert _states(cli_env, tmp_path) == {"api": "valid"}
