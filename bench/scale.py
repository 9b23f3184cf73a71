"""Renewal at fleet scale, against the emulator with Key Vault's throttling on.

    .venv/bin/python bench/scale.py [--certificates 3000] [--due 600] [--budget 120]
                                    [--processes 4] [--process-due 200]

Part 1. One vault of CERTIFICATES managed certificates, DUE of them due (expiring within 1 to 29
days; random names, so the listing's alphabetical order says nothing of urgency), swept again and
again, each sweep cut at BUDGET seconds (KVCA_SWEEP_BUDGET_SECONDS), until every due one is renewed.
Key Vault's limits as documented: 20 creates and 4,000 other transactions per 10 s, 429s without
Retry-After. It prints:

- renewals per second while renewing (from each sweep's start to its last renewal), as a ratio to
  Key Vault's ceiling of 2 per second: goal >= 0.9;
- the order: of the N most urgent, how many were among the first N renewed (N: the first sweep's
  renewals), and Spearman's rank correlation of the renewal order with expiry (1: strictly most
  urgent first): goal close to 1;
- requests left half done (created, not merged) after each cut: goal 0;
- the most vault calls other than creates in any 10 s of the sweeps, against Key Vault's 4,000 and
  the sweeps' cap (KVCA_SWEEP_READ_SHARE).

Part 2. PROCESSES processes sweep one vault of PROCESS_DUE due certificates at the same time, with
one ledger (a SQLite file; Table Storage in Azure): the creates per 10 s they make together,
counted from the emulator's request log (the most in any 10 s, and the most in one 10-second
window of the clock) against the limit of 20, and creates per renewal (1: none throttled, none a
duplicate).

A benchmark, not a test: the figures depend on the machine and its load (several minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from kvca_core import operations  # noqa: E402
from kvca_core.context import Context  # noqa: E402
from kvca_core.settings import Settings  # noqa: E402
from kvca_core.signing import IssuingCA, LocalSigner, create_intermediate, create_root  # noqa: E402
from kvca_core.vocabulary import CA_TAG, ROLE_TAG  # noqa: E402
from benchkit import scratch  # noqa: E402  (bench/, the script's own folder)

CA = "bench-ca"
CEILING = 2.0  # renewals per second: Key Vault's 20 creates per 10 s
CREATE_LIMIT, VAULT_LIMIT = 20, 4000
CREATE = "POST /certificates/{name}/create"


class Stamped(list):
    """The emulator's request log (it appends (method, "METHOD route")), each entry kept as
    (Unix time, method, route)."""

    def append(self, item) -> None:
        super().append((time.time(), *item))


def most_in_window(times: list[float], window: float = 10.0) -> int:
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0)


def _pem(key, *certs: x509.Certificate) -> str:
    text = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    return (text + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)).decode()


def fill(em, count: int, due: int, seed: int) -> dict[str, dt.datetime]:
    """The CA (imported the recipe's way) and `count` leaves, `due` of them expiring within 1 to 29
    days; imported through the emulator's Python path (no HTTP). Returns each due leaf's expiry."""
    now = em.clock.now()
    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = asyncio.run(create_root(f"CN={CA} Root", LocalSigner(root_key), years=10, now=now))
    inter = asyncio.run(create_intermediate(f"CN={CA} Intermediate", inter_key.public_key(),
                                            IssuingCA(root, (), LocalSigner(root_key)), years=9, now=now))
    em.import_certificate(f"{CA}-root", _pem(root_key, root))
    em.import_certificate(CA, _pem(inter_key, inter), tags={ROLE_TAG: "intermediate"})
    rng = random.Random(seed)
    expiries: dict[str, dt.datetime] = {}
    for i in range(count):
        name = f"c{rng.getrandbits(48):012x}"
        if i < due:
            not_before, not_after = now - dt.timedelta(days=300), now + dt.timedelta(days=rng.uniform(1, 29))
            expiries[name] = not_after
        else:
            not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=rng.uniform(200, 365))
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(f"CN={name}.corp.internal"))
                .issuer_name(inter.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"{name}.corp.internal")]), False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .sign(inter_key, hashes.SHA256()))
        em.import_certificate(name, _pem(key, leaf, inter), tags={CA_TAG: CA})
    return expiries


def environment(em, ledger: Path, budget: float) -> dict[str, str]:
    env = {**em.environ(), "KVCA_SWEEP_SCHEDULE": "0 0 */6 * * *", "KVCA_ISSUANCE_POLICY": '{"*": {}}',
           "KVCA_LEDGER_TABLE_URL": f"sqlite:///{ledger}", "KVCA_SWEEP_BUDGET_SECONDS": f"{budget:g}"}
    env.pop("KVCA_EVENTGRID_TOPIC_ENDPOINT")  # sign inline; publishing is not what is measured
    return env


async def half_done(ctx, names) -> int:
    """How many of `names` have a request in progress (created, never merged)."""
    limit = asyncio.Semaphore(16)

    async def one(name: str) -> bool:
        async with limit:
            pending = await ctx.vault.get_pending(name)
            return pending is not None and pending.in_progress

    return sum(await asyncio.gather(*(one(n) for n in names)))


async def sweeps(em, expiries: dict[str, dt.datetime], budget: float, ledger: Path) -> dict:
    renewed: list[str] = []
    rows, windows, intervals = [], [], []
    async with Context.open(Settings.from_env(environment(em, ledger, budget)),
                            credential=em.async_credential()) as ctx:
        for number in range(1, 40):
            started = time.time()
            last = [started]

            def progress(outcome, last=last) -> None:
                if outcome.action == "renewed":
                    renewed.append(outcome.name)
                    last[0] = time.time()

            summary = await operations.sweep(ctx, progress=progress)
            ended = time.time()
            intervals.append((started, ended))
            windows.append((summary.renewed, last[0] - started))
            left_half_done = await half_done(ctx, [n for n in expiries if n not in set(renewed)])
            rows.append((number, summary.renewed, summary.left, summary.failed, ended - started, left_half_done,
                         summary.peak_reads, f"{summary.read_cap} per {summary.read_window:g} s"))
            print(f"  sweep {number}: renewed {summary.renewed:4}, left {summary.left:4}, failed {summary.failed}, "
                  f"{ended - started:6.1f} s, half-done requests after it: {left_half_done}, calls {summary.reads} "
                  f"(at most {summary.peak_reads} per {summary.read_window:g} s, cap {summary.read_cap})", flush=True)
            if len(set(renewed)) >= len(expiries) or summary.renewed == 0:
                break
    return {"renewed": renewed, "rows": rows, "windows": windows, "intervals": intervals}


def order_figures(renewed: list[str], expiries: dict[str, dt.datetime], first: int) -> tuple[int, float]:
    urgency = sorted(expiries, key=lambda n: expiries[n])
    rank = {name: i for i, name in enumerate(urgency)}
    seen = list(dict.fromkeys(n for n in renewed if n in rank))
    top = len(set(seen[:first]) & set(urgency[:first]))
    n = len(seen)
    among = {name: j for j, name in enumerate(sorted(seen, key=rank.__getitem__))}  # urgency among the renewed
    d2 = sum((i - among[name]) ** 2 for i, name in enumerate(seen))
    rho = 1 - 6 * d2 / (n * (n * n - 1)) if n > 1 else 1.0
    return top, rho


def part_one(args) -> None:
    from kvemulator import Emulator

    print(f"part 1: {args.certificates} certificates, {args.due} due, sweeps cut at {args.budget:g} s; "
          f"throttling: {CREATE_LIMIT} creates and {VAULT_LIMIT} other calls per 10 s, no Retry-After", flush=True)
    with Emulator(vault_name="bench") as em:
        expiries = fill(em, args.certificates, args.due, seed=1)
        em.requests = Stamped()
        em.throttling(True)
        ledger = scratch("kvca-bench-scale-") / "ledger.db"
        result = asyncio.run(sweeps(em, expiries, args.budget, ledger))
        stamps = list(em.requests)
    renewed, windows = result["renewed"], result["windows"]
    count = sum(r for r, _ in windows)
    renewing = sum(s for _, s in windows)
    rate = count / renewing if renewing else 0.0
    first = windows[0][0] if windows else 0
    top, rho = order_figures(renewed, expiries, first)
    calls = [t for t, _m, route in stamps if route != CREATE]
    per_sweep = [most_in_window([t for t in calls if a <= t <= b]) for a, b in result["intervals"]]
    peak = max(per_sweep, default=0)
    # Sweeps one after the other (here, not on a 6-hour timer) each have their own pace: 10 s that
    # span the end of one and the start of the next may hold more than one cap.
    overall = most_in_window([t for t in calls if any(a <= t <= b for a, b in result["intervals"])])
    cap = result["rows"][0][7] if result["rows"] else 0
    cuts = [row[5] for row in result["rows"][:-1]]
    print(f"renewals: {len(set(renewed))} of {len(expiries)} due in {len(result['rows'])} sweeps")
    print(f"  renewals per second while renewing: {rate:.2f}, ratio to the {CEILING:g}/s ceiling: "
          f"{rate / CEILING:.2f} (goal >= 0.9)")
    print(f"  order: {top} of the {first} most urgent were among the first {first} renewed ({top / max(1, first):.0%}); "
          f"rank correlation with expiry {rho:.3f} (1: most urgent first)")
    print(f"  half-done requests after each cut: {cuts or [0]} (goal 0)")
    print(f"  most vault calls other than creates in any 10 s of one sweep: {peak} = {peak / VAULT_LIMIT:.0%} of "
          f"Key Vault's {VAULT_LIMIT} (a sweep's cap: {cap}); across back-to-back sweeps: {overall}")


def part_two(args) -> None:
    from kvemulator import Emulator

    print(f"part 2: {args.processes} processes sweep one vault of {args.process_due} due certificates at once", flush=True)
    with Emulator(vault_name="bench") as em:
        expiries = fill(em, args.process_due, args.process_due, seed=2)
        em.requests = Stamped()
        em.throttling(True)
        ledger = scratch("kvca-bench-shared-") / "ledger.db"
        env = {**os.environ, **environment(em, ledger, 510)}
        started = time.time()
        workers = [subprocess.Popen([sys.executable, __file__, "--worker"], env=env, stdout=subprocess.PIPE, text=True)
                   for _ in range(args.processes)]
        summaries = [json.loads(w.communicate()[0].strip().splitlines()[-1]) for w in workers]
        seconds = time.time() - started
        creates = [t for t, _m, route in em.requests if route == CREATE]
    renewed = sum(s["renewed"] for s in summaries)
    aligned: dict[int, int] = {}
    for t in creates:
        aligned[int(t // 10)] = aligned.get(int(t // 10), 0) + 1
    print(f"  renewed {renewed} of {len(expiries)} in {seconds:.0f} s ({', '.join(str(s['renewed']) for s in summaries)} "
          f"by process), failed {sum(s['failed'] for s in summaries)}")
    print(f"  creates: {len(creates)} for {renewed} renewals ({len(creates) / max(1, renewed):.2f} per renewal; "
          f"a throttled create is tried again and counted twice)")
    print(f"  creates per 10 s, all processes together: at most {most_in_window(creates)} in any 10 s, "
          f"at most {max(aligned.values(), default=0)} in a 10-second window of the clock (limit {CREATE_LIMIT})")


async def worker() -> int:
    async with Context.open(Settings.from_env()) as ctx:
        summary = await operations.sweep(ctx)
    print(json.dumps({"renewed": summary.renewed, "failed": summary.failed, "skipped": summary.skipped,
                      "failures": summary.failures[:3]}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certificates", type=int, default=3000)
    parser.add_argument("--due", type=int, default=600)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per sweep (KVCA_SWEEP_BUDGET_SECONDS)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--process-due", type=int, default=200)
    parser.add_argument("--part", choices=("1", "2", "both"), default="both")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return asyncio.run(worker())
    print(f"kvca at fleet scale (emulator; python {sys.version.split()[0]}, {os.cpu_count()} cpu)", flush=True)
    if args.part in ("1", "both"):
        part_one(args)
    if args.part in ("2", "both"):
        part_two(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
