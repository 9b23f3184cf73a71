"""`kvca ca rotate` and the sweep: a new intermediate key under the same root, every leaf moved
onto it within the window, each new chain checked with `openssl verify`."""

from __future__ import annotations

import asyncio

from azure.functions.timer import TimerRequest
from cryptography import x509

from apphelpers import call_http, chain_from_vault, completed_versions, openssl_verify, user_function
from kvca_core import operations
from kvca_core.ca import create_ca
from kvca_core.vocabulary import CA_VERSION_TAG, ROTATED_TAG
from kvca_core.operations import IssueRequest, issue, sweep
from kvca_core.ca import rotate_ca

LEAVES = ("api", "web", "db")


def _cert(version) -> x509.Certificate:
    return x509.load_der_x509_certificate(version.cer)


async def test_rotation_moves_every_leaf_onto_the_new_intermediate_within_the_window(ctx, app):
    created = await create_ca(ctx, "corp", subject="CN=Corp CA", years=2, permitted_dns=["corp.internal"])
    root = _cert(await ctx.vault.get_certificate("corp-root"))
    assert root.not_valid_after_utc > created.not_after  # the root outlives the intermediate
    for name in LEAVES:
        assert (await issue(ctx, IssueRequest(name=name, ca="corp", dns_names=(f"{name}.corp.internal",)))).changed
    old_chains = {n: await chain_from_vault(ctx.vault, n) for n in LEAVES}
    old_inter = _cert(await ctx.vault.get_certificate("corp"))

    result = await rotate_ca(ctx, "corp")
    new_version = await ctx.vault.get_certificate("corp")
    new_inter = _cert(new_version)
    assert result.previous_serial == f"{old_inter.serial_number:x}" and result.ca.serial == f"{new_inter.serial_number:x}"
    assert new_inter.public_key() != old_inter.public_key() and new_inter.subject == old_inter.subject
    assert new_inter.issuer == root.subject
    assert new_inter.extensions.get_extension_for_class(x509.NameConstraints).value.permitted_subtrees == \
        [x509.DNSName("corp.internal")]
    assert new_version.tags["kvca-role"] == "intermediate" and ROTATED_TAG in new_version.tags
    # Leaves of the old version still verify with the old intermediate.
    for chain in old_chains.values():
        openssl_verify(chain, root)

    # Right after the rotation nothing is due yet for most leaves; a dry run says which would move.
    app.clock.advance(hours=ctx.settings.rotation_window_hours, minutes=1)
    dry = await sweep(ctx, dry_run=True)
    assert {o.name for o in dry.outcomes if o.action == operations.WOULD_RENEW} == set(LEAVES)
    assert all("issued by an earlier version of CA 'corp'" in o.reason for o in dry.outcomes)

    summary = await sweep(ctx)
    assert summary.renewed == len(LEAVES) and summary.failed == 0, summary.failures
    for name in LEAVES:
        current = await ctx.vault.get_certificate(name)
        assert current.tags[CA_VERSION_TAG] == new_version.version
        chain = await chain_from_vault(ctx.vault, name)
        assert chain[1] == new_inter and _cert(current).issuer == new_inter.subject
        openssl_verify(chain, root)
        assert len(await completed_versions(ctx.vault, name)) == 2
    again = await sweep(ctx)
    assert again.renewed == 0 and again.signed == 0 and again.failed == 0


async def test_leaves_move_spread_over_the_window_not_all_at_once(ctx, app):
    await create_ca(ctx, "corp", subject="CN=Corp CA", years=2)
    names = [f"leaf-{i}" for i in range(8)]
    for name in names:
        await issue(ctx, IssueRequest(name=name, ca="corp", dns_names=(f"{name}.corp.internal",)))
    await rotate_ca(ctx, "corp")
    app.clock.advance(hours=ctx.settings.rotation_window_hours / 2)
    half = await sweep(ctx)
    assert 0 < half.renewed < len(names)  # some moved, some wait for their point of the window
    app.clock.advance(hours=ctx.settings.rotation_window_hours / 2 + 1)
    rest = await sweep(ctx)
    assert half.renewed + rest.renewed == len(names)


async def test_two_rotations_at_once_make_one_new_version(ctx):
    await create_ca(ctx, "corp", subject="CN=Corp CA", years=2)
    first, second = await asyncio.gather(rotate_ca(ctx, "corp"), rotate_ca(ctx, "corp"), return_exceptions=True)
    results = [r for r in (first, second) if not isinstance(r, BaseException)]
    assert results, (first, second)
    for r in (first, second):
        if isinstance(r, BaseException):
            assert "Conflict" in type(r).__name__ or "concurrent" in str(r), r
    assert len(await completed_versions(ctx.vault, "corp")) == 2
    assert len({r.ca.serial for r in results}) == 1


async def test_a_crashed_rotation_resumes_from_its_pending_request(ctx, app):
    await create_ca(ctx, "corp", subject="CN=Corp CA", years=2)
    before = _cert(await ctx.vault.get_certificate("corp"))
    app.faults.add(kind="429", route=r"/certificates/corp/pending/merge", count=50, retry_after=0.01)
    try:
        await rotate_ca(ctx, "corp")
    except Exception as exc:  # throttled past its retries
        assert "throttl" in str(exc).lower()
    else:
        raise AssertionError("the merge was throttled, the rotation cannot have finished")
    app.faults.clear()
    assert _cert(await ctx.vault.get_certificate("corp")) == before  # the old version still signs
    result = await rotate_ca(ctx, "corp")
    assert "resumed an unfinished `kvca ca rotate`" in result.ca.notes
    assert len(await completed_versions(ctx.vault, "corp")) == 2


async def test_an_imported_ca_is_refused_naming_its_root_key(ctx):
    from apphelpers import import_recipe_ca

    await import_recipe_ca(ctx.vault, "recipe", years=3)
    try:
        await rotate_ca(ctx, "recipe")
    except Exception as exc:
        assert "root's key is not in this vault" in str(exc)
    else:
        raise AssertionError("an imported CA was rotated")


CERTIFICATE_READ = ("GET", "GET /certificates/{name}")


async def test_the_inventory_shows_leaves_waiting_to_move_as_due_for_one_read_of_their_ca(ctx, app):
    await create_ca(ctx, "corp", subject="CN=Corp CA", years=2)
    for name in LEAVES:
        await issue(ctx, IssueRequest(name=name, ca="corp", dns_names=(f"{name}.corp.internal",)))
    await rotate_ca(ctx, "corp")
    await issue(ctx, IssueRequest(name="fresh", ca="corp", dns_names=("fresh.corp.internal",)))

    app.requests.clear()
    status, body, _ = await call_http("kvca_inventory", "GET", "certificates")
    assert status == 200, body
    # What the sweep will renew is due from the rotation on, before its point of the window.
    assert {c["name"]: c["state"] for c in body["certificates"]} == {**{n: "due" for n in LEAVES}, "fresh": "valid"}
    # The inventory reads each leaf (as before) and the CA once for all its leaves.
    assert app.requests.count(CERTIFICATE_READ) == len(LEAVES) + 1 + 1, app.requests

    app.clock.advance(hours=ctx.settings.rotation_window_hours, minutes=1)
    await user_function("kvca_sweep")(TimerRequest(past_due=False))
    status, body, _ = await call_http("kvca_inventory", "GET", "certificates")
    assert status == 200 and {c["state"] for c in body["certificates"]} == {"valid"}, body
