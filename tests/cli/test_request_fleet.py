"""`kvca request --from FILE`: fleets from CSV or JSON lines. A bad file is exit 2 naming the line
and the field, with the vault unchanged; a good one is issued within Key Vault's create limit,
one JSON result per line with --json; a re-run resumes (skips what is issued, retries the rest)."""

from __future__ import annotations

import json
import os

import pytest
from cryptography import x509

from clihelpers import import_exportable_leaf, run_on_a_terminal, run_subprocess, vault_snapshot

# Each line is an `outcome` document of the JSON contract (kvca_core/jsonshape.py).
OUTCOME_KEYS = {"schema_version", "object", "name", "action", "version", "serial", "reason", "not_after", "warnings"}


def _devices_csv(path, names):
    rows = ["name,dns_names,profile,uris"]
    rows += [f"{n},{n}.fleet.example,client,spiffe://fleet.example/{n}" for n in names]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def fleet(kvca, monkeypatch):
    """A CA for devices: no name constraints; its policy allows URI SANs and device-ID subjects."""
    monkeypatch.setenv("KVCA_ISSUANCE_POLICY", json.dumps({"fleet": {"allow_uri": True, "allow_email": True}, "*": {}}))
    assert kvca("ca", "create", "fleet", "--subject", "CN=Fleet CA").code == 0
    return "fleet"


@pytest.mark.parametrize("name, content, message", [
    ("bad-column.csv", "name,subjekt\nd1,CN=d1\n",
     "{f} line 1: column 'subjekt' is not a request field (known: name, ca, dns_names, ip_addresses, subject, "
     "profile, key, validity_months, content_type"),
    ("no-name.csv", "subject,profile\nCN=d1,client\n", "{f} line 1: the header row has no 'name' column"),
    ("bad-bool.csv", "name,subject,exportable\nd1,CN=d1,true\nd2,CN=d2,maybe\n",
     "{f} line 3: field 'exportable': 'maybe' is not true or false"),
    ("bad-months.csv", "name,subject,validity_months\nd1,CN=d1,twelve\n",
     "{f} line 2: field 'validity_months': 'twelve' is not a whole number"),
    ("bad-key.csv", "name,subject,key\nd1,CN=d1,rsa-1024\n", "{f} line 2: field 'key': key type 'rsa-1024' is not"),
    ("bad-profile.csv", "name,subject,profile\nd1,CN=d1,device\n",
     "{f} line 2: field 'profile': 'device' is not one of server, client, server-client"),
    ("bad-subject.csv", "name,subject\nd1,device-1\n", "{f} line 2: field 'subject': "),
    ("bad-name.csv", "name,subject\nd1,CN=d1\nd_2,CN=d2\n",
     "{f} line 3: field 'name': certificate name 'd_2' is not a Key Vault object name (1-127 letters, digits and "
     "hyphens)"),
    ("duplicate.csv", "name,subject\nd1,CN=d1\n\nd1,CN=d1\n", "{f} line 4: field 'name': 'd1' is already requested at {f} line 2"),
    ("extra-cells.csv", "name,subject\nd1,CN=d1,x\n", "{f} line 2: 3 cells for 2 columns"),
    ("no-names.csv", "name,profile\nd1,client\n", "{f} line 2: give a subject, or at least one DNS name or email"),
    # Name syntax needs no policy: a malformed name on any row stops the file before its first row.
    ("bad-dns.csv", "name,dns_names\nd1,d1.fleet.example\nd2,*.*.fleet.example\n",
     "{f} line 3: field 'dns_names': DNS name '*.*.fleet.example': a wildcard may only be the leftmost"),
    ("bad-uri.csv", "name,subject,uris\nd1,CN=d1,spiffe://fleet.example:99999/d1\n", "{f} line 2: field 'uris': "),
    ("empty.csv", "name,subject\n", "{f}: no requests in the file"),
    ("not-json.jsonl", '{"name": "d1", "subject": "CN=d1"}\n{"name": \n', "{f} line 2: not a JSON object"),
    ("list.jsonl", '["d1"]\n', "{f} line 1: a JSON line must be an object, got list"),
    ("unknown.jsonl", '{"name": "d1", "subject": "CN=d1", "sign": true}\n',
     "{f} line 1: unknown field(s) 'sign'"),
    ("wrong-type.jsonl", '{"name": "d1", "subject": "CN=d1", "dns_names": "d1.fleet"}\n',
     "{f} line 1: field 'dns_names' must be a list of strings"),
])
def test_a_bad_fleet_file_is_exit_2_naming_the_line_and_field_and_creates_nothing(kvca, kv_clients, fleet,
                                                                                   tmp_path, name, content,
                                                                                   message):
    path = tmp_path / name
    path.write_text(content)
    before = vault_snapshot(kv_clients)
    result = kvca("request", "--from", str(path), "--sign")
    assert result.code == 2, result.err
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("kvca: error: " + message.format(f=path)), result.err
    assert vault_snapshot(kv_clients) == before


