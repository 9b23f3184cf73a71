"""`kvca list` and `kvca sweep` tell of CAs nearing expiry on stderr (kvca_core/cawatch.py), so
that stdout stays the listing or the summary a script reads."""

from __future__ import annotations

import json


def test_list_and_sweep_warn_on_stderr_of_a_ca_with_a_year_left(kvca):
    assert kvca("ca", "create", "short", "--subject", "CN=Short CA", "--years", "1", "--root-years", "1").code == 0
    assert kvca("request", "web", "--dns", "web.corp.internal", "--ca", "short", "--sign").code == 0
    listed = kvca("list")
    assert listed.code == 0 and "CA 'short'" not in listed.out
    assert "kvca: warning: CA 'short' (intermediate) expires on " in listed.err
    assert "leaves are now capped at that date (hint: kvca ca rotate short)" in listed.err
    assert "kvca: warning: CA 'short-root' (root) expires on " in listed.err
    as_json = kvca("--json", "list")
    inventory = json.loads(as_json.out)
    assert [item["name"] for item in inventory["certificates"]] == ["web"] and "CA 'short'" in as_json.err
    # The JSON carries the warnings too, in the shape GET /api/certificates gives them.
    assert {(w["ca"], w["role"]) for w in inventory["ca_warnings"]} == {("short", "intermediate"),
                                                                         ("short-root", "root")}
    swept = kvca("sweep")
    assert swept.code == 0 and "CA 'short' (intermediate)" in swept.err and "CA 'short'" not in swept.out


def test_a_ca_far_from_expiry_gives_no_warning(kvca, corp):
    listed = kvca("list")
    assert listed.code == 0 and "warning" not in listed.err
