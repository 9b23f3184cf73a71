"""Every other `kvca` command against the emulator: output, exit codes and the vault's state;
errors are one line and leave the vault as it was."""

from __future__ import annotations

import json
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from clihelpers import import_exportable_leaf, run_on_a_terminal, run_subprocess, vault_snapshot


def test_request_without_sign_leaves_a_pending_request_that_sign_completes(kvca, kv_clients, corp, emulator):
    emulator.take_events()
    requested = kvca("request", "web", "--dns", "web.corp.internal", "--ca", corp, "--profile", "server-client")
    assert requested.code == 0, requested.err
    assert requested.out.startswith("web: requested")
    # With a topic configured (the emulator's), the request is announced for the app to sign.
    announced = [e for e in emulator.take_events() if e["eventType"] == "Kvca.CertificatePendingRequest"]
    assert [e["data"]["ObjectName"] for e in announced] == ["web"]
    operation = kv_clients.certificates.get_certificate_operation("web")
    assert operation.status == "inProgress" and operation.issuer_name == "Unknown"
    policy = kv_clients.certificates.get_certificate_policy("web")
    assert policy.san_dns_names == ["web.corp.internal"]
    assert set(policy.enhanced_key_usage) == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}

    signed = kvca("sign", "web")
    assert signed.code == 0, signed.err
    assert signed.out.startswith("web: signed, version ")
    cert = kv_clients.certificates.get_certificate("web")
    # The chain choice travels in a tag (the server-client profile's default: with the root).
    # kvca-ca-version: the CA version that signed it (the sweep moves leaves by it after a rotation).
    assert cert.properties.tags == {"kvca-ca": "corp", "kvca-chain": "with-root",
                                    "kvca-ca-version": kv_clients.certificates.get_certificate("corp").properties.version}
    assert cert.cer
    again = kvca("sign", "web")
    assert again.code == 0 and again.out.startswith("web: skipped") and "nothing to sign" in again.out


def test_request_defaults_to_the_only_ca_and_json_reports_the_outcome(kvca, corp):
    result = kvca("--json", "request", "solo", "--dns", "solo.corp.internal", "--sign")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["name"] == "solo" and body["action"] == "issued" and body["serial"]


def test_request_without_ca_is_a_usage_error_unless_the_vault_holds_exactly_one(kvca, kv_clients):
    none = kvca("request", "solo", "--dns", "solo.corp.internal")
    assert none.code == 2 and none.err_lines == [
        "kvca: error: request: the vault holds no CA; create or import one first (`kvca ca create`)"]
    for name in ("corp", "other"):
        assert kvca("ca", "create", name, "--subject", f"CN={name} CA").code == 0
    before = vault_snapshot(kv_clients)
    several = kvca("request", "solo", "--dns", "solo.corp.internal")
    assert several.code == 2 and several.err_lines == [
        "kvca: error: request: the vault holds 2 CAs (corp, other); choose one with --ca"]
    assert vault_snapshot(kv_clients) == before


