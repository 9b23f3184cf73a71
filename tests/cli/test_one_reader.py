"""One request reader: the same bad request is refused with the same words whether it comes alone
(POST /api/certificates), in a batch (POST /api/certificates/batch) or as a row of a fleet file
(`kvca request --from`), each naming where it is; and nothing is created."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))  # apphelpers

GOOD = {"name": "fine", "ca": "corp", "dns_names": ["fine.corp.internal"]}
CASES = {
    "bad name": {"name": "bad name!"},
    "names not a list": {"dns_names": "x.corp.internal"},
    "no lifetime": {"validity_months": 0},
    "weak key": {"key": "rsa-1024"},
    "unknown profile": {"profile": "nope"},
    "unknown field": {"colour": "red"},
    "no subject or SAN": {"dns_names": []},
    "outside the CA's policy": {"dns_names": ["x.other.example"]},
}

# What each refusal is about, in its words.
EXPECTED = {
    "bad name": "is not a Key Vault object name",
    "names not a list": "field 'dns_names'",
    "no lifetime": "field 'validity_months'",
    "weak key": "field 'key'",
    "unknown profile": "field 'profile'",
    "unknown field": "unknown field(s) 'colour'",
    "no subject or SAN": "subject",
    "outside the CA's policy": "outside the name constraints",
}


def _http(function: str, route: str, body) -> tuple[int, dict]:
    from apphelpers import call_http
    from kvca_core import context

    async def call():
        try:
            status, answer, _ = await call_http(function, "POST", route, body=body)
            return status, answer
        finally:
            await context.reset_shared()
    return asyncio.run(call())


@pytest.mark.parametrize("case", list(CASES))
def test_alone_in_a_batch_and_in_a_fleet_file_the_same_refusal(kvca, corp, tmp_path, case):
    bad = {**GOOD, "name": "bad-one", "dns_names": ["bad-one.corp.internal"], **CASES[case]}
    status, alone = _http("kvca_issue", "api/certificates", bad)
    status_batch, batch = _http("kvca_issue_batch", "api/certificates/batch", {"certificates": [GOOD, bad]})
    fleet = tmp_path / "fleet.jsonl"
    fleet.write_text(json.dumps(GOOD) + "\n" + json.dumps(bad) + "\n")
    result = kvca("request", "--from", str(fleet))
    # Each names where the request is; a refusal by the CA's policy names the certificate too (alone,
    # the certificate is all there is to name).
    named = "certificate 'bad-one'"
    where = {"alone": ("request", named), "batch": ("certificates[1]", f"certificates[1] ({named})"),
             "fleet": (f"{fleet} line 2", f"{fleet} line 2 ({named})")}
    said = {"alone": alone["message"], "batch": batch["message"],
            "fleet": result.err.removeprefix("kvca: error: ").strip()}
    words = set()
    for path, text in said.items():
        prefix = next((p for p in where[path] if text.startswith(p + ": ")), None)
        assert prefix is not None, (path, text)
        words.add(text[len(prefix) + 2:].split(" (hint: ")[0])
    assert len(words) == 1, said
    refusal = words.pop()
    assert EXPECTED[case] in refusal
    # The same kind of refusal: 400 for the request's form, 422 for the CA's policy; exit 2 or 1.
    assert status == status_batch and status in (400, 422) and result.code == (2 if status == 400 else 1)
    listed = kvca("--json", "list")
    assert [c["name"] for c in json.loads(listed.out)["certificates"]] == [], listed.out  # not even `fine`
