"""How long kvca takes to sign one CRL of a CA with many revocations.

    .venv/bin/python bench/crl.py [--entries 1000] [--seconds 2]

For EC P-256 and RSA 2048 issuing CAs: the time to build and sign one CRL of
N entries (one pass, one signature) with the key in memory and with a
remote signer whose "vault" answers in-process (bench/signing.py's), the time
of one raw signature, and the ratio (what building N entries adds to one
signature). The listing of revocation records from the vault (one page per 25
certificates plus one versions call per certificate) is not in these numbers.
A benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

from kvca_core.signing import LocalSigner, RemoteSigner, create_root, random_serial  # noqa: E402
from kvca_core.signing.crl import REASONS, RevokedEntry, sign_crl  # noqa: E402
from signing import ISSUERS, arate, in_process_vault, rate  # noqa: E402  (bench/signing.py)


async def main(entries: int, seconds: float) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    reasons = list(REASONS)
    records = [RevokedEntry(random_serial(), now - dt.timedelta(minutes=i), reasons[i % len(reasons)])
               for i in range(entries)]
    print(f"CRL of {entries} entries, one signature each; {seconds:g} s per measurement")
    print(f"{'issuer':<10} {'signer':<7} {'ms/CRL':>8} {'ms/sig':>8} {'ratio':>6} {'KB':>6}")
    for label, make in ISSUERS[:2]:
        key = make()
        local = LocalSigner(key)
        ca = await create_root("CN=Bench CRL CA", local, years=5, now=now)
        remote = RemoteSigner(key.public_key(), in_process_vault(key))
        one_sig = 1000 / rate(lambda: local.sign_bytes(b"x" * 256), seconds)
        for name, signer in (("local", local), ("remote", remote)):
            crl = await sign_crl(ca, signer, records, now=now)
            assert len(crl) == entries and crl.is_signature_valid(key.public_key())
            per = 1000 / await arate(lambda: sign_crl(ca, signer, records, now=now), seconds)
            size = len(crl.public_bytes(Encoding.DER)) / 1024
            print(f"{label:<10} {name:<7} {per:>8.1f} {one_sig:>8.2f} {per / one_sig:>6.0f} {size:>6.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(main(args.entries, args.seconds))