def test_sweep_dry_run_changes_nothing_then_sweep_signs_and_summarises(kvca, kv_clients, corp):
    for name in ("a", "b"):
        assert kvca("request", name, "--dns", f"{name}.corp.internal", "--ca", corp).code == 0
    before = vault_snapshot(kv_clients)
    dry = kvca("sweep", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.splitlines()[0] == ("dry run, nothing changed: sweep: scanned 4, managed 2, signed 2, "
                                       "renewed 0, skipped 0, failed 0")
    assert vault_snapshot(kv_clients) == before

    done = kvca("--json", "sweep")
    assert done.code == 0, done.err
    summary = json.loads(done.out)
    assert (summary["managed"], summary["signed"], summary["failed"]) == (2, 2, 0)
    for name in ("a", "b"):
        assert kv_clients.certificates.get_certificate(name).cer


def test_list_expiring_within_and_show(kvca, corp, emulator):
    for name, months in (("short", 1), ("long", 12)):
        assert kvca("request", name, "--dns", f"{name}.corp.internal", "--ca", corp, "--months", str(months),
                    "--sign").code == 0
    soon = kvca("list", "--expiring-within", "40")
    assert soon.code == 0
    names = [line.split()[0] for line in soon.out.splitlines()[1:]]
    assert names == ["short"]
    everything = json.loads(kvca("--json", "list").out)["certificates"]
    assert [item["name"] for item in everything] == ["short", "long"]  # soonest expiry first
    assert everything[0]["state"] == "valid" and everything[0]["ca"] == "corp"

    shown = kvca("show", "long")
    assert shown.code == 0
    lines = dict(line.split(":", 1) for line in shown.out.splitlines())
    assert lines["subject"].strip() == "CN=long.corp.internal"
    assert lines["SANs"].strip() == "long.corp.internal"
    assert lines["chain"].strip() == "CN=long.corp.internal <- CN=Corp CA <- CN=Corp CA Root"
    assert lines["tags"].strip().startswith("kvca-ca=corp, kvca-ca-version=") and lines["managed"].strip() == "yes"
    assert lines["tags"].strip().endswith(", kvca-chain=with-root")
    assert len(lines["SHA-256"].strip()) == 64
    body = json.loads(kvca("--json", "show", "long").out)
    assert body["sha256"] == lines["SHA-256"].strip() and body["sans"] == ["long.corp.internal"]


@pytest.mark.parametrize("fmt", ["pem", "pfx"])
def test_download_writes_mode_0600_and_warns_about_the_private_key(kvca, kv_clients, tmp_path, fmt):
    cert = import_exportable_leaf(kv_clients, "portal")
    out = tmp_path / f"portal.{fmt}"
    result = kvca("download", "portal", "--out", str(out), "--format", fmt)
    assert result.code == 0, result.err
    assert "contains the private key of 'portal'" in result.err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = out.read_bytes()
    if fmt == "pem":
        assert data.startswith(b"-----BEGIN PRIVATE" + b" KEY-----")
        key = serialization.load_pem_private_key(data, None)
        assert x509.load_pem_x509_certificates(data) == [cert]
    else:
        key, loaded, _ = pkcs12.load_key_and_certificates(data, None)
        assert loaded == cert
    assert key.public_key() == cert.public_key()
    # An existing file is not overwritten without --force.
    again = kvca("download", "portal", "--out", str(out), "--format", fmt)
    assert again.code == 2 and "exists; give --force" in again.err
    assert kvca("download", "portal", "--out", str(out), "--format", fmt, "--force").code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_download_of_a_non_exportable_certificate_fails_and_writes_nothing(kvca, corp, tmp_path):
    assert kvca("request", "api", "--dns", "api.corp.internal", "--ca", corp, "--no-exportable",
                "--sign").code == 0
    for name in ("api", "corp"):
        result = kvca("download", name, "--out", str(tmp_path / f"{name}.pem"))
        assert result.code == 1
        assert result.err_lines == [f"kvca: error: certificate '{name}': the certificate's key is not exportable, so its "
                                    "secret holds no private key (hint: only certificates created with an "
                                    "exportable key can be downloaded)"]
        assert not (tmp_path / f"{name}.pem").exists()


def test_unknown_ca_or_certificate_fails_in_one_line_and_leaves_the_vault_unchanged(kvca, kv_clients, corp,
                                                                                    tmp_path):
    before = vault_snapshot(kv_clients)
    for argv, named in ((["request", "x", "--dns", "x.corp.internal", "--ca", "nope", "--sign"], "CA 'nope'"),
                        (["ca", "show", "nope"], "CA 'nope'"), (["export-chain", "nope"], "CA 'nope'"),
                        (["sign", "nope"], "certificate 'nope'"), (["renew", "nope"], "certificate 'nope'"),
                        (["show", "nope"], "certificate 'nope'"),
                        (["download", "nope", "--out", str(tmp_path / "x.pem")], "certificate 'nope'"),
                        (["ca", "show", "corp-root"], "CA 'corp-root'")):
        result = kvca(*argv)
        assert result.code == 1, argv
        assert len(result.err_lines) == 1 and named in result.err, (argv, result.err)
        assert "Traceback" not in result.err
    assert vault_snapshot(kv_clients) == before
    assert not (tmp_path / "x.pem").exists()


def test_name_outside_the_issuance_policy_is_refused_before_anything_is_created(kvca, kv_clients, corp,
                                                                                 monkeypatch):
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", json.dumps({"allowed_domains": ["corp.internal"]}))
    before = vault_snapshot(kv_clients)
    result = kvca("request", "evil", "--dns", "www.example.com", "--ca", corp, "--sign")
    assert result.code == 1
    assert len(result.err_lines) == 1
    assert "'www.example.com'" in result.err and "corp.internal" in result.err
    assert vault_snapshot(kv_clients) == before


def test_name_outside_the_cas_name_constraints_is_refused_before_anything_is_created(kvca, kv_clients, corp):
    before = vault_snapshot(kv_clients)
    result = kvca("request", "evil", "--dns", "www.example.com", "--ca", corp, "--sign")
    assert result.code == 1
    assert len(result.err_lines) == 1
    assert "DNS name 'www.example.com' is outside the name constraints of CA 'CN=Corp CA' (permitted: " \
           "corp.internal)" in result.err
    assert vault_snapshot(kv_clients) == before


def test_ip_address_sans_are_refused_when_the_cas_policy_does_not_allow_them(kvca, kv_clients, corp):
    before = vault_snapshot(kv_clients)
    result = kvca("request", "api", "--dns", "api.corp.internal", "--ip", "10.0.0.1", "--ca", corp)
    assert result.code == 1
    assert "IP address SAN '10.0.0.1' is not allowed by this CA's policy (allow_ip is false)" in result.err
    assert vault_snapshot(kv_clients) == before


def test_ip_address_sans_are_issued_and_kept_across_renewals_when_the_policy_allows_them(kvca, kv_clients, corp):
    assert kvca("ca", "policy", "set", corp, "--set", "allow_ip=true").code == 0
    result = kvca("--json", "request", "broker", "--dns", "broker.corp.internal", "--ip", "10.0.0.1", "fd00::7",
                  "--ca", corp, "--sign")
    assert result.code == 0, result.err
    assert kv_clients.certificates.get_certificate("broker").properties.tags["kvca-ips"] == "10.0.0.1 fd00::7"
    renewed = kvca("--json", "renew", "broker")
    assert renewed.code == 0, renewed.err
    leaf = x509.load_der_x509_certificate(kv_clients.certificates.get_certificate("broker").cer)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(map(str, sans.get_values_for_type(x509.IPAddress))) == ["10.0.0.1", "fd00::7"]
    assert kvca("request", "bad-ip", "--dns", "b.corp.internal", "--ip", "10.0.0.0/8", "--ca", corp).code == 2


def test_a_root_named_as_the_issuing_ca_is_refused(kvca, kv_clients, corp):
    before = vault_snapshot(kv_clients)
    result = kvca("request", "api", "--dns", "api.corp.internal", "--ca", f"{corp}-root", "--sign")
    assert result.code == 1
    assert f"CA '{corp}-root': is a root CA" in result.err
    assert vault_snapshot(kv_clients) == before


def test_renew_of_a_ca_certificate_is_refused(kvca, corp):
    result = kvca("renew", "corp")
    assert result.code == 1 and "is a CA certificate" in result.err


def test_renew_if_due_leaves_a_fresh_certificate_alone(kvca, kv_clients, corp):
    assert kvca("request", "api", "--dns", "api.corp.internal", "--ca", corp, "--sign").code == 0
    result = kvca("renew", "api", "--if-due")
    assert result.code == 0 and result.out.startswith("api: skipped") and "not due" in result.out
    assert len(list(kv_clients.certificates.list_properties_of_certificate_versions("api"))) == 1


def test_sweep_with_a_failure_exits_1_and_names_it(kvca, kv_clients, corp):
    from azure.keyvault.certificates import CertificatePolicy

    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=ghost.corp.internal")
    kv_clients.certificates.begin_create_certificate("ghost", policy, tags={"kvca-ca": "nope"})
    assert kvca("request", "fine", "--dns", "fine.corp.internal", "--ca", corp).code == 0
    result = kvca("sweep")
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0] == "sweep: scanned 4, managed 2, signed 1, renewed 0, skipped 0, failed 1"
    assert "  fine: signed (signed by CA 'corp')" in lines
    assert any(line.startswith("  ghost: failed (CA 'nope': no CA certificate of this name") for line in lines)


