"""Every hostile CSR of tests/corpus is refused with its own error kind and step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvca_core import errors
from kvca_core.signing import IssuancePolicy, issue_leaf

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
INDEX = json.loads((CORPUS / "index.json").read_text())["cases"]


def test_corpus_has_at_least_25_distinct_cases():
    assert len(INDEX) >= 25
    assert len({case["file"] for case in INDEX}) == len(INDEX)
    assert all((CORPUS / case["file"]).is_file() for case in INDEX)


def test_corpus_files_hold_no_private_key():
    for path in (CORPUS / "csr").iterdir():
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data, path.name


@pytest.mark.parametrize("case", INDEX, ids=[c["file"].split("/")[-1] for c in INDEX])
async def test_hostile_csr_is_refused_with_its_kind_and_step(case, pkis):
    ca = pkis["ec"].ca("local", constrained=case.get("ca", False))
    policy = IssuancePolicy.from_mapping(case.get("policy", {}))
    data = (CORPUS / case["file"]).read_bytes()
    with pytest.raises(errors.KvcaError) as caught:
        await issue_leaf(data, ca=ca, policy=policy)
    error = caught.value
    assert (error.kind, error.step) == (case["kind"], case["step"]), str(error)
    assert case["contains"] in str(error)
    assert "Traceback" not in str(error)
