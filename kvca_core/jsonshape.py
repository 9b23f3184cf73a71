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
describes every document (the tests check the output of every command and route against it); the
README's "JSON output" section explains it.
"""

from __future__ import annotations

from typing import Any, Mapping

SCHEMA_VERSION = 1

# object -> what it is. CLI: the command printing it; HTTP: the route answering it.
OBJECTS = {
    "outcome": "what one operation did to one certificate (request, sign, renew, cancel, "
               "ocsp-responder; each line of request --from; POST /api/certificates[/NAME/...])",
    "batch": "one outcome per requested certificate (POST /api/certificates/batch)",
    "sweep": "a sweep: counts, every managed certificate's outcome, CA warnings (sweep)",
    "inventory": "the managed certificates and CA warnings (list; GET /api/certificates)",
    "certificate": "one certificate in detail (show)",
    "ca": "one CA (ca create, ca import, ca show)",
    "ca_list": "the vault's CAs (ca list)",
    "ca_rotation": "a CA rotation (ca rotate)",
    "ca_policy": "a CA's issuance policy and where it comes from (ca policy show|set; GET /api/cas/CA/policy)",
    "revocation": "a revocation (revoke; POST /api/certificates/NAME/revoke)",
    "crl": "a CRL written to a file (crl)",
    "trust_export": "trust certificates exported (export-chain)",
    "download": "a certificate with its key written to a file (download)",
    "health": "the app's configuration and access check (GET /api/health)",
    "error": "why a command or call failed: the error kind, the message, the exit code (CLI)",
}


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
