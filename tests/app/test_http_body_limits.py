"""Hostile HTTP bodies through the registered functions: deep nesting is a 400 naming the rule."""

from __future__ import annotations

import json
import logging

import pytest

from kvca_core import jsontext

from apphelpers import call_http

DEEP = b"[" * 30_000  # the review's body: a RecursionError and a 500 before the depth limit

ROUTES = [
    ("kvca_issue", "certificates", {}),
    ("kvca_renew", "certificates/api/renew", {"name": "api"}),
    ("kvca_sign", "certificates/api/sign", {"name": "api"}),
]


@pytest.mark.parametrize("function,url,route", ROUTES, ids=[r[0] for r in ROUTES])
@pytest.mark.parametrize("raw", [
    DEEP,
    b'{"name": "x", "ca": "c", "dns_names": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b"{\"a\":" * 40 + b"1" + b"}" * 40,
], ids=["brackets", "deep-field", "objects"])
async def test_deeply_nested_json_is_a_400_naming_the_depth_rule(app, caplog, function, url, route, raw):
    caplog.set_level(logging.INFO)
    status, body, _ = await call_http(function, "POST", url, raw=raw, route_params=route)
    assert status == 400, body
    assert body["error"] == "InvalidRequest"
    assert f"more than {jsontext.MAX_DEPTH} levels deep" in body["message"]
    assert "RecursionError" not in caplog.text and "Traceback" not in caplog.text


async def test_brackets_inside_strings_do_not_count_towards_the_depth(app):
    # Refused for its fields, not for its depth: the scanner skips string contents.
    raw = json.dumps({"name": "x", "ca": "c", "dns_names": ["[" * 1000 + '\\"{']}).encode()
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", raw=raw)
    assert status in (400, 404, 422), body
    assert "levels deep" not in body["message"]


def test_depth_scan_finds_the_first_bracket_beyond_the_limit():
    assert jsontext.depth_exceeded_at(b"[" * 32 + b"]" * 32) is None
    assert jsontext.depth_exceeded_at(b" " + b"[" * 33) == 33
    assert jsontext.depth_exceeded_at(b'["\\"[[[[", []]', limit=2) is None
    assert jsontext.depth_exceeded_at(b'["\\"[[[[", [[]]]', limit=2) == 12


@pytest.mark.parametrize("raw", [b'"' + b"[" * 30_000, b'["a\\"' + b"[" * 30_000, b"]" * 100 + b"[" * 30_000],
                         ids=["unterminated-string", "escaped-quote", "closers-first"])
async def test_malformed_deep_bodies_are_400s_too(app, raw):
    status, body, _ = await call_http("kvca_issue", "POST", "certificates", raw=raw)
    assert status == 400 and body["error"] == "InvalidRequest", body
