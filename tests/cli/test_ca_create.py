"""`kvca ca create`: root and intermediate keys made in the vault, signed through the keys API,
resumable, and never half-made in a way later operations would use."""

from __future__ import annotations

import json
from unittest.mock import ANY  # the policy tag names a secret version made at run time
import os
import signal
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from clihelpers import (
    openssl_verify,
    pem,
    run_subprocess,
    secret_certificates,
    secret_has_private_key,
    vault_snapshot,
)


def _ca_cert(kv_clients, name: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(bytes(kv_clients.certificates.get_certificate(name).cer))


def _all_secret_versions(kv_clients, name: str):
    """Every readable version of a secret; a disabled one cannot be read by anybody (403)."""
    from azure.core.exceptions import HttpResponseError

    for props in kv_clients.secrets.list_properties_of_secret_versions(name):
        if not props.enabled:
            with pytest.raises(HttpResponseError) as refused:
                kv_clients.secrets.get_secret(name, props.version)
            assert refused.value.status_code == 403
            continue
        secret = kv_clients.secrets.get_secret(name, props.version)
        yield props.version, secret.properties.content_type, secret.value


def assert_ca_extensions(cert: x509.Certificate, *, path_length: int) -> None:
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == path_length
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign


@pytest.mark.parametrize("key, expected", [("ec-p256", "EC P-256"), ("rsa-2048", "RSA 2048")])
def test_ca_create_makes_root_and_intermediate_whose_keys_never_leave_the_vault(kvca, kv_clients, tmp_path,
                                                                                key, expected):
    result = kvca("ca", "create", "corp", "--subject", "CN=Corp Issuing CA, O=Corp", "--key", key,
                  "--years", "5", "--permitted-dns", "corp.internal")
    assert result.code == 0, result.err
    assert "subject:" in result.out and "CN=Corp Issuing CA,O=Corp" in result.out
    assert f"key:" in result.out and expected in result.out and "not exportable" in result.out
    assert "name constraints:    corp.internal" in result.out

    root, inter = _ca_cert(kv_clients, "corp-root"), _ca_cert(kv_clients, "corp")
    assert root.subject == root.issuer and root.subject.rfc4514_string() == "CN=Corp Issuing CA Root,O=Corp"
    assert inter.issuer == root.subject
    assert_ca_extensions(root, path_length=1)
    assert_ca_extensions(inter, path_length=0)
    nc = inter.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical and [g.value for g in nc.value.permitted_subtrees] == ["corp.internal"]
    assert isinstance(inter.public_key(), ec.EllipticCurvePublicKey if key.startswith("ec") else rsa.RSAPublicKey)
    assert openssl_verify(pem(root), pem(inter), "", tmp_path).returncode == 0

    # The role tags are what marks a finished CA; nothing is left "in creation".
    assert kv_clients.certificates.get_certificate("corp-root").properties.tags == {"kvca-role": "root"}
    # The intermediate's role tag came with its issuance policy's (tests/cli/test_ca_policy.py).
    policy_version = kv_clients.secrets.get_secret("corp-policy").properties.version
    assert kv_clients.certificates.get_certificate("corp").properties.tags == {
        "kvca-role": "intermediate", "kvca-policy": policy_version}
    # The root's temporary self-signed version (the key's first home) is disabled.
    versions = list(kv_clients.certificates.list_properties_of_certificate_versions("corp-root"))
    assert len(versions) == 2 and sorted(v.enabled for v in versions) == [False, True]
    # Neither policy lets the key out, and no version of either secret holds a private key.
    assert kv_clients.certificates.get_certificate_policy("corp-root").exportable is False
    assert kv_clients.certificates.get_certificate_policy("corp").exportable is False
    for name in ("corp-root", "corp"):
        for version, content_type, value in _all_secret_versions(kv_clients, name):
            assert not secret_has_private_key(content_type, value), (name, version)
    # The intermediate's secret holds its chain up to the root.
    content_type = kv_clients.secrets.get_secret("corp").properties.content_type
    assert secret_certificates(content_type, kv_clients.secrets.get_secret("corp").value) == [inter, root]


def test_ca_create_exportable_puts_only_the_intermediate_key_in_its_secret(kvca, kv_clients):
    result = kvca("ca", "create", "corp", "--subject", "CN=Corp CA", "--exportable")
    assert result.code == 0, result.err
    assert "exportable" in result.out
    secret = kv_clients.secrets.get_secret("corp")
    assert secret_has_private_key(secret.properties.content_type, secret.value)
    for _, content_type, value in _all_secret_versions(kv_clients, "corp-root"):
        assert not secret_has_private_key(content_type, value)


def test_ca_create_writes_no_private_key_to_any_file(cli_env, kv_clients, tmp_path):
    """Run as a user would (a fresh process, its own HOME and TMPDIR): afterwards no file the
    process could have written holds a private key."""
    home, tmp, work = tmp_path / "home", tmp_path / "tmp", tmp_path / "work"
    for d in (home, tmp, work):
        d.mkdir()
    env = dict(cli_env, HOME=str(home), TMPDIR=str(tmp))
    result = run_subprocess(["ca", "create", "corp", "--subject", "CN=Corp CA"], env, work)
    assert result.code == 0, result.err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    for path in written:
        assert b"PRIVATE KEY" not in path.read_bytes(), path
    assert kv_clients.certificates.get_certificate("corp").properties.tags == {"kvca-role": "intermediate", "kvca-policy": ANY}


def test_ca_create_again_fails_clearly_and_changes_nothing(kvca, kv_clients):
    assert kvca("ca", "create", "corp", "--subject", "CN=Corp CA").code == 0
    before = vault_snapshot(kv_clients)
    result = kvca("ca", "create", "corp", "--subject", "CN=Corp CA")
    assert result.code == 1
    assert result.err_lines == ["kvca: error: CA 'corp': already exists "
                                "(hint: `kvca ca show` it, or choose another name)"]
    assert vault_snapshot(kv_clients) == before


def test_ca_create_over_a_foreign_certificate_is_refused_before_any_write(kvca, kv_clients):
    from azure.keyvault.certificates import CertificatePolicy

    kv_clients.certificates.begin_create_certificate("corp", CertificatePolicy.get_default()).result()
    before = vault_snapshot(kv_clients)
    result = kvca("ca", "create", "corp", "--subject", "CN=Corp CA")
    assert result.code == 1
    assert "certificate 'corp': a certificate of this name exists and was not made by `kvca ca create`" in result.err
    assert vault_snapshot(kv_clients) == before  # in particular: no corp-root


@pytest.mark.parametrize("argv, code, message", [
    (["--subject", "CN=Corp CA", "--key", "dsa-1024"], 2, "argument --key: invalid choice: 'dsa-1024'"),
    (["--subject", "O=No Common Name"], 2, "has no CN"),
    (["--subject", "CN=x, Q=unknown"], 2, "attribute 'Q' is not one of"),
    (["--subject", "CN=Corp CA", "--years", "0"], 2, "'0' must be at least 1"),
    (["--subject", "CN=Corp CA", "--years", "99"], 2, "not a whole number from 1 to 50"),
    (["--subject", "CN=Corp CA", "--permitted-dns", "bad_name!"], 2, "is not a DNS name or suffix"),
    # Suffixes the signing engine refuses are refused before the root is made, not after.
    (["--subject", "CN=Corp CA", "--permitted-dns", "internal"], 2, "'internal' is a single label"),
    (["--subject", "CN=Corp CA", "--permitted-dns", "10.0.0.1"], 2, "looks like an IP address"),
    (["--subject", "CN=Corp CA", "--permitted-dns", "corp.x"], 2, "top-level label 'x'"),
])
def test_ca_create_bad_input_exits_nonzero_with_one_line_and_no_vault_change(kvca, kv_clients, argv, code,
                                                                              message):
    result = kvca("ca", "create", "corp", *argv)
    assert result.code == code
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("kvca: error: ")
    assert message in result.err
    assert vault_snapshot(kv_clients) == {}


def test_interrupted_intermediate_is_unusable_until_a_rerun_finishes_it(kvca, kv_clients, emulator):
    # Key Vault keeps throttling the intermediate's merge: the command fails after its retries.
    emulator.faults.add(kind="429", route=r"/certificates/corp/pending/merge", count=50, retry_after=0.01)
    failed = kvca("ca", "create", "corp", "--subject", "CN=Corp CA")
    assert failed.code == 1 and "corp" in failed.err and "throttling" in failed.err
    emulator.faults.clear()

    # The half-made CA is visible as such and nothing will sign with it.
    assert kv_clients.certificates.get_certificate_operation("corp").status == "inProgress"
    show = kvca("ca", "show", "corp")
    assert show.code == 1 and "not finished" in show.err
    assert "corp" not in kvca("ca", "list").out.split()
    leaf = kvca("request", "api", "--dns", "api.example.com", "--ca", "corp", "--sign")
    assert leaf.code == 1

    resumed = kvca("ca", "create", "corp", "--subject", "CN=Corp CA")
    assert resumed.code == 0, resumed.err
    assert "resumed an unfinished `kvca ca create`" in resumed.out
    assert kv_clients.certificates.get_certificate("corp").properties.tags == {"kvca-role": "intermediate", "kvca-policy": ANY}
    assert len(list(kv_clients.certificates.list_properties_of_certificate_versions("corp"))) == 1
    assert _ca_cert(kv_clients, "corp").issuer == _ca_cert(kv_clients, "corp-root").subject


def test_killed_during_root_creation_resumes_on_rerun(cli_env, kvca, kv_clients, emulator, tmp_path):
    """A process killed between the root's request and its merge (a crash, Ctrl-C): the rerun
    signs the same pending request with the temporary version's key and finishes. The kill
    lands while the keys API's sign is slowed down: a request with no side effect if the
    server finishes it after the client is gone."""
    emulator.faults.add(kind="latency", route=r"/keys/corp-root/[^/]+/sign", seconds=5)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVCA_", "IDENTITY_"))}
    env.update(cli_env)
    proc = subprocess.Popen([sys.executable, "-m", "kvca_core", "ca", "create", "corp", "--subject", "CN=Corp CA"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if kv_clients.certificates.get_certificate_operation("corp-root").status == "inProgress":
                    break
            except Exception:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the root's pending request never appeared")
        time.sleep(0.5)  # let it reach the (slowed) merge
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    emulator.faults.clear()
    assert kv_clients.certificates.get_certificate_operation("corp-root").status == "inProgress"
    assert "corp" not in [p.name for p in kv_clients.certificates.list_properties_of_certificates()]

    resumed = kvca("ca", "create", "corp", "--subject", "CN=Corp CA")
    assert resumed.code == 0, resumed.err
    root = kv_clients.certificates.get_certificate("corp-root")
    assert root.properties.tags == {"kvca-role": "root"}
    versions = list(kv_clients.certificates.list_properties_of_certificate_versions("corp-root"))
    assert sorted(v.enabled for v in versions) == [False, True]


def test_ca_create_json_output_is_machine_readable(kvca):
    result = kvca("--json", "ca", "create", "corp", "--subject", "CN=Corp CA", "--key", "ec-p384")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["name"] == "corp" and body["key"] == "EC P-384" and body["path_length"] == 0
    assert body["origin"] == "created in Key Vault" and body["key_exportable"] is False
    assert body["root_subject"] == "CN=Corp CA Root"


def test_resume_refuses_a_different_exportable_choice(kvca, kv_clients, emulator):
    emulator.faults.add(kind="429", route=r"/certificates/corp/pending/merge", count=50, retry_after=0.01)
    assert kvca("ca", "create", "corp", "--subject", "CN=Corp CA").code == 1
    emulator.faults.clear()
    before = vault_snapshot(kv_clients)
    result = kvca("ca", "create", "corp", "--subject", "CN=Corp CA", "--exportable")
    assert result.code == 1
    assert "CA 'corp': the pending intermediate request was made with a non-exportable key" in result.err
    assert vault_snapshot(kv_clients) == before


@pytest.mark.parametrize("object_name", ["corp-root", "corp"])
def test_merged_but_untagged_object_is_finished_by_a_rerun(kvca, kv_clients, emulator, object_name):
    """The merge went through but the last step (the role tag) did not: the object still says
    kvca-creating, nothing lists it as a CA, and a rerun checks it and tags it."""
    emulator.faults.add(kind="429", route=rf"/certificates/{object_name}/[0-9a-f]+$", method="PATCH", count=50,
                        retry_after=0.01)
    failed = kvca("ca", "create", "corp", "--subject", "CN=Corp CA")
    assert failed.code == 1 and "throttling" in failed.err
    emulator.faults.clear()
    assert kv_clients.certificates.get_certificate(object_name).properties.tags.get("kvca-creating")
    assert kvca("ca", "list").out.startswith("(no CAs in the vault")

    resumed = kvca("ca", "create", "corp", "--subject", "CN=Corp CA")
    assert resumed.code == 0, resumed.err
    assert kv_clients.certificates.get_certificate("corp-root").properties.tags == {"kvca-role": "root"}
    assert kv_clients.certificates.get_certificate("corp").properties.tags == {"kvca-role": "intermediate", "kvca-policy": ANY}
    assert len(list(kv_clients.certificates.list_properties_of_certificate_versions("corp"))) == 1


def test_show_list_and_export_of_a_created_ca_take_its_chain_without_reading_its_secret(kvca, emulator):
    """An --exportable intermediate's secret holds its private key: inspecting the CA must not
    fetch it (the chain comes from `NAME-root` through the certificates API)."""
    assert kvca("ca", "create", "corp", "--subject", "CN=Corp CA", "--exportable").code == 0
    emulator.faults.add(kind="429", route=r"/secrets/corp", count=50, retry_after=0.01)
    shown = kvca("--json", "ca", "show", "corp")
    assert shown.code == 0, shown.err
    body = json.loads(shown.out)
    assert body["origin"] == "created in Key Vault" and body["chain"] == ["CN=Corp CA Root"]
    assert body["root_subject"] == "CN=Corp CA Root" and body["key_exportable"] is True
    assert [ca["name"] for ca in json.loads(kvca("--json", "ca", "list").out)["cas"]] == ["corp"]
    exported = kvca("export-chain", "corp", "--include-root")
    assert exported.code == 0, exported.err
    assert [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(exported.out.encode())] == [
        "CN=Corp CA", "CN=Corp CA Root"]
