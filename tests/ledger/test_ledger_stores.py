"""What each store adds to the contract: rows read back are untrusted (a malformed one is an
UpstreamError naming the store and its keys), the table is only read and inserted into, the
SQLite stand-in writes no UPDATE or DELETE and never runs in Azure, open_ledger's URL forms,
and the Table service's failures as kvca's error kinds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from azurite import free_port

import kvca_core.ledger.sqlite as sqlite_module
import kvca_core.rim.tables as table_module
from kvca_core.errors import ConfigurationError, UpstreamError
from kvca_core.ledger import open_ledger
from kvca_core.ledger.records import certificate_row, revocation_row
from kvca_core.ledger.sqlite import SqliteLedger
from kvca_core.rim.tables import ROLE_HINT, TableLedger

from ledgerhelpers import record, revocation
from ledgerstores import SqliteBacking, TableBacking

_REC = record()
_GOOD = certificate_row(_REC)
_CERT_PK = "cert:rev-ca"


def _with(**change):
    row = {**_GOOD, **change}
    return {k: v for k, v in row.items() if v is not None}


# (name, partition, row key, row, the call that reads it back, what the message says)
MALFORMED = [
    ("serial-not-hex", _CERT_PK, "abc", _with(serial="zz"), lambda l: l.certificate("rev-ca", "abc"), "serial"),
    ("under-another-key", _CERT_PK, "abc", _GOOD, lambda l: l.certificate("rev-ca", "abc"), "it holds"),
    ("digest-not-of-der", _CERT_PK, _REC.serial, _with(der=b"\x30\x03\x02\x01\x01"),
     lambda l: l.certificate("rev-ca", _REC.serial), "sha256"),
    ("time-not-a-time", _CERT_PK, _REC.serial, _with(not_after="yesterday"),
     lambda l: l.certificate("rev-ca", _REC.serial), "not_after"),
    ("field-missing", _CERT_PK, _REC.serial, _with(subject=None), lambda l: l.certificate("rev-ca", _REC.serial),
     "subject"),
    ("der-as-text", _CERT_PK, _REC.serial, _with(der="MIIB"), lambda l: l.certificate("rev-ca", _REC.serial), "der"),
    ("names-not-json", _CERT_PK, _REC.serial, _with(sans="DNS:a"), lambda l: l.certificate("rev-ca", _REC.serial),
     "sans"),
    ("another-kind", _CERT_PK, _REC.serial, _with(kind="revocation"),
     lambda l: l.certificate("rev-ca", _REC.serial), "not a certificate record"),
    ("listed-among-good-ones", _CERT_PK, "1", _with(serial="2"), lambda l: _all(l.certificates()), "it holds"),
    ("reason-unknown", "revoked:rev-ca", "ab", {**revocation_row(revocation("ab")), "reason": "oops"},
     lambda l: l.revocations("rev-ca"), "reason"),
    ("crl-number-garbage", "crlnumber:rev-ca:v1", "00000garbage", {"kind": "crl-number", "number": "1"},
     lambda l: l.next_crl_number("rev-ca", "v1"), "not a CRL number row"),
    ("crl-origin-negative", "crlnumber:rev-ca:v1", "origin", {"kind": "crl-origin", "number": "-1"},
     lambda l: l.next_crl_number("rev-ca", "v1"), "not a CRL numbering origin"),
    ("marker-not-json", "once:import", "k1", {"kind": "marker", "data": "{oops", "writer": "w"},
     lambda l: l.get("import", "k1"), "not a marker"),
    ("index-not-a-ca", f"serial:{_REC.serial}", "bad_ca", {"kind": "serial-index", "ca": "bad_ca"},
     lambda l: l.find_serial(_REC.serial), "not a CA name"),
]


async def _all(iterator):
    return [r async for r in iterator]


@pytest.mark.parametrize("name, pk, rk, row, read, says", MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_a_malformed_row_is_an_upstream_error_naming_store_and_keys(backing, ledger, name, pk, rk, row,
                                                                          read, says):
    if name == "listed-among-good-ones":
        await ledger.record_certificate(record())
    await backing.raw_insert(pk, rk, row)
    with pytest.raises(UpstreamError, match="malformed row") as caught:
        await read(ledger)
    message = str(caught.value)
    assert backing.where() in message and f"({pk}, {rk})" in message and says in message, message


async def test_sqlite_bodies_that_are_not_the_stores_json_are_malformed(tmp_path):
    backing = SqliteBacking(tmp_path / "l.sqlite")
    await backing.raw_insert(_CERT_PK, "a1", "not json at all")
    await backing.raw_insert(_CERT_PK, "a2", '{"kind": "certificate", "der": {"$b": "!!"}}')
    ledger = backing.open()
    for rk, says in (("a1", "not a JSON object"), ("a2", "neither text nor bytes")):
        with pytest.raises(UpstreamError, match=says):
            await ledger.certificate("rev-ca", rk)
    await backing.close()


def test_the_sqlite_stand_in_is_refused_in_azure(tmp_path, monkeypatch):
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "0123abcd")
    with pytest.raises(ConfigurationError, match="WEBSITE_INSTANCE_ID") as caught:
        open_ledger(f"sqlite:///{tmp_path}/ledger.sqlite", None)
    assert "KVCA_LEDGER_TABLE_URL" in str(caught.value)
    with pytest.raises(ConfigurationError, match="WEBSITE_INSTANCE_ID"):
        SqliteLedger(tmp_path / "ledger.sqlite")
    assert not (tmp_path / "ledger.sqlite").exists()
    monkeypatch.delenv("WEBSITE_INSTANCE_ID")
    assert isinstance(open_ledger(f"sqlite:///{tmp_path}/ledger.sqlite", None), SqliteLedger)


def test_the_sqlite_store_has_no_statement_that_changes_a_row():
    source = Path(sqlite_module.__file__).read_text()
    statements = re.findall(r'"((?:CREATE|INSERT|SELECT|UPDATE|DELETE|REPLACE|DROP|ALTER|UPSERT)\b[^"]*)"', source)
    assert statements and all(s.split()[0] in ("CREATE", "INSERT", "SELECT") for s in statements), statements
    for forbidden in (r"\bUPDATE\b", r"\bDELETE\b", r"\bREPLACE\b", r"\bDROP\b", r"\bALTER\b", r"ON\s+CONFLICT",
                      r"\bTRUNCATE\b", r"executescript"):
        assert not re.search(forbidden, source, re.IGNORECASE), forbidden


def test_the_table_store_calls_no_api_that_changes_or_removes_a_row():
    """The custom role grants entities/read and entities/add/action: every other entity call would be
    refused in Azure, so none is in the code (and the fixture checks every request sent)."""
    source = Path(table_module.__file__).read_text()
    calls = set(re.findall(r"self\._client\.(\w+)\(", source))
    assert calls == {"create_entity", "get_entity", "query_entities", "close"}, calls
    for forbidden in ("update_entity", "upsert_entity", "delete_entity", "submit_transaction", "create_table",
                      "delete_table", "set_table_access_policy", "match_condition", "etag"):
        assert forbidden not in source.split('"""', 2)[2], forbidden  # after the module docstring


