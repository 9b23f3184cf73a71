"""How the Key Vault emulator scales from 1,000 to 10,000 certificates.

    .venv/bin/python bench/emulator_scale.py [--sizes 1000 10000] [--writes 200] [--kvemulator DIR]

One emulator in this process (HTTPS on loopback), filled with SIZE managed certificates (EC
P-256 leaves of one CA, tagged kvca-ca, imported through the emulator's Python path
`Emulator.import_certificate`: no HTTP, so the fill is not what is measured), then, for each
size in turn (the vault grows from one to the next):

- listing every certificate through the real SDK (`list_properties_of_certificates`, pages of 25);
- a no-op `kvca_core.operations.sweep` over them (nothing is due: one-year leaves), and how
  much of its time is beyond the floor kvca's read pace (KVCA_SWEEP_READ_SHARE) sets for its calls;
- WRITES tag updates through the SDK (`update_certificate_properties`), each of which used to
  scan the whole vault for expiry events.

It prints the seconds of each and their ratio between the largest and the smallest size: the
ratio of the sizes (10) means linear. `--kvemulator DIR` runs the same against another copy of
the package (DIR holds a `kvemulator/` folder), e.g. an older commit's:

    git archive <commit> kvemulator | tar -x -C /tmp/old && bench/emulator_scale.py --kvemulator /tmp/old

A benchmark, not a test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000],
                        help="vault sizes, ascending (default 1000 10000)")
    parser.add_argument("--writes", type=int, default=200, help="SDK writes timed per size (default 200)")
    parser.add_argument("--kvemulator", type=Path, default=None,
                        help="a folder holding another copy of the kvemulator package to measure")
    return parser.parse_args()


ARGS = _parse()
sys.path.insert(0, str(ROOT))
if ARGS.kvemulator is not None:
    sys.path.insert(0, str(ARGS.kvemulator.resolve()))

from azure.keyvault.certificates import CertificateClient  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

import kvemulator  # noqa: E402
from kvca_core import operations  # noqa: E402
from kvca_core.context import Context  # noqa: E402
from kvca_core.vocabulary import CA_TAG, ROLE_TAG  # noqa: E402
from kvca_core.settings import Settings  # noqa: E402
from kvca_core.signing import IssuingCA, LocalSigner, create_intermediate, create_root  # noqa: E402
from kvemulator import Emulator  # noqa: E402
from benchkit import one_year_leaf, scratch  # noqa: E402  (bench/, the script's own folder)

CA = "bench-ca"


def _pem(key, *certs: x509.Certificate) -> str:
    """PEM text of a key and its certificates: what an import takes without a PFX's KDF."""
    text = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    return (text + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)).decode()


def _importer(em: Emulator):
    """The emulator's Python import; an older package without it: its store's import."""
    if hasattr(em, "import_certificate"):
        return lambda name, value, tags: em.import_certificate(name, value, tags=tags)
    return lambda name, value, tags: em._vault.import_certificate(name, {"value": value, "tags": tags})


def _make_ca(now: dt.datetime):
    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = asyncio.run(create_root(f"CN={CA} Root", LocalSigner(root_key), years=10, now=now))
    inter = asyncio.run(create_intermediate(f"CN={CA} Intermediate", inter_key.public_key(),
                                            IssuingCA(root, (), LocalSigner(root_key)), years=9, now=now))
    return root, root_key, inter, inter_key


def fill(em: Emulator, ca, start: int, stop: int) -> float:
    """Leaves start..stop-1 of the CA, one year each; the seconds it took."""
    _root, _root_key, inter, inter_key = ca
    importer, now = _importer(em), em.clock.now()
    started = time.monotonic()
    for i in range(start, stop):
        name = f"leaf-{i:05d}"
        key, leaf = one_year_leaf(name, inter, inter_key, now)
        importer(name, _pem(key, leaf, inter), {CA_TAG: CA})
    return time.monotonic() - started


def time_listing(em: Emulator) -> tuple[float, int]:
    with CertificateClient(em.url, em.credential(), **em.client_kwargs()) as client:
        started = time.monotonic()
        count = sum(1 for _ in client.list_properties_of_certificates())
        return time.monotonic() - started, count


