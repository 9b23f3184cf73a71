"""An Event Grid storm: 200 CertificateNearExpiry events and 100 duplicates, 40 invocations at once,
through the registered Event Grid function, with Key Vault's throttling on. Every certificate gets
exactly one new version and no withdrawn one, no invocation outlives the 30 s Event Grid waits for
an answer, and the process asks the managed identity endpoint for one token."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time

import pytest

from kvca_core import context
from kvca_core.context import Context
from kvca_core.errors import NotFound
from kvca_core.settings import Settings

from apphelpers import completed_versions, deliver, import_leaves, import_recipe_ca, recipe_ca_material, versions
from scalehelpers import timed_requests

NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
CERTIFICATES = 200
AT_ONCE = 40
EVENT_GRID_WAIT = 30.0  # seconds Event Grid waits for an answer before it counts the delivery failed


async def _event_grid(deliveries: list[dict], durations: list[float], failures: list[str], seed: int) -> None:
    """Event Grid as the function sees it: at most AT_ONCE deliveries in flight; a delivery that
    raised is delivered again after a backoff (Event Grid's starts at 10 s; shortened here)."""
    slots = asyncio.Semaphore(AT_ONCE)
    rng = random.Random(seed)

    async def until_acknowledged(raw: dict) -> None:
        for _attempt in range(20):
            async with slots:
                started = time.monotonic()
                try:
                    await deliver(raw)
                    return
                except Exception as exc:  # what Event Grid sees as a failed delivery
                    failures.append(f"{raw['subject']}: {exc}")
                finally:
                    durations.append(time.monotonic() - started)
            await asyncio.sleep(rng.uniform(0.5, 2.0))
        raise AssertionError(f"{raw['subject']} was never acknowledged")

    await asyncio.gather(*(until_acknowledged(raw) for raw in deliveries))


@pytest.mark.slow
async def test_an_event_storm_with_duplicates_makes_one_version_each_in_time_with_one_token(app, monkeypatch):
    # Throttling on, at a create limit raised to 100 per 10 s (and kvca told so) to keep the test short.
    monkeypatch.setenv("KVCA_CREATE_LIMIT", "100")
    names = [f"device-{i:03d}" for i in range(CERTIFICATES)]
    async with Context.open(Settings.from_env(), credential=app.async_credential()) as setup:
        material = await recipe_ca_material("corp-ca")
        await import_recipe_ca(setup.vault, "corp-ca", material=material)
        await import_leaves(setup.vault, material[2], material[3], names, days=365)
        app.take_events()
        expires = (await setup.vault.get_certificate(names[0])).expires_on
    app.clock.set(expires - dt.timedelta(days=29))
    events = [e for e in app.take_events() if e["eventType"] == NEAR_EXPIRY]
    assert sorted(e["subject"] for e in events) == names
    # Duplicates: half of them right beside the original (delivered at the same moment), half later.
    rng = random.Random(7)
    deliveries = list(events)
    for raw in rng.sample(events, 50):
        deliveries.insert(deliveries.index(raw) + 1, raw)
    deliveries += rng.sample(events, 50)
    app.throttling(True, limits={"key-create": 100}, retry_after=True)
    await context.reset_shared()  # a cold instance: the first 40 invocations all need a token
    tokens_before = app.identity_requests

    durations: list[float] = []
    failures: list[str] = []
    with timed_requests(app) as log:
        await _event_grid(deliveries, durations, failures, seed=11)

    assert len(durations) >= len(deliveries)
    assert max(durations) < EVENT_GRID_WAIT, sorted(durations)[-5:]
    assert app.identity_requests - tokens_before == 1
    assert len(log.times(creates=True)) == CERTIFICATES, failures[:5]  # one create per certificate
    ctx = await context.shared()
    for name in names:
        assert len(await completed_versions(ctx.vault, name)) == 2, name
        assert len(await versions(ctx.vault, name)) == 2, f"{name}: a request was made and withdrawn"


async def test_concurrent_cold_calls_ask_the_identity_endpoint_once(app):
    """A cold instance's first calls go through several SDK clients at once (certificates, secrets,
    keys): each client's auth policy asks the credential, and the credential had no token yet."""
    await context.reset_shared()
    ctx = await context.shared()
    before = app.identity_requests

    async def read(i: int) -> None:
        calls = (ctx.vault.get_certificate, ctx.vault.get_secret,
                 lambda name: ctx.vault.get_public_key(f"{ctx.vault.vault_url}/keys/{name}/0123"))
        try:
            await calls[i % 3](f"absent-{i}")
        except NotFound:
            pass

    await asyncio.gather(*(read(i) for i in range(AT_ONCE)))
    assert app.identity_requests - before == 1
    await asyncio.gather(*(read(i) for i in range(AT_ONCE)))
    assert app.identity_requests - before == 1  # the credential's cache serves the rest