def test_name_with_from_and_per_row_options_on_the_command_line_are_usage_errors(kvca, fleet, tmp_path):
    path = _devices_csv(tmp_path / "d.csv", ["d1"])
    both = kvca("request", "d1", "--from", str(path))
    assert both.code == 2 and both.err_lines == ["kvca: error: request: give NAME or --from FILE, not both "
                                                 "(got 'd1')"]
    dns = kvca("request", "--from", str(path), "--dns", "x.fleet")
    assert dns.code == 2 and "--dns belongs in the file" in dns.err
    missing = kvca("request", "--from", str(tmp_path / "nope.csv"))
    assert missing.code == 2 and missing.err_lines == [f"kvca: error: input file '{tmp_path / 'nope.csv'}' does "
                                                       f"not exist"]


def test_csv_fleet_is_issued_and_json_prints_one_result_per_line_in_file_order(kvca, kv_clients, fleet, tmp_path):
    names = [f"device-{i:03d}" for i in range(1, 8)]
    path = _devices_csv(tmp_path / "devices.csv", names)
    result = kvca("--json", "request", "--from", str(path), "--sign")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == len(names)
    bodies = [json.loads(line) for line in lines]
    assert [b["name"] for b in bodies] == names
    assert all(set(b) == OUTCOME_KEYS and b["action"] == "issued" and b["serial"] for b in bodies)
    for n in names:
        cert = x509.load_der_x509_certificate(kv_clients.certificates.get_certificate(n).cer)
        assert cert.subject.rfc4514_string() == f"CN={n}.fleet.example"
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [f"{n}.fleet.example"]
        assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://fleet.example/{n}"]


def test_json_lines_file_with_command_line_defaults(kvca, kv_clients, fleet, tmp_path):
    path = tmp_path / "fleet.jsonl"
    path.write_text("\n".join([
        json.dumps({"name": "dev-a", "dns_names": ["dev-a.fleet.example"], "emails": ["dev-a@fleet.example"]}),
        "",
        json.dumps({"name": "dev-b", "dns_names": ["dev-b.fleet.example"], "validity_months": 3,
                    "profile": "client"}),
    ]) + "\n")
    result = kvca("request", "--from", str(path), "--profile", "client", "--ca", fleet, "--sign")
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == "request: 2 rows: issued 2"
    policy = kv_clients.certificates.get_certificate_policy("dev-a")
    assert policy.enhanced_key_usage == ["1.3.6.1.5.5.7.3.2"] and policy.san_emails == ["dev-a@fleet.example"]
    assert kv_clients.certificates.get_certificate_policy("dev-b").validity_in_months == 3