def test_missing_vault_url_is_a_usage_error(kvca, monkeypatch):
    monkeypatch.delenv("KVCA_VAULT_URL")
    result = kvca("ca", "list")
    assert result.code == 2
    assert result.err_lines == ["kvca: error: settings: no vault URL: give --vault URL or set KVCA_VAULT_URL "
                                "(hint: e.g. --vault https://myvault.vault.azure.net)"]


def test_vault_option_must_be_https(kvca):
    result = kvca("--vault", "http://myvault.vault.azure.net", "ca", "list")
    assert result.code == 2
    assert result.err_lines == ["kvca: error: --vault 'http://myvault.vault.azure.net' must be an https:// URL "
                                "(e.g. https://myvault.vault.azure.net)"]


def test_vault_option_overrides_the_environment(kvca, cli_env, corp, monkeypatch):
    monkeypatch.setenv("KVCA_VAULT_URL", "https://elsewhere.vault.azure.net")
    result = kvca("ca", "list", "--vault", cli_env["KVCA_VAULT_URL"])
    assert result.code == 0 and result.out.startswith("corp  CN=Corp CA")


def test_debug_prints_the_traceback_and_still_ends_with_one_error_line(kvca):
    result = kvca("--debug", "ca", "show", "nope")
    assert result.code == 1
    assert "Traceback (most recent call last)" in result.err
    assert result.err_lines[-1].startswith("kvca: error: ")


