"""How many Key Vault calls kvca makes, and how much memory a large sweep takes.

    .venv/bin/python bench/vault_calls.py [--certificates 1000]

Against the emulator (in this process, over HTTPS, with KVCA_TLS_CA_BUNDLE set as
for a TLS-inspecting proxy), counting the data-plane calls it answers (`em.requests`:
after authentication, so the 401 challenge is not counted):

- calls per renewal (a due certificate, renewed by `renew`) and per signing of a
  pending request (`sign_pending`: a certificate's first version, and a "New
  Version" made by hand on a completed one), with the CA imported the recipe's way
  (its key signs in memory; a CA whose key stays in the vault adds one keys-API
  sign). Within a sweep each CA is checked once, so one call less each;
- calls per certificate in a sweep that finds nothing to do, and the same sweep
  split into listing pages and per-certificate calls;
- the peak of the memory traced (tracemalloc) during a sweep of `--certificates`
  certificates, and how much the process's peak resident memory (ru_maxrss) grew.
  The emulator runs in this process too, so both include its share of the work;
  the vault was filled before the sweep.

Printed next to the figures before the shared transport (9 calls per renewal, 5 per signing,
about 1 per certificate per no-op sweep, about 4 MB per certificate swept with a
CA bundle). A benchmark, not a test: the counts are exact, the memory is not.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12  # noqa: E402

from kvca_core import operations  # noqa: E402
from kvca_core.context import Context  # noqa: E402
from kvca_core.vocabulary import CA_TAG, ROLE_TAG  # noqa: E402
from kvca_core.operations import IssueRequest  # noqa: E402
from kvca_core.settings import Settings  # noqa: E402
from kvca_core.signing import IssuingCA, LocalSigner, create_intermediate, create_root  # noqa: E402
from kvemulator import Emulator  # noqa: E402
from benchkit import one_year_leaf, scratch  # noqa: E402  (bench/, the script's own folder)

BEFORE = {"renewal": 9, "signing": 5, "no-op sweep": 1.0, "memory per certificate (MB)": 4.0}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def _import_ca(vault, name: str, now: dt.datetime):
    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = await create_root(f"CN={name} Root", LocalSigner(root_key), years=10, now=now)
    inter = await create_intermediate(f"CN={name} Intermediate", inter_key.public_key(),
                                      IssuingCA(root, (), LocalSigner(root_key)), years=9, now=now)
    await vault.import_certificate(f"{name}-root", pkcs12.serialize_key_and_certificates(
        b"root", root_key, root, None, NoEncryption()))
    # Only a CA tagged as kvca's intermediate signs: what `kvca ca import` tags.
    await vault.import_certificate(name, pkcs12.serialize_key_and_certificates(
        b"intermediate", inter_key, inter, None, NoEncryption()), tags={ROLE_TAG: "intermediate"})
    return inter, inter_key


async def _fill(vault, inter, inter_key, count: int, now: dt.datetime) -> None:
    """`count` one-year certificates of the CA, imported with the kvca-ca tag (one call each)."""
    limit = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        name = f"leaf-{i:05d}"
        key, leaf = one_year_leaf(name, inter, inter_key, now)
        async with limit:
            await vault.import_certificate(name, pkcs12.serialize_key_and_certificates(
                name.encode(), key, leaf, [inter], NoEncryption()), tags={CA_TAG: "bench-ca"})

    await asyncio.gather(*(one(i) for i in range(count)))


def _counted(em: Emulator) -> tuple[int, str]:
    calls = collections.Counter(em.requests)
    em.requests.clear()
    detail = ", ".join(f"{n}x {route}" for (_method, route), n in sorted(calls.items(), key=lambda kv: kv[0][1]))
    return sum(calls.values()), detail


async def _measure(em: Emulator, certificates: int) -> dict[str, object]:
    # Every CA needs a policy: the field defaults, for every CA.
    ledger = scratch("kvca-bench-ledger-") / "ledger.db"
    env = {**em.environ(), "KVCA_SWEEP_SCHEDULE": "0 0 */6 * * *", "KVCA_ISSUANCE_POLICY": '{"*": {}}',
           "KVCA_LEDGER_TABLE_URL": f"sqlite:///{ledger}"}
    env.pop("KVCA_EVENTGRID_TOPIC_ENDPOINT")  # sign inline; publishing is not a vault call
    results: dict[str, object] = {}
    async with Context.open(Settings.from_env(env), credential=em.async_credential()) as ctx:
        inter, inter_key = await _import_ca(ctx.vault, "bench-ca", em.clock.now())
        await operations.issue(ctx, IssueRequest(name="renewed", ca="bench-ca", dns_names=("r.corp.internal",)))
        await operations.issue(ctx, IssueRequest(name="queued", ca="bench-ca", dns_names=("q.corp.internal",)),
                               sign=False)
        await ctx.authority.load("bench-ca")  # a warm instance: the CA is cached, its version still checked
        em.requests.clear()
        outcome = await operations.sign_pending(ctx, "queued")
        assert outcome.action == "signed", outcome
        results["signing"] = _counted(em)
        await _fill(ctx.vault, inter, inter_key, certificates, em.clock.now())
        em.requests.clear()
        before = _rss_mb()
        tracemalloc.start()
        started = time.monotonic()
        summary = await operations.sweep(ctx)  # nothing is due: every certificate is young
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        assert summary.failed == 0 and summary.renewed == 0 and summary.signed == 0, summary.to_dict()
        total, detail = _counted(em)
        pages = -(-summary.scanned // 25)
        results["sweep"] = (total, detail, summary.scanned, pages, seconds, peak, _rss_mb() - before)

        em.clock.set(em.clock.now() + dt.timedelta(days=340))  # "renewed" is due now
        await ctx.authority.load("bench-ca")
        em.requests.clear()
        outcome = await operations.renew(ctx, "renewed")
        assert outcome.action == "renewed", outcome
        results["renewal"] = _counted(em)
        # A "New Version" made by hand on a completed certificate (past the 5-minute guard).
        await ctx.vault.create_new_version("renewed", tags={CA_TAG: "bench-ca"})
        em.clock.set(em.clock.now() + dt.timedelta(minutes=10))
        await ctx.authority.load("bench-ca")
        em.requests.clear()
        outcome = await operations.sign_pending(ctx, "renewed")
        assert outcome.action == "signed", outcome
        results["signing, new version"] = _counted(em)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certificates", type=int, default=1000, help="certificates in the swept vault")
    args = parser.parse_args()
    with Emulator(vault_name="bench") as em:
        results = asyncio.run(_measure(em, args.certificates))
    renewal, renewal_detail = results["renewal"]
    signing, signing_detail = results["signing"]
    total, detail, scanned, pages, seconds, peak, grown = results["sweep"]
    per_cert = total / scanned
    print(f"kvca Key Vault calls (emulator, KVCA_TLS_CA_BUNDLE set; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpu)")
    print(f"  {'':34} {'now':>10} {'before':>10}")
    print(f"  {'calls per renewal':34} {renewal:>10} {BEFORE['renewal']:>10}    {renewal_detail}")
    print(f"  {'calls per signing, first version':34} {signing:>10} {BEFORE['signing']:>10}    {signing_detail}")
    again, again_detail = results["signing, new version"]
    print(f"  {'calls per signing, new version':34} {again:>10} {BEFORE['signing']:>10}    {again_detail}")
    print(f"  {'calls per certificate, no-op sweep':34} {per_cert:>10.2f} {BEFORE['no-op sweep']:>10.2f}    "
          f"{scanned} certificates, {total} calls ({pages} listing pages): {detail}")
    print(f"  {'peak traced memory, sweep (MB)':34} {peak:>10.1f} {BEFORE['memory per certificate (MB)'] * scanned:>10.0f}"
          f"    {scanned} certificates in {seconds:.1f} s (tracemalloc on); before: ~4 MB per certificate "
          f"(before the shared transport); ru_maxrss grew {grown:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
