"""`kvca ca rotate` from the command line: a new intermediate key under the same root, what
`kvca list`, `kvca show` and `kvca sweep --dry-run` say of the leaves waiting to move, the sweep
moving them (each new chain checked with `openssl verify`), and the refusals."""

from __future__ import annotations

import datetime as dt
import json

from cryptography import x509

from clihelpers import openssl_verify, pem, secret_certificates, vault_snapshot
from kvca_core.operations import Rotation, move_time

OLD_LEAVES = ("api", "web", "db")
WINDOW_HOURS = 72  # KVCA_ROTATION_WINDOW_HOURS's default


def _leaf(kv_clients, name: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(bytes(kv_clients.certificates.get_certificate(name).cer))


def _states(kvca) -> dict[str, str]:
    listed = kvca("--json", "list")
    assert listed.code == 0, listed.err
    return {item["name"]: item["state"] for item in json.loads(listed.out)["certificates"]}


def _verifies(root_pem: str, leaf: x509.Certificate, intermediate_pem: str, tmp_path, emulator) -> bool:
    # -attime: the emulator's clock is ahead of the wall clock once the window has passed.
    return openssl_verify(root_pem, pem(leaf), intermediate_pem, tmp_path, at=emulator.clock.now()).returncode == 0


def test_ca_rotate_then_sweep_moves_every_leaf_onto_the_new_intermediate(kvca, corp, kv_clients, emulator, tmp_path):
    for name in OLD_LEAVES:
        issued = kvca("request", name, "--dns", f"{name}.corp.internal", "--ca", corp, "--sign")
        assert issued.code == 0, issued.err
    root_pem = kvca("export-chain", corp, "--which", "root").out
    old_inter_pem = kvca("export-chain", corp, "--which", "intermediate").out
    old_inter = x509.load_pem_x509_certificate(old_inter_pem.encode())
    old_leaves = {name: _leaf(kv_clients, name) for name in OLD_LEAVES}
    old_version = kv_clients.certificates.get_certificate(corp).properties.version

    rotated = kvca("--json", "ca", "rotate", corp)
    assert rotated.code == 0, rotated.err
    body = json.loads(rotated.out)
    new_inter_pem = kvca("export-chain", corp, "--which", "intermediate").out
    new_inter = x509.load_pem_x509_certificate(new_inter_pem.encode())
    new_version = kv_clients.certificates.get_certificate(corp).properties.version
    assert body["previous_version"] == old_version and body["previous_serial"] == f"{old_inter.serial_number:x}"
    assert body["ca"]["version"] == new_version and body["ca"]["serial"] == f"{new_inter.serial_number:x}"
    assert new_version != old_version
    # A new key, the same subject, the same root (the trust anchor clients hold does not change).
    assert new_inter.public_key() != old_inter.public_key() and new_inter.subject == old_inter.subject
    assert kvca("export-chain", corp, "--which", "root").out == root_pem
    assert any("KVCA_ROTATION_WINDOW_HOURS" in note for note in body["ca"]["notes"])

    # Leaves the old version signed still verify with the old intermediate, not the new one.
    for leaf in old_leaves.values():
        assert _verifies(root_pem, leaf, old_inter_pem, tmp_path, emulator)
        assert not _verifies(root_pem, leaf, new_inter_pem, tmp_path, emulator)

    # Before the window passes: the old leaves are waiting to move (due), a new leaf is valid,
    # and `kvca show` gives each old leaf's point of the window as when it renews.
    assert kvca("request", "fresh", "--dns", "fresh.corp.internal", "--ca", corp, "--sign").code == 0
    assert _states(kvca) == {**{name: "due" for name in OLD_LEAVES}, "fresh": "valid"}
    rotation = Rotation(corp, new_version, dt.datetime.fromisoformat(body["rotated_at"]))
    for name in OLD_LEAVES:
        shown = json.loads(kvca("--json", "show", name).out)
        assert shown["state"] == "due"
        assert dt.datetime.fromisoformat(shown["renew_at"]) == \
            move_time(name, rotation, dt.timedelta(hours=WINDOW_HOURS))
    assert json.loads(kvca("--json", "show", "fresh").out)["state"] == "valid"

    # Past the window: a dry run names every old leaf as would-renew and changes nothing.
    emulator.clock.advance(hours=WINDOW_HOURS, minutes=1)
    before = vault_snapshot(kv_clients)
    dry = kvca("sweep", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.splitlines()[0].startswith("dry run, nothing changed: sweep: scanned 6, managed 4, signed 0, "
                                              "renewed 3, skipped 1, failed 0")
    for name in OLD_LEAVES:
        assert f"  {name}: would-renew (issued by an earlier version of CA 'corp' (rotated " in dry.out
    assert "fresh:" not in dry.out
    assert vault_snapshot(kv_clients) == before

    swept = kvca("--json", "sweep")
    assert swept.code == 0, swept.err
    summary = json.loads(swept.out)
    assert (summary["renewed"], summary["signed"], summary["failed"]) == (3, 0, 0), summary
    for name in OLD_LEAVES:
        moved = _leaf(kv_clients, name)
        assert moved.serial_number != old_leaves[name].serial_number and moved.issuer == new_inter.subject
        assert kv_clients.certificates.get_certificate(name).properties.tags["kvca-ca-version"] == new_version
        secret = kv_clients.secrets.get_secret(name)
        assert secret_certificates(secret.properties.content_type, secret.value)[1] == new_inter
        # Root + the NEW intermediate verifies it; the old intermediate cannot: another key.
        assert _verifies(root_pem, moved, new_inter_pem, tmp_path, emulator)
        assert not _verifies(root_pem, moved, old_inter_pem, tmp_path, emulator)
    assert _states(kvca) == {**{name: "valid" for name in OLD_LEAVES}, "fresh": "valid"}

    # A second sweep changes nothing.
    settled = vault_snapshot(kv_clients)
    again = kvca("--json", "sweep")
    assert again.code == 0, again.err
    assert (json.loads(again.out)["renewed"], json.loads(again.out)["signed"]) == (0, 0)
    assert vault_snapshot(kv_clients) == settled


def test_ca_rotate_prints_the_versions_it_replaced_and_what_consumers_must_do(kvca, corp):
    result = kvca("ca", "rotate", corp)
    assert result.code == 0, result.err
    first = result.out.splitlines()[0]
    assert first.startswith("rotated CA 'corp': version ") and " -> version " in first
    assert "note: the sweep moves the certificates it issued onto the new key within 72 hours" in result.out
    assert "kvca export-chain corp --which intermediate" in result.out
    # Run again at once (a retry): the rotation just made is the answer, not another new key.
    again = kvca("ca", "rotate", corp)
    assert again.code == 0, again.err
    assert "not rotating again" in again.out


def test_ca_rotate_of_an_imported_ca_is_refused_naming_its_root_key(kvca, kv_clients, step_ca):
    imported = kvca("ca", "import", "legacy", "--cert", str(step_ca.intermediate_crt), "--key",
                    str(step_ca.intermediate_key), "--chain", str(step_ca.root_crt),
                    "--password-file", str(step_ca.password_file))
    assert imported.code == 0, imported.err
    before = vault_snapshot(kv_clients)
    result = kvca("ca", "rotate", "legacy")
    assert result.code == 1
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("kvca: error: CA 'legacy': ")
    assert "its root's key is not in this vault" in result.err and "kvca ca import" in result.err
    assert vault_snapshot(kv_clients) == before


def test_ca_rotate_of_an_unknown_ca_fails_naming_it(kvca, corp, kv_clients):
    before = vault_snapshot(kv_clients)
    result = kvca("ca", "rotate", "nosuch")
    assert result.code == 1
    assert result.err_lines == ["kvca: error: CA 'nosuch': no CA of this name in the vault "
                                "(hint: `kvca ca list` shows the CAs)"]
    assert vault_snapshot(kv_clients) == before


def test_ca_rotate_years_beyond_the_root_is_refused_before_any_write(kvca, kv_clients):
    assert kvca("ca", "create", "corp", "--subject", "CN=Corp CA", "--years", "5", "--root-years", "8").code == 0
    before = vault_snapshot(kv_clients)
    result = kvca("ca", "rotate", "corp", "--years", "9")
    assert result.code == 1
    assert len(result.err_lines) == 1
    assert "CA 'corp': a 9-year intermediate would outlive its root, which expires on " in result.err
    assert "(hint: give --years 7 or less, or leave --years out to end with the root)" in result.err
    assert vault_snapshot(kv_clients) == before
    within = kvca("--json", "ca", "rotate", "corp", "--years", "7")
    assert within.code == 0, within.err
    ca = json.loads(within.out)["ca"]
    assert dt.datetime.fromisoformat(ca["not_after"]) <= dt.datetime.fromisoformat(ca["root_not_after"])
