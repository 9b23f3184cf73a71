"""How the time to build and sign one CRL grows with its entry count.

    .venv/bin/python bench/crl.py [--entries 1000,10000,100000] [--seconds 2]

For an EC P-256 issuing CA: the time to build and sign one CRL (one pass, one
signature) of 1,000, 10,000 and 100,000 entries, with the key in memory and
with a remote signer whose "vault" answers in-process (bench/signing.py's),
and the ratios between consecutive sizes. Each size grows tenfold, so a build
linear in its entries shows ratios of about 10; a quadratic one about 100.
The best of the runs that fit in `--seconds` (at least two) is reported: the
least disturbed by other work on the machine. The reading of the records
(the ledger's one partition query) is not in these numbers.
A benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

from kvca_core.signing import LocalSigner, RemoteSigner, create_root, random_serial  # noqa: E402
from kvca_core.signing.crl import REASONS, RevokedEntry, sign_crl  # noqa: E402
from signing import in_process_vault  # noqa: E402  (bench/signing.py)


async def best_of(fn, seconds: float) -> float:
    """The shortest of the runs of `fn` that fit in `seconds` (at least two), in seconds."""
    best, start = float("inf"), time.perf_counter()
    runs = 0
    while runs < 2 or time.perf_counter() - start < seconds:
        began = time.perf_counter()
        await fn()
        best = min(best, time.perf_counter() - began)
        runs += 1
    return best


async def main(sizes: list[int], seconds: float) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    reasons = list(REASONS)
    key = ec.generate_private_key(ec.SECP256R1())
    local = LocalSigner(key)
    ca = await create_root("CN=Bench CRL CA", local, years=5, now=now)
    signers = (("local", local), ("remote", RemoteSigner(key.public_key(), in_process_vault(key))))
    print(f"CRL build + sign, EC P-256 CA, best of the runs in {seconds:g} s per size")
    print(f"{'entries':>8} {'signer':<7} {'ms/CRL':>9} {'ratio':>6} {'KB':>7}")
    previous: dict[str, float] = {}
    for size in sizes:
        records = [RevokedEntry(random_serial(), now - dt.timedelta(seconds=i), reasons[i % len(reasons)])
                   for i in range(size)]
        for name, signer in signers:
            crl = await sign_crl(ca, signer, records, now=now)
            assert len(crl) == size and crl.is_signature_valid(key.public_key())
            took = await best_of(lambda: sign_crl(ca, signer, records, now=now), seconds)
            ratio = f"{took / previous[name]:>6.1f}" if name in previous else f"{'':>6}"
            previous[name] = took
            size_kb = len(crl.public_bytes(Encoding.DER)) / 1024
            print(f"{size:>8} {name:<7} {took * 1000:>9.1f} {ratio} {size_kb:>7.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="1000,10000,100000",
                        help="comma-separated entry counts, each tenfold the last for ratios of ~10")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(main([int(n) for n in args.entries.split(",")], args.seconds))
