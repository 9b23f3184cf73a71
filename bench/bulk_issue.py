"""Bulk issuance against Key Vault's certificate-create limit: how close kvca gets to it.

    .venv/bin/python bench/bulk_issue.py [--count 500] [--limit 20]

Starts the Key Vault emulator in this process (HTTPS on loopback) with its throttling on at
Key Vault's documented limits (software-key creates: 20 per vault per 10 seconds; creating a
certificate creates a key, docs/keyvault-behaviour.md, "Throttling"), creates a CA whose keys stay in the
vault, and issues COUNT client certificates (device-NNNN.fleet.example, EC P-256) through
`kvca_core.operations.issue_many`, the operation `kvca request --from FILE` and the HTTP batch
route call. It prints the throughput per 10 seconds and its ratio to the create limit: 1.00
means every create window was used in full. A benchmark, not a test: the figure depends on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo.run import kvca_on  # noqa: E402
from kvemulator import Emulator  # noqa: E402
from benchkit import scratch  # noqa: E402  (bench/, the script's own folder)

WINDOW = 10.0  # Key Vault's throttling window, seconds


async def run(em: Emulator, count: int, limit: int) -> int:
    from kvca_core import context, operations
    from kvca_core.ca import create_ca

    ctx = await context.shared()
    # Its name constraint becomes its issuance policy (a CA without one issues nothing).
    await create_ca(ctx, "fleet", subject="CN=Fleet Issuing CA, O=kvca bench", key="ec-p256", years=2,
                    permitted_dns=["fleet.example"])
    # The CA's own creates are behind us: start from a fresh window, limits on.
    em.throttling(True, {"key-create": limit})
    requests = [operations.IssueRequest(name=f"device-{i:04d}", ca="fleet",
                                        dns_names=(f"device-{i:04d}.fleet.example",), profile="client",
                                        key="ec-p256", validity_months=12)
                for i in range(count)]
    done = 0

    def progress(outcome) -> None:
        nonlocal done
        done += 1
        if done % 50 == 0 or done == count:
            print(f"  {done}/{count} ({time.monotonic() - started:.0f} s)", flush=True)

    started = time.monotonic()
    try:
        outcomes = await operations.issue_many(ctx, requests, progress=progress)
    finally:
        await context.reset_shared()
    elapsed = time.monotonic() - started
    issued = sum(1 for o in outcomes if o.action == operations.ISSUED)
    failed = [o for o in outcomes if o.action == operations.FAILED]
    per_window = issued / elapsed * WINDOW
    print(f"\nissued {issued} of {count} client certificates in {elapsed:.1f} s "
          f"({len(failed)} failed{': ' + failed[0].reason if failed else ''})")
    print(f"throughput: {per_window:.2f} certificates per {WINDOW:.0f} s; Key Vault's create limit: "
          f"{limit} per {WINDOW:.0f} s")
    print(f"ratio to the create limit: {per_window / limit:.2f}")
    # Windows are whole: COUNT creates need ceil(COUNT / limit) windows, the last one started
    # (ceil - 1) windows after the first. An ideal client's ratio is therefore a little above
    # 1.00 for a short run and tends to 1.00 for a long one.
    windows = -(-count // limit)
    if windows > 1:
        ideal = count / ((windows - 1) * WINDOW) * WINDOW / limit
        print(f"an ideal client's ratio for {count} certificates: {ideal:.2f} (kvca reaches "
              f"{per_window / limit / ideal:.0%} of it)")
    return 0 if issued == count else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="certificates to issue (default 500)")
    parser.add_argument("--limit", type=int, default=20, help="creates per 10 s (default: Key Vault's 20)")
    args = parser.parse_args()
    import cryptography

    print(f"kvca bulk issuance bench: Python {platform.python_version()}, cryptography {cryptography.__version__}, "
          f"{os.cpu_count()} CPUs; {args.count} certificates, create limit {args.limit} per {WINDOW:.0f} s")
    import logging

    logging.basicConfig(level=logging.ERROR)  # a refused request is counted below, not logged line by line
    tls = scratch("kvca-bench-")
    em = Emulator(vault_name="kvca-bench", tls_dir=tls)
    em.start()
    try:
        with kvca_on(em, tls):
            return asyncio.run(run(em, args.count, args.limit))
    finally:
        em.stop()
        shutil.rmtree(tls, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