def time_writes(em: Emulator, size: int, writes: int) -> float:
    """Seconds per SDK write (a tag update of a random certificate)."""
    rng = random.Random(size)
    with CertificateClient(em.url, em.credential(), **em.client_kwargs()) as client:
        client.update_certificate_properties("leaf-00000", tags={CA_TAG: CA})  # warm the connection
        started = time.monotonic()
        for i in range(writes):
            client.update_certificate_properties(f"leaf-{rng.randrange(size):05d}", tags={CA_TAG: CA, "n": str(i)})
        return (time.monotonic() - started) / writes


async def time_sweep(em: Emulator) -> tuple[float, operations.SweepSummary]:
    # kvca refuses to work without its ledger: a SQLite one, off Azure.
    ledger = scratch("kvca-bench-ledger-") / "ledger.db"
    env = {**em.environ(), "KVCA_SWEEP_SCHEDULE": "0 0 */6 * * *", "KVCA_ISSUANCE_POLICY": '{"*": {}}',
           "KVCA_LEDGER_TABLE_URL": f"sqlite:///{ledger}"}
    env.pop("KVCA_EVENTGRID_TOPIC_ENDPOINT")
    async with Context.open(Settings.from_env(env), credential=em.async_credential()) as ctx:
        started = time.monotonic()
        summary = await operations.sweep(ctx)
        return time.monotonic() - started, summary


def pace_floor(summary: operations.SweepSummary) -> float:
    """The least time the sweep's vault calls take at kvca's read pace, as a real vault would see
    them: `read_cap` calls in any `read_window` seconds, so N calls need ceil(N / cap) - 1 windows."""
    return max(0, -(-summary.reads // summary.read_cap) - 1) * summary.read_window


def import_ca(em: Emulator, ca) -> None:
    root, root_key, inter, inter_key = ca
    importer = _importer(em)
    importer(f"{CA}-root", _pem(root_key, root), None)
    importer(CA, _pem(inter_key, inter), {ROLE_TAG: "intermediate"})


def main() -> int:
    sizes = sorted(ARGS.sizes)
    results: dict[int, dict[str, float]] = {}
    print(f"kvemulator from {Path(kvemulator.__file__).parent}; python {platform.python_version()}, "
          f"{os.cpu_count()} cpu", flush=True)
    with Emulator(vault_name="bench") as em:
        ca = _make_ca(em.clock.now())
        import_ca(em, ca)
        filled = 0
        for size in sizes:
            fill_seconds = fill(em, ca, filled, size)
            filled = size
            listing, listed = time_listing(em)
            sweep, summary = asyncio.run(time_sweep(em))
            assert listed == size + 2 and summary.managed == size, (listed, summary.to_dict())
            assert summary.renewed == summary.signed == summary.failed == 0, summary.to_dict()
            per_write = time_writes(em, size, ARGS.writes)
            floor = pace_floor(summary)
            results[size] = {"list": listing, "sweep": sweep, "beyond the pace": max(sweep - floor, 1e-3),
                             "write": per_write}
            print(f"  {size:>6} certificates: filled in {fill_seconds:6.1f} s; list {listing:6.2f} s, "
                  f"no-op sweep {sweep:6.2f} s, one write {per_write * 1000:6.2f} ms", flush=True)
            print(f"  {'':>6}   the sweep's {summary.reads} vault calls at kvca's read pace ({summary.read_cap} per "
                  f"{summary.read_window:g} s, KVCA_SWEEP_READ_SHARE of Key Vault's limit) take at least "
                  f"{floor:.1f} s: the emulator and kvca spend {sweep - floor:.1f} s beyond it", flush=True)
    small, large = results[sizes[0]], results[sizes[-1]]
    print(f"ratio {sizes[-1]}/{sizes[0]} (sizes: {sizes[-1] / sizes[0]:g}; a write: 1 means it does not grow):")
    for what in ("list", "sweep", "beyond the pace", "write"):
        print(f"  {what:15} {large[what] / small[what]:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