def test_a_rerun_skips_what_is_issued_and_finishes_what_was_left_pending(kvca, kv_clients, fleet, tmp_path):
    path = tmp_path / "devices.csv"
    # d3's wildcard over a public suffix is well-formed, but the CA's rules refuse it: the whole file
    # is checked against them before the first row is created.
    path.write_text("name,profile,dns_names\nd1,client,d1.fleet.example\nd2,client,d2.fleet.example\n"
                    "d3,client,*.co.uk\n")
    before = vault_snapshot(kv_clients)
    refused = kvca("request", "--from", str(path), "--sign")
    assert refused.code == 1 and f"{path} line 4 (certificate 'd3')" in refused.err, refused.err
    assert vault_snapshot(kv_clients) == before
    path.write_text("name,profile,dns_names\nd1,client,d1.fleet.example\nd2,client,d2.fleet.example\n")
    first = kvca("--json", "request", "--from", str(path), "--sign")
    assert first.code == 0, first.err
    issued = {n: kv_clients.certificates.get_certificate(n).properties.version for n in ("d1", "d2")}
    # An interrupted run leaves a request pending: the re-run signs it instead of refusing it.
    assert kvca("request", "d4", "--dns", "d4.fleet.example", "--profile", "client", "--ca", fleet).code == 0
    path.write_text("name,profile,dns_names\nd1,client,d1.fleet.example\nd2,client,d2.fleet.example\n"
                    "d3,client,d3.fleet.example\nd4,client,d4.fleet.example\n")
    second = kvca("--json", "request", "--from", str(path), "--sign")
    assert second.code == 0, second.err
    bodies = [json.loads(line) for line in second.out.splitlines()]
    assert [(b["name"], b["action"]) for b in bodies] == [("d1", "skipped"), ("d2", "skipped"), ("d3", "issued"),
                                                          ("d4", "issued")]
    assert "already issued" in bodies[0]["reason"]
    # Nothing already issued got a second version.
    for n, version in issued.items():
        versions = [v for v in kv_clients.certificates.list_properties_of_certificate_versions(n)]
        assert [v.version for v in versions] == [version]


def test_a_row_whose_name_is_taken_by_a_different_certificate_fails_instead_of_being_skipped(kvca, fleet,
                                                                                             tmp_path):
    assert kvca("request", "d1", "--dns", "other.fleet.example", "--profile", "client", "--ca", fleet,
                "--sign").code == 0
    path = _devices_csv(tmp_path / "devices.csv", ["d1", "d2"])
    result = kvca("--json", "request", "--from", str(path), "--sign")
    assert result.code == 1
    bodies = {json.loads(line)["name"]: json.loads(line) for line in result.out.splitlines()}
    assert bodies["d1"]["action"] == "failed" and bodies["d2"]["action"] == "issued"
    assert "already exists in the vault with a different request" in bodies["d1"]["reason"]


def test_a_row_whose_name_is_held_by_another_ca_or_an_unmanaged_certificate_fails_instead_of_being_skipped(
        kvca, kv_clients, fleet, tmp_path):
    assert kvca("ca", "create", "other", "--subject", "CN=Other CA").code == 0
    assert kvca("request", "d1", "--dns", "d1.fleet.example", "--profile", "client", "--ca", "other",
                "--sign").code == 0
    import_exportable_leaf(kv_clients, "d2")  # not kvca's: no kvca-ca tag
    before = vault_snapshot(kv_clients)
    path = _devices_csv(tmp_path / "devices.csv", ["d1", "d2", "d3"])
    result = kvca("--json", "request", "--from", str(path), "--ca", fleet, "--sign")
    assert result.code == 1
    bodies = {json.loads(line)["name"]: json.loads(line) for line in result.out.splitlines()}
    assert {n: b["action"] for n, b in bodies.items()} == {"d1": "failed", "d2": "failed", "d3": "issued"}
    assert "already exists in the vault" in bodies["d1"]["reason"]
    after = vault_snapshot(kv_clients)
    assert {n: after[n] for n in ("d1", "d2")} == {n: before[n] for n in ("d1", "d2")}


def test_json_lines_contract_in_a_fresh_process_and_progress_bar_on_a_terminal(cli_env, fleet, tmp_path):
    cli_env = {**cli_env, "KVCA_ISSUANCE_POLICY": os.environ["KVCA_ISSUANCE_POLICY"]}
    path = _devices_csv(tmp_path / "devices.csv", ["p1", "p2", "p3"])
    result = run_subprocess(["--json", "request", "--from", str(path), "--sign"], cli_env, tmp_path)
    assert result.code == 0, result.err
    assert [set(json.loads(line)) for line in result.out.splitlines()] == [OUTCOME_KEYS] * 3
    assert result.err == ""
    more = _devices_csv(tmp_path / "more.csv", ["p4", "p5"])
    code, text = run_on_a_terminal(["request", "--from", str(more), "--sign"], cli_env, tmp_path)
    assert code == 0, text
    assert "\u2501" in text  # rich's progress bar, drawn on the terminal's stderr
    assert "request: 2 rows: issued 2" in text


def test_request_help_says_how_to_resume(kvca):
    result = kvca("request", "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    assert "Resuming: run the same command again" in text and "--from FILE" in text
