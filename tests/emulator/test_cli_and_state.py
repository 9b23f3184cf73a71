"""`python -m kvemulator` (start line, clean SIGINT/SIGTERM) and `--state` persistence."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import ssl
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.keyvault.secrets import SecretClient

from kvemulator import Emulator

LINE = re.compile(r"^kvemulator: vault (https://127\.0\.0\.1:\d+) \(name (\S+)\); TLS CA (\S+)$")
EXPORT = re.compile(r"^export ([A-Z_]+)=(\S+)$")
EXPORTED = ("KVCA_VAULT_URL", "KVCA_VAULT_NAME", "KVCA_TLS_CA_BUNDLE", "KVCA_VERIFY_CHALLENGE_RESOURCE",
            "KVCA_EVENTGRID_TOPIC_ENDPOINT", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "KVCA_LEDGER_TABLE_URL")


def start_cli(tmp_path, *extra: str) -> tuple[subprocess.Popen, re.Match, list[str]]:
    """`python -m kvemulator` on a free port: the process, its first line, its export lines."""
    proc = subprocess.Popen([sys.executable, "-m", "kvemulator", "--port", "0",
                             "--tls-dir", str(tmp_path / "tls"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    match = LINE.match(line)
    exports = [proc.stdout.readline().strip() for _ in EXPORTED] if match else []
    if match is None or [EXPORT.match(e) and EXPORT.match(e).group(1) for e in exports] != list(EXPORTED):
        proc.kill()
        pytest.fail(f"unexpected start lines {[line, *exports]!r}; stderr: {proc.stderr.read()}")
    return proc, match, exports


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_prints_url_and_ca_and_stops_cleanly_on_signal(tmp_path, sig):
    proc, match, _ = start_cli(tmp_path, "--vault-name", "demo-vault")
    try:
        url, name, ca = match.group(1), match.group(2), match.group(3)
        assert name == "demo-vault" and ca == str(tmp_path / "tls" / "ca.pem")
        with CertificateClient(url, _Cred(), connection_verify=ca, verify_challenge_resource=False) as c:
            cert = c.begin_create_certificate("cli", CertificatePolicy(
                issuer_name="Self", subject="CN=cli", key_type="EC")).result()
            assert cert.name == "cli"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip() == "kvemulator: stopped"
    assert "Traceback" not in err


def test_state_file_keeps_the_vault_across_restarts_with_mode_0600(tmp_path):
    state = tmp_path / "vault.json"
    first = Emulator(tls_dir=tmp_path / "tls", state_path=state)
    with first:
        with SecretClient(first.url, first.credential(), **first.client_kwargs()) as secrets, \
                CertificateClient(first.url, first.credential(), **first.client_kwargs()) as certs:
            secrets.set_secret("kept", "value")
            made = certs.begin_create_certificate("kept-cert", CertificatePolicy(
                issuer_name="Self", subject="CN=k", key_type="EC")).result()
            pending = certs.begin_create_certificate("kept-pending", CertificatePolicy(
                issuer_name="Unknown", subject="CN=p", key_type="EC")).result()
        first.clock.advance(days=3)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    second = Emulator(tls_dir=tmp_path / "tls", state_path=state)
    assert second.clock.offset_seconds >= 3 * 86400 - 5
    with second:
        with SecretClient(second.url, second.credential(), **second.client_kwargs()) as secrets, \
                CertificateClient(second.url, second.credential(), **second.client_kwargs()) as certs:
            assert secrets.get_secret("kept").value == "value"
            assert certs.get_certificate("kept-cert").cer == made.cer
            assert certs.get_certificate_operation("kept-pending").csr == pending.csr


def test_cli_with_state_survives_restart(tmp_path):
    state = tmp_path / "cli-state.json"
    proc, match, _ = start_cli(tmp_path, "--state", str(state))
    try:
        url, ca = match.group(1), match.group(3)
        with SecretClient(url, _Cred(), connection_verify=ca, verify_challenge_resource=False) as s:
            s.set_secret("persisted", "yes")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc, match, _ = start_cli(tmp_path, "--state", str(state))
    try:
        url, ca = match.group(1), match.group(3)
        with SecretClient(url, _Cred(), connection_verify=ca, verify_challenge_resource=False) as s:
            assert s.get_secret("persisted").value == "yes"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


@pytest.mark.parametrize("content", ['{"format": 1}', '{"format": 1, "certificates": [{"name": 3}]}',
                                     "[]", "{not json"], ids=["missing-keys", "bad-entry", "list", "not-json"])
def test_unreadable_state_file_is_a_clear_start_error_not_a_traceback(tmp_path, content):
    state = tmp_path / "broken.json"
    state.write_text(content)
    with pytest.raises(ValueError, match="not a readable kvemulator state file"):
        Emulator(tls_dir=tmp_path / "tls", state_path=state)
    proc = subprocess.run([sys.executable, "-m", "kvemulator", "--port", "0", "--tls-dir",
                           str(tmp_path / "tls"), "--state", str(state)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "cannot start" in proc.stderr and "Traceback" not in proc.stderr


def test_state_saves_leave_only_the_state_file_behind(tmp_path):
    state = tmp_path / "vault.json"
    with Emulator(tls_dir=tmp_path / "tls", state_path=state) as em:
        with SecretClient(em.url, em.credential(), **em.client_kwargs()) as secrets:
            for n in range(3):
                secrets.set_secret(f"s{n}", "value")
                em._save_state()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tls", "vault.json"]
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600


class _Cred:
    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken
        return AccessToken("t", 2**31 - 1)


def test_cli_fidelity_flags_set_the_switches(tmp_path):
    proc, match, _ = start_cli(tmp_path, "--no-paging-drops-params", "--current-includes-pending",
                            "--cancel-settle-seconds", "3")
    try:
        ctx = ssl.create_default_context(cafile=match.group(3))
        with urllib.request.urlopen(f"{match.group(1)}/_emulator/fidelity", context=ctx, timeout=30) as resp:
            switches = json.loads(resp.read())
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert switches["paging_drops_params"] is False and switches["current_includes_pending"] is True
    assert switches["cancel_settle_seconds"] == 3.0 and switches["unknown_issuer_events"] is True


def test_cli_refuses_a_negative_fidelity_delay(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kvemulator", "--port", "0", "--tls-dir",
                           str(tmp_path / "tls"), "--soft-delete-settle-seconds", "-1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "soft_delete_settle_seconds" in done.stderr
    assert "Traceback" not in done.stderr


def test_state_file_keeps_withdrawn_versions_settle_times_and_policy_dates(tmp_path):
    state = tmp_path / "vault.json"
    with Emulator(tls_dir=tmp_path / "tls", state_path=state) as first:
        with CertificateClient(first.url, first.credential(), **first.client_kwargs()) as certs:
            certs.begin_create_certificate("left", CertificatePolicy(
                issuer_name="Unknown", subject="CN=l", key_type="EC"))
            certs.delete_certificate_operation("left")
            before = certs.get_certificate("left")
    with Emulator(tls_dir=tmp_path / "tls", state_path=state) as second:
        with CertificateClient(second.url, second.credential(), **second.client_kwargs()) as certs:
            after = certs.get_certificate("left")
    assert after.properties.version == before.properties.version and after.cer is None
    assert after.properties.enabled is False
    assert (after.properties.not_before, after.properties.expires_on) == (
        before.properties.not_before, before.properties.expires_on)


def test_a_second_emulator_on_a_busy_port_leaves_the_running_ones_files_and_clients_alone(tmp_path):
    state = tmp_path / "vault.json"
    with Emulator(tls_dir=tmp_path / "seed-tls", state_path=state) as seed:
        with SecretClient(seed.url, seed.credential(), **seed.client_kwargs()) as secrets:
            secrets.set_secret("kept", "value")
    first, match, _ = start_cli(tmp_path, "--state", str(state))
    try:
        url, ca = match.group(1), match.group(3)
        trusted, saved = Path(ca).read_bytes(), os.stat(state)
        second = subprocess.run([sys.executable, "-m", "kvemulator", "--port", url.rsplit(":", 1)[1],
                                 "--tls-dir", str(tmp_path / "tls"), "--state", str(state)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stderr
        assert "cannot start" in second.stderr and "Traceback" not in second.stderr
        assert Path(ca).read_bytes() == trusted
        assert (os.stat(state).st_ino, os.stat(state).st_mtime_ns) == (saved.st_ino, saved.st_mtime_ns)
        with SecretClient(url, _Cred(), connection_verify=ca, verify_challenge_resource=False) as secrets:
            assert secrets.get_secret("kept").value == "value"  # the first one's clients still trust it
    finally:
        stop(first)


def test_the_printed_exports_pasted_into_a_shell_point_kvca_at_the_emulator(tmp_path):
    """The export lines, as printed, are what `kvca` needs: the vault, its CA, and the
    managed-identity endpoint DefaultAzureCredential gets its token from (a wrong
    IDENTITY_HEADER gets no token, so the endpoint is what let the first run in)."""
    proc, _, exports = start_cli(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVCA_", "IDENTITY_", "AZURE_", "MSI_"))}
    kvca = f"{shlex.quote(sys.executable)} -m kvca_core --json ca list"
    try:
        done = subprocess.run(["bash", "-c", "\n".join([*exports, kvca])], capture_output=True, text=True,
                              timeout=120, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["cas"] == []
        wrong = subprocess.run(["bash", "-c", "\n".join([*exports, "export IDENTITY_HEADER=wrong", kvca])],
                               capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        assert wrong.returncode != 0
    finally:
        stop(proc)