def test_json_errors_are_machine_readable(kvca):
    result = kvca("--json", "ca", "show", "nope")
    assert result.code == 1
    assert json.loads(result.out) == {"schema_version": 1, "object": "error", "error": "NotFound", "exit_code": 1,
                                      "message": "CA 'nope': no CA of this name in the vault "
                                                 "(hint: `kvca ca list` shows the CAs)"}


def test_console_script_and_module_run_in_a_fresh_process(cli_env, corp, tmp_path):
    help_text = run_subprocess(["--help"], cli_env, tmp_path, use_script=True)
    assert help_text.code == 0 and "export-chain" in help_text.out
    listed = run_subprocess(["--json", "ca", "list"], cli_env, tmp_path, use_script=True)
    assert listed.code == 0, listed.err
    assert [ca["name"] for ca in json.loads(listed.out)["cas"]] == ["corp"]
    usage = run_subprocess(["request"], cli_env, tmp_path)
    assert usage.code == 2 and usage.err.strip().startswith("kvca: error: kvca request: the following")
    no_vault = run_subprocess(["ca", "list"], {}, tmp_path)
    assert no_vault.code == 2 and "no vault URL" in no_vault.err
    # A refusal is one line on stderr, not the operation's log lines as well.
    refused = run_subprocess(["request", "evil", "--dns", "www.example.com", "--ca", corp, "--sign"], cli_env,
                             tmp_path)
    assert refused.code == 1 and len(refused.err_lines) == 1, refused.err
    assert refused.err_lines[0].startswith("kvca: error: certificate 'evil': check-names: DNS name")


def test_list_is_coloured_by_urgency_and_sweep_shows_progress_on_a_terminal(kvca, cli_env, corp, tmp_path):
    assert kvca("request", "soon", "--dns", "soon.corp.internal", "--ca", corp, "--months", "1",
                "--sign").code == 0
    assert kvca("request", "later", "--dns", "later.corp.internal", "--ca", corp, "--sign").code == 0
    code, text = run_on_a_terminal(["list"], cli_env, tmp_path)
    assert code == 0, text
    assert "\x1b[" in text  # ANSI colour
    later_line = next(line for line in text.splitlines() if "later.corp.internal" in line)
    soon_line = next(line for line in text.splitlines() if "soon.corp.internal" in line)
    assert "\x1b[32m" in later_line  # green: a year left
    assert "\x1b[32m" not in soon_line and "\x1b[33m" in soon_line  # yellow: 30 days or fewer left
    code, text = run_on_a_terminal(["sweep"], cli_env, tmp_path)
    assert code == 0, text
    assert "sweep \x1b[" in text and "\u2501" in text  # rich's progress bar, drawn on the terminal
    assert "sweep: scanned 4, managed 2" in text  # and the summary at the end


@pytest.mark.parametrize("state, days_left, style", [
    ("valid", 200, "green"),
    ("valid", 30, "yellow"),  # inside Key Vault's NearExpiry window
    ("due", 45, "yellow"),  # a short-lived certificate past two thirds of its life
    ("valid", 7, "red"),
    ("expired", -2, "bold red"),
    ("disabled", 100, "bold red"),
    ("pending", None, "cyan"),
])
def test_list_colours_follow_urgency(state, days_left, style):
    from kvca_core.cli import urgency_style
    from kvca_core.operations import CertificateInfo

    info = CertificateInfo(name="x", subject="", sans=(), ca="corp", not_before=None, not_after=None,
                           days_left=days_left, state=state)
    assert urgency_style(info) == style