async def test_the_request_check_catches_a_call_the_role_would_refuse(azurite_table):
    """The fixture's check of every request can fail: an upsert (a MERGE, sent as PATCH) through the
    same client is caught."""
    backing = TableBacking(azurite_table)
    await backing.create()
    ledger = backing.open()
    await ledger.record_certificate(record())
    await ledger._client.upsert_entity({"PartitionKey": "p", "RowKey": "r", "kind": "x"})
    with pytest.raises(AssertionError, match="requests the ledger's role would refuse.*PATCH"):
        await backing.close()


@pytest.mark.parametrize("url, kind", [
    ("https://kvcaprod01.table.core.windows.net/kvcaledger", TableLedger),
    ("https://kvcaprod01.table.core.usgovcloudapi.net/kvcaledger/", TableLedger),
    ("http://127.0.0.1:10002/devstoreaccount1/ledger", TableLedger),
    ("https://localhost:10002/devstoreaccount1/ledger", TableLedger),
])
async def test_open_ledger_table_forms(url, kind, azurite_table):
    ledger = open_ledger(url, azurite_table.credential())
    assert isinstance(ledger, kind) and ledger.table_url == url.rstrip("/")
    await ledger.close()


@pytest.mark.parametrize("url", [
    "", "kvcaledger", "sqlite://relative/path", "sqlite:///", "file:///tmp/ledger",
    "http://kvcaprod01.table.core.windows.net/kvcaledger",  # plain http to Azure
    "https://kvcaprod01.blob.core.windows.net/kvcaledger", "https://evil.example/kvcaledger",
    "https://kvcaprod01.table.core.windows.net/", "https://kvcaprod01.table.core.windows.net/a/b",
    "https://kvcaprod01.table.core.windows.net/1table", "http://127.0.0.1/devstoreaccount1/ledger",
    "https://kvcaprod01.table.core.windows.net/kvcaledger?sv=2024&sig=SECRETSIG",
    "https://user:SECRETPW@kvcaprod01.table.core.windows.net/kvcaledger",
])
def test_open_ledger_refuses_anything_else_naming_the_value_and_the_forms(url):
    with pytest.raises(ConfigurationError) as caught:
        open_ledger(url, None)
    message = str(caught.value)
    assert message.startswith("KVCA_LEDGER_TABLE_URL") and "sqlite:///<absolute path>" in message
    assert "SECRET" not in message  # a SAS or a password never reaches a message


