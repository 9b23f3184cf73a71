"""The `kvca revoke`, `kvca crl` and `kvca ledger` commands, in-process against the emulator."""

from __future__ import annotations

import asyncio
import json

from cryptography import x509

from kvca_core.cli import main

from revhelpers import CA


async def _kvca(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_cli_revokes_and_writes_both_crls(revocation_ca, leaves, tmp_path, capsys):
    serial = format(leaves["bad"].cert.serial_number, "x")
    code, out, err = await _kvca(capsys, "revoke", "bad", "--serial", serial, "--reason", "key-compromise", "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["action"] == "revoked" and body["reason"] == "keyCompromise" and body["serial"] == serial
    code, out, _ = await _kvca(capsys, "revoke", "bad", "--reason", "superseded")
    assert code == 0 and "already-revoked" in out

    code, out, err = await _kvca(capsys, "crl", CA, "--out", str(tmp_path / "ca.crl.pem"))
    assert code == 0, err
    crl = x509.load_pem_x509_crl((tmp_path / "ca.crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(leaves["bad"].cert.serial_number) is not None
    code, out, err = await _kvca(capsys, "crl", CA, "--root", "--revoke-intermediate", "superseded",
                                 "--out", str(tmp_path / "root.crl.pem"))
    assert code == 0, err
    root_crl = x509.load_pem_x509_crl((tmp_path / "root.crl.pem").read_bytes())
    assert root_crl.is_signature_valid(leaves["bad"].root.public_key())
    assert root_crl.get_revoked_certificate_by_serial_number(leaves["bad"].intermediate.serial_number) is not None
    assert (root_crl.next_update_utc - root_crl.last_update_utc).days >= 365

    # The ledger says the same: the certificate, its state and who revoked it.
    code, out, err = await _kvca(capsys, "--json", "show", "--serial", serial)
    assert code == 0, err
    entry = json.loads(out)
    assert entry["object"] == "ledger_entry" and entry["state"] == "revoked" and entry["name"] == "bad"
    assert entry["revocation"]["reason"] == "keyCompromise" and entry["revocation"]["revoked_by"].startswith("cli:")


async def test_cli_refuses_a_bad_reason_and_a_version_with_a_serial(revocation_ca, leaves, capsys):
    code, _, err = await _kvca(capsys, "revoke", "good", "--reason", "certificateHold")
    assert code == 2 and "certificateHold" in err and "RFC 5280" in err
    code, _, err = await _kvca(capsys, "revoke", "good", "--version", "v", "--serial", "1", "--reason", "superseded")
    assert code == 2
    code, _, err = await _kvca(capsys, "crl", CA, "--revoke-intermediate", "superseded", "--out", "x")
    assert code == 2 and "--root" in err


async def test_cli_revoke_says_when_the_crl_blob_could_not_be_published(revocation_ca, leaves, capsys, monkeypatch):
    from revhelpers import free_port

    # Nothing listens there: the upload fails after the record is written.
    monkeypatch.setenv("KVCA_CRL_CONTAINER_URL", f"https://127.0.0.1:{free_port()}/devstoreaccount1/crl")
    code, out, err = await _kvca(capsys, "revoke", "bad", "--reason", "keyCompromise")
    assert code == 0, err
    assert "revoked" in out and "CRL not published" in out and "the revocation stands" in out, out
    assert (await revocation_ca.vault.get_certificate("bad")).tags.get("kvca-revoked") == "keyCompromise"
