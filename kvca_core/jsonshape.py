"""kvca's JSON contract: what `kvca --json` prints and what the HTTP API answers.

Every document (one top-level JSON value) is an object that says what it is in two fields, then
carries the result's own fields, built by that result's `to_dict()`:

    {"schema_version": 1, "object": "outcome", "name": "api", "action": "renewed", ...}

The same result has the same shape wherever it appears: `kvca renew api --json` and
`POST /api/certificates/api/renew` answer the same `outcome`, `kvca list --json` and
`GET /api/certificates` the same `inventory`, `kvca ca policy show --json` and
`GET /api/cas/{ca}/policy` the same `ca_policy`, and a failed command or call an `error`.

`schema_version` changes only when a field is removed or renamed, or its meaning or type
changes. New fields and new values of an enumerated field (a new `action`, say) are added within
a version, so a reader must ignore fields it does not know. `schemas/kvca-v1.schema.json`
describes every document (the tests check the output of every command and route against it);
docs/http-api.md, "JSON output and exit codes", explains it.
"""

from __future__ import annotations

from typing import Any, Mapping

SCHEMA_VERSION = 1

# The documents: what each holds is described once, in schemas/kvca-v1.schema.json (and explained
# in docs/http-api.md), not again here.
OBJECTS = ("outcome", "batch", "sweep", "inventory", "certificate", "ca", "ca_list", "ca_rotation", "ca_policy",
           "revocation", "crl", "trust_export", "download", "signed_csr", "enroll_codes", "health", "error", "ledger",
           "ledger_entry", "ledger_export", "ledger_import")


def document(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` behind the two fields that say what it is."""
    if kind not in OBJECTS:
        raise ValueError(f"unknown JSON object type {kind!r}")
    return {"schema_version": SCHEMA_VERSION, "object": kind, **body}


def of(result: Any) -> dict[str, Any]:
    """The document of a result that knows its type (`OBJECT`) and its body (`to_dict()`)."""
    return document(result.OBJECT, result.to_dict())


def error(exc: Any) -> dict[str, Any]:
    """The `error` document of a kvca error (`KvcaError.to_dict()`: kind, message, step)."""
    return document("error", exc.to_dict())


__all__ = ["OBJECTS", "SCHEMA_VERSION", "document", "error", "of"]