async def test_a_missing_table_is_a_configuration_error(azurite_table):
    ledger = TableLedger(f"{azurite_table.account_url}/nosuchtable", azurite_table.credential())
    try:
        for call in (lambda: ledger.record_certificate(record()), lambda: ledger.certificate("rev-ca", "ab"),
                     lambda: ledger.revocations("rev-ca")):
            with pytest.raises(ConfigurationError, match="does not exist") as caught:
                await call()
            assert "KVCA_LEDGER_TABLE_URL" in str(caught.value) and "nosuchtable" in str(caught.value)
    finally:
        await ledger.close()


async def test_a_wrong_credential_is_an_upstream_error_naming_the_role(azurite_table):
    from azure.core.credentials import AzureNamedKeyCredential
    backing = TableBacking(azurite_table)
    await backing.create()
    ledger = TableLedger(backing.url, AzureNamedKeyCredential("devstoreaccount1", "d3Jvbmcta2V5"))  # a wrong key
    try:
        with pytest.raises(UpstreamError, match="HTTP 403") as caught:
            await ledger.record_revocation(revocation("ab"))
        assert caught.value.hint == ROLE_HINT
    finally:
        await ledger.close()
        await backing.close()


async def test_an_unreachable_table_is_an_upstream_error_saying_why(azurite_table):
    port = free_port()  # nothing listens there
    ledger = TableLedger(f"http://127.0.0.1:{port}/devstoreaccount1/ledger", azurite_table.credential())
    try:
        with pytest.raises(UpstreamError, match=f"could not reach Table storage: connection to 127.0.0.1:{port} "
                                                f"refused"):
            await ledger.certificate("rev-ca", "ab")
    finally:
        await ledger.close()


async def test_listing_revocations_reads_one_partition_whatever_the_certificates(azurite_table):
    backing = TableBacking(azurite_table)
    await backing.create()
    ledger = backing.open()
    recorded = [await ledger.record_certificate(record()) for _ in range(40)]
    await ledger.record_revocation(revocation(recorded[0].serial))
    backing.requests.clear()
    assert len(await ledger.revocations("rev-ca")) == 1
    assert len(backing.requests) == 1
    method, url = backing.requests[0]
    assert method == "GET" and "revoked%3Arev-ca" in url.replace("%3a", "%3A"), url
    await backing.close()


def test_both_stores_offer_the_port_as_it_is_declared():
    """Every method of the Ledger protocol, with its signature, on the shared implementation (both
    stores are RowLedgers), and nothing there that changes or removes a row."""
    import inspect

    from kvca_core.ledger.port import Ledger
    from kvca_core.ledger.rows import RowLedger

    declared = {n for n, v in vars(Ledger).items() if callable(v) and not n.startswith("_")}
    assert declared == {"record_certificate", "certificate", "find_serial", "certificates", "record_revocation",
                        "revocation", "revocations", "next_crl_number", "insert_once", "marker_keys", "get",
                        "close"}
    for name in declared:
        assert inspect.signature(getattr(RowLedger, name)) == inspect.signature(getattr(Ledger, name)), name
    assert issubclass(TableLedger, RowLedger) and issubclass(SqliteLedger, RowLedger)
    public = {n for n in dir(RowLedger) if not n.startswith("_")}
    assert public == declared, public - declared
