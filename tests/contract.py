"""kvca's JSON contract in the tests: every document the CLI prints or the HTTP API answers is
checked against schemas/kvca-v1.schema.json, by the schema of the object it says it is (so that a
failure names the field, not "not valid under any of the given schemas")."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "kvca-v1.schema.json"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def document_objects() -> set[str]:
    """The object types the schema describes (one `<object>_document` each)."""
    return {ref["$ref"].rsplit("/", 1)[1].removesuffix("_document") for ref in schema()["oneOf"]}


def check(document: Any) -> dict[str, Any]:
    """`document` is a valid document of the contract; returns it."""
    assert isinstance(document, dict), f"a document is a JSON object, got {type(document).__name__}"
    assert document.get("schema_version") == 1, document
    kind = document.get("object")
    assert kind in document_objects(), f"unknown object {kind!r}"
    root = schema()
    validator = jsonschema.Draft202012Validator({"$ref": f"#/$defs/{kind}_document", "$defs": root["$defs"]})
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{kind} at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    # The whole schema agrees (exactly one of its documents matches).
    jsonschema.Draft202012Validator(root).validate(document)
    return document


def parse(text: str) -> dict[str, Any]:
    """One document printed by `kvca --json`."""
    return check(json.loads(text))


def parse_lines(text: str) -> list[dict[str, Any]]:
    """JSON lines (`kvca request --from FILE --json`): one document a line."""
    return [check(json.loads(line)) for line in text.splitlines() if line.strip()]
