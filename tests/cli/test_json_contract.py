"""The CLI's JSON contract: every `--json` output is a document of
schemas/kvca-v1.schema.json that says what it is (`schema_version`, `object`), carries each
certificate's outcome, and is the shape docs/http-api.md documents (one example of each object there)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clihelpers import vault_snapshot
from contract import SCHEMA_PATH, check, document_objects, parse, parse_lines, schema
from kvca_core import jsonshape

DOC = Path(__file__).resolve().parents[2] / "docs" / "http-api.md"
# The documents only the HTTP API answers.
HTTP_ONLY = {"batch", "health"}


def test_the_schema_jsonshape_and_the_doc_name_the_same_objects():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema())
    assert document_objects() == set(jsonshape.OBJECTS)
    section = _json_section()
    for kind in jsonshape.OBJECTS:
        assert f"`{kind}`" in section, f"docs/http-api.md's JSON section does not document {kind!r}"
    assert f"schemas/{SCHEMA_PATH.name}" in section


def _json_section() -> str:
    text = DOC.read_text()
    start = text.index("## JSON output")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def test_every_json_example_in_the_doc_is_a_valid_document():
    blocks = re.findall(r"```json\n(.*?)```", _json_section(), re.S)
    documents = []
    for block in blocks:
        for line in block.splitlines():  # one document a line (the JSON-lines form)
            if line.strip():
                documents.append(check(json.loads(line)))
    # An example of each object type (what a reader copies from), so none can drift from the schema.
    assert {d["object"] for d in documents} == set(jsonshape.OBJECTS)


def test_every_command_prints_a_document_of_the_contract(kvca, step_ca, tmp_path, emulator, monkeypatch):
    seen: dict[str, dict] = {}

    def run(*argv: str, code: int = 0) -> dict:
        result = kvca("--json", *argv)
        assert result.code == code, (argv, result.err)
        body = parse(result.out)
        seen.setdefault(body["object"], body)
        return body

    monkeypatch.setenv("KVCA_OCSP_URL", "http://ocsp.corp.internal")
    created = run("ca", "create", "corp", "--subject", "CN=Corp CA", "--permitted-dns", "corp.internal")
    assert created["action"] == "created" and created["name"] == "corp" and created["root_subject"] == "CN=Corp CA Root"
    imported = run("ca", "import", "step", "--cert", str(step_ca.intermediate_crt), "--key",
                   str(step_ca.intermediate_key), "--chain", str(step_ca.root_crt), "--password-file",
                   str(step_ca.password_file), "--policy", '{"allowed_domains": ["step.internal"]}')
    assert imported["action"] == "imported" and imported["origin"] == "imported"
    shown_ca = run("ca", "show", "corp")
    assert shown_ca["name"] == "corp" and "action" not in shown_ca  # showing is not creating
    assert [c["name"] for c in run("ca", "list")["cas"]] == ["corp", "step"]
    policy = run("ca", "policy", "set", "corp", "--set", "max_validity_days=200")
    assert policy["source"] == "stored" and policy["policy"]["max_validity_days"] == 200
    assert run("ca", "policy", "show", "corp") == policy

    issued = run("request", "api", "--dns", "api.corp.internal", "--ca", "corp", "--sign")
    assert issued["action"] == "issued" and issued["serial"] and issued["version"]
    requested = run("request", "web", "--dns", "web.corp.internal", "--ca", "corp")
    assert requested["action"] == "requested" and requested["serial"] is None
    assert run("sign", "web")["action"] == "signed"
    assert run("renew", "api", "--force")["action"] == "renewed"
    run("request", "gone", "--dns", "gone.corp.internal", "--ca", "corp")
    assert run("cancel", "gone")["action"] == "cancelled"
    swept = run("sweep")
    # Each managed certificate's outcome; `gone` keeps the withdrawn request's empty version.
    assert {o["name"]: o["action"] for o in swept["outcomes"]} == {"api": "skipped", "web": "skipped",
                                                                   "gone": "skipped"}
    listed = run("list")
    assert sorted(c["name"] for c in listed["certificates"]) == ["api", "gone", "web"]
    shown = run("show", "api")
    assert shown["name"] == "api" and shown["managed"] is True and shown["tags"]["kvca-ca"] == "corp"
    assert run("export-chain", "corp", "--which", "both")["certificates"] == 2
    assert run("export-chain", "corp", "--which", "root", "--format", "der", "--out",
               str(tmp_path / "root.cer"))["file"] == str(tmp_path / "root.cer")
    assert run("download", "api", "--out", str(tmp_path / "api.pem"))["mode"] == "0600"
    revoked = run("revoke", "web", "--reason", "superseded")
    assert revoked["action"] == "revoked" and revoked["ca"] == "corp"
    assert run("crl", "corp", "--out", str(tmp_path / "corp.crl"))["entries"] == 1
    imported = run("ledger", "import")  # everything kvca signed is in the ledger already: nothing new
    assert imported["certificates_seen"] >= 3 and imported["certificates_recorded"] == 0
    ledger = run("ledger", "list", "--ca", "corp")
    assert {e["name"]: e["state"] for e in ledger["certificates"] if e["name"] == "web"} == {"web": "revoked"}
    assert run("ledger", "show", "--serial", revoked["serial"])["state"] == "revoked"
    exported = run("ledger", "export", "--out", str(tmp_path / "ledger.csv"))
    assert exported["certificates"] == len(ledger["certificates"])
    rotated = run("ca", "rotate", "corp")
    assert rotated["action"] == "rotated" and rotated["previous_version"] != rotated["ca"]["version"]
    assert run("ca", "rotate", "corp")["action"] == "already-rotated"
    # A device's own key: its CSR signed once the CA's policy takes external CSRs.
    run("ca", "policy", "set", "corp", "--set", "external_csrs=true")
    device_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "device.csr").write_bytes(
        x509.CertificateSigningRequestBuilder().subject_name(x509.Name.from_rfc4514_string("CN=dev.corp.internal"))
        .sign(device_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    signed = run("sign-csr", "corp", "--csr", str(tmp_path / "device.csr"), "--out", str(tmp_path / "dev.pem"))
    assert signed["action"] == "signed" and signed["name"] == "dev.corp.internal"
    (tmp_path / "devices.csv").write_text("device_id\ndev-1\n")
    codes = run("enroll-codes", "corp", "--from", str(tmp_path / "devices.csv"), "--out", str(tmp_path / "codes.csv"))
    assert codes["devices"] == 1 and codes["mode"] == "0600"
    failed = run("show", "nope", code=1)
    assert failed["error"] == "NotFound" and failed["exit_code"] == 1 and "'nope'" in failed["message"]

    # Every object the command line prints was seen, each valid against its schema.
    assert set(seen) == set(jsonshape.OBJECTS) - HTTP_ONLY


def test_sweep_dry_run_json_names_what_would_be_signed_and_renewed(kvca, kv_clients, corp, emulator):
    assert kvca("request", "due", "--dns", "due.corp.internal", "--ca", corp, "--months", "12", "--sign").code == 0
    emulator.clock.advance(days=340)  # inside the last 30 days of its 12 months
    assert kvca("request", "fresh", "--dns", "fresh.corp.internal", "--ca", corp, "--sign").code == 0
    assert kvca("request", "waiting", "--dns", "waiting.corp.internal", "--ca", corp).code == 0
    before = vault_snapshot(kv_clients)
    result = kvca("--json", "sweep", "--dry-run")
    assert result.code == 0, result.err
    summary = parse(result.out)
    assert summary["object"] == "sweep" and summary["dry_run"] is True
    actions = {o["name"]: o["action"] for o in summary["outcomes"]}
    assert actions == {"due": "would-renew", "fresh": "skipped", "waiting": "would-sign"}
    reasons = {o["name"]: o["reason"] for o in summary["outcomes"]}
    assert "expires" in reasons["due"] or "due" in reasons["due"], reasons["due"]
    assert (summary["signed"], summary["renewed"], summary["skipped"]) == (1, 1, 1)
    assert vault_snapshot(kv_clients) == before  # a dry run changes nothing

    done = parse(kvca("--json", "sweep").out)
    by_name = {o["name"]: o for o in done["outcomes"]}
    assert by_name["due"]["action"] == "renewed" and by_name["due"]["serial"]
    assert by_name["waiting"]["action"] == "signed" and by_name["fresh"]["action"] == "skipped"
    again = parse(kvca("--json", "sweep", "--dry-run").out)
    assert {o["action"] for o in again["outcomes"]} == {"skipped"}


def test_a_failed_certificate_in_the_sweep_is_named_with_its_reason_and_exit_1(kvca, kv_clients, corp):
    assert kvca("request", "ok", "--dns", "ok.corp.internal", "--ca", corp).code == 0
    assert kvca("request", "broken", "--dns", "broken.corp.internal", "--ca", corp).code == 0
    # A CA that is gone: the request names it, and nothing can sign it.
    kv_clients.certificates.update_certificate_properties("broken", tags={"kvca-ca": "no-such-ca"})
    result = kvca("--json", "sweep")
    assert result.code == 1
    summary = parse(result.out)
    by_name = {o["name"]: o for o in summary["outcomes"]}
    assert by_name["ok"]["action"] == "signed"
    assert by_name["broken"]["action"] == "failed" and "no-such-ca" in by_name["broken"]["reason"]
    assert summary["failures"] == [{"name": "broken", "reason": by_name["broken"]["reason"]}]


def test_request_from_json_lines_are_outcome_documents(kvca, corp, tmp_path):
    path = tmp_path / "fleet.csv"
    path.write_text("name,dns_names\nd1,d1.corp.internal\nd2,bad..name.corp.internal\n")
    result = kvca("--json", "request", "--from", str(path), "--ca", corp, "--sign")
    # A malformed row is refused before anything is created: one error document, exit 2.
    assert result.code == 2 and "line 3: field 'dns_names'" in result.err, result.err
    assert parse(result.out)["error"] == "InvalidRequest" and parse(result.out)["exit_code"] == 2
    assert kvca("show", "d1").code == 1  # nothing was created
    path.write_text("name,dns_names\nd1,d1.corp.internal\nd2,d2.example.com\n")
    result = kvca("--json", "request", "--from", str(path), "--ca", corp, "--sign")
    assert result.code == 1 and "line 3" in result.err  # d2 is outside the CA's names: checked before any
    assert parse(result.out)["error"] == "PolicyViolation"
    assert kvca("show", "d1").code == 1  # nothing was created
    path.write_text("name,dns_names\nd1,d1.corp.internal\nd2,d2.corp.internal\n")
    result = kvca("--json", "request", "--from", str(path), "--ca", corp, "--sign")
    assert result.code == 0, result.err
    lines = parse_lines(result.out)
    assert [(d["object"], d["name"], d["action"]) for d in lines] == [("outcome", "d1", "issued"),
                                                                      ("outcome", "d2", "issued")]


@pytest.mark.parametrize("argv", [
    ["list", "--expiring-within", "soon"],                      # argparse
    ["show", "not a name"],                                     # a Key Vault name
    ["request", "x", "--dns", "x.corp.internal", "--months", "999"],
])
def test_usage_errors_print_an_error_document_with_exit_code_2(kvca, corp, argv):
    result = kvca("--json", *argv)
    assert result.code == 2, result.err
    body = parse(result.out)
    assert body["exit_code"] == 2 and body["message"] and len(result.err_lines) == 1


def test_output_json_refuses_anything_but_a_document(capsys):
    from kvca_core.cli import Output

    with pytest.raises(TypeError):
        Output(True).json({"name": "api"})  # no schema_version/object: a programming error, caught in tests
    Output(True).json(jsonshape.document("crl", {"ca": "c", "root": False, "file": "f", "entries": 0,
                                                 "next_update": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)}))
    check(json.loads(capsys.readouterr().out))
