"""`kvca ca create --root-years / --root-subject`: the root as asked (read back with
`kvca export-chain --which root`), the defaults, the refusals, and a half-made create that is
resumed only with the root options it was started with."""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from clihelpers import openssl_verify, pem, vault_snapshot
from kvca_core.signing.issue import BACKDATE, add_months


def _exported(kvca, which: str) -> x509.Certificate:
    result = kvca("export-chain", "corp", "--which", which)
    assert result.code == 0, result.err
    (cert,) = x509.load_pem_x509_certificates(result.out.encode())
    return cert


def _years_from_creation(cert: x509.Certificate, years: int):
    """notAfter of a CA certificate made `years` years long: kvca backdates notBefore by BACKDATE
    and counts calendar years from the moment of creation."""
    return add_months(cert.not_valid_before_utc + BACKDATE, 12 * years)


def test_root_subject_and_years_are_the_ones_asked_for(kvca, tmp_path):
    result = kvca("--json", "ca", "create", "corp", "--subject", "CN=Corp Issuing CA, O=Corp", "--years", "3",
                  "--root-years", "7", "--root-subject", "CN=Corp Trust Anchor, O=Corp")
    assert result.code == 0, result.err
    root, inter = _exported(kvca, "root"), _exported(kvca, "intermediate")
    assert root.subject.rfc4514_string() == "CN=Corp Trust Anchor,O=Corp" and root.issuer == root.subject
    assert root.not_valid_after_utc == _years_from_creation(root, 7)
    assert inter.issuer == root.subject and inter.not_valid_before_utc == root.not_valid_before_utc
    assert inter.not_valid_after_utc == _years_from_creation(inter, 3)
    assert openssl_verify(pem(root), pem(inter), "", tmp_path).returncode == 0
    body = json.loads(result.out)
    assert body["root_subject"] == "CN=Corp Trust Anchor,O=Corp"
    assert body["root_not_after"] == root.not_valid_after_utc.isoformat()


@pytest.mark.parametrize("years, root_years", [(4, 8), (30, 50), (50, 50)])
def test_the_root_defaults_to_twice_the_intermediate_at_most_50_years_and_cn_root(kvca, years, root_years):
    result = kvca("ca", "create", "corp", "--subject", "CN=Corp CA, O=Corp", "--years", str(years))
    assert result.code == 0, result.err
    root, inter = _exported(kvca, "root"), _exported(kvca, "intermediate")
    assert root.subject.rfc4514_string() == "CN=Corp CA Root,O=Corp"
    assert root.not_valid_after_utc == _years_from_creation(root, root_years)
    assert inter.not_valid_after_utc == _years_from_creation(inter, years)


@pytest.mark.parametrize("argv, code, message", [
    (["--years", "5", "--root-years", "3"], 2,
     "CA 'corp': root validity of 3 years is shorter than the intermediate's 5: an intermediate cannot outlive "
     "its root (hint: give --root-years 5 or more (default: 10))"),
    (["--root-years", "51"], 2, "root validity of 51 years is not a whole number from 1 to 50"),
    (["--root-years", "0"], 2, "argument --root-years: '0' must be at least 1"),
    (["--root-subject", "O=Corp"], 2, "CA 'corp': root subject 'O=Corp' has no CN"),
    (["--root-subject", "CN=Corp CA"], 2, "CA 'corp': root subject 'CN=Corp CA' is the intermediate's subject"),
])
def test_root_options_that_cannot_work_are_refused_before_any_write(kvca, kv_clients, argv, code, message):
    """Exit 2: a usage error, refused before anything reached the vault (docs/cli.md, "Global options":
    exit codes), whether the argument parser or kvca's own checks refuse it."""
    result = kvca("ca", "create", "corp", "--subject", "CN=Corp CA", *argv)
    assert result.code == code
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("kvca: error: ")
    assert message in result.err
    assert vault_snapshot(kv_clients) == {}


FIRST = ("--subject", "CN=Corp CA", "--years", "2", "--root-years", "6", "--root-subject", "CN=Corp Anchor")


@pytest.mark.parametrize("stopped_at", ["corp-root", "corp"])
@pytest.mark.parametrize("other, message", [
    (("--root-years", "5"), "root"),
    (("--root-subject", "CN=Corp Other Anchor"), "subject"),
])
def test_resuming_a_half_made_create_with_other_root_options_is_refused(kvca, kv_clients, emulator, stopped_at,
                                                                        other, message):
    """Key Vault keeps throttling one merge, so the first run stops: after the root's request
    (`corp-root` pending) or after the root (`corp` pending). A rerun that asks for another root
    changes nothing; the rerun with the first options finishes the CA as first asked."""
    emulator.faults.add(kind="429", route=rf"/certificates/{stopped_at}/pending/merge", count=50, retry_after=0.01)
    failed = kvca("ca", "create", "corp", *FIRST)
    assert failed.code == 1 and "throttling" in failed.err
    emulator.faults.clear()
    assert kv_clients.certificates.get_certificate_operation(stopped_at).status == "inProgress"

    before = vault_snapshot(kv_clients)
    options = dict(zip(FIRST[::2], FIRST[1::2]))
    options.update(zip(other[::2], other[1::2]))
    refused = kvca("ca", "create", "corp", *[part for pair in options.items() for part in pair])
    assert refused.code == 1, refused.out
    assert len(refused.err_lines) == 1 and refused.err_lines[0].startswith("kvca: error: certificate 'corp-root': ")
    assert message in refused.err and "of the first attempt" in refused.err
    assert vault_snapshot(kv_clients) == before

    resumed = kvca("ca", "create", "corp", *FIRST)
    assert resumed.code == 0, resumed.err
    assert "resumed an unfinished `kvca ca create`" in resumed.out
    root = _exported(kvca, "root")
    assert root.subject.rfc4514_string() == "CN=Corp Anchor"
    assert root.not_valid_after_utc == _years_from_creation(root, 6)
