"""Device enrollment against Key Vault's keys-API limit: how fast kvca signs devices' own CSRs.

    .venv/bin/python bench/enroll.py [--count 5000] [--concurrency 64] [--route est|sign-csr]

Starts the Key Vault emulator in a process of its own (HTTPS on loopback: a vault is a service of its
own, and the emulator's Python would otherwise take its CPU from kvca's) with Key Vault's throttling on
(its documented limits: other key operations 4,000 per vault per 10 s, a keys-API sign among them;
learn.microsoft.com/azure/key-vault/general/service-limits), creates a CA with `kvca ca create`
(both keys in the vault, EC P-256, so every signing is a keys-API call) and gives each of COUNT
devices a one-time enrollment code. Outside the timed part it makes every device's key and CSR;
then it enrolls them all through the registered HTTP function (EST simpleenroll with the device's
code, or POST /api/cas/{ca}/sign-csr), CONCURRENCY at a time, with real func.HttpRequest values.

It prints the rate, its ratio to the keys API's limit for the CA's key (EC P-256: 4,000 per 10 s,
400 signs/s) and to `make bench-bulk`'s create path (2 certificates/s: Key Vault's 20 creates per
10 s, each certificate made in the vault being a create). A benchmark, not a test: the figures
depend on the machine and its load (the emulator runs on the same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CA = "fleet"
POLICY = {"external_csrs": True, "cn_forms": ["dns-name", "ip-address", "device-id"],
          "allowed_domains": ["fleet.example"]}
KEY_LIMIT_PER_S = 4000 / 10  # EC P-256 keys-API operations per second (Key Vault, per vault)
CREATE_PATH_PER_S = 20 / 10  # bench/bulk_issue.py: a certificate made in the vault is a key create


def device_csrs(count: int) -> list[tuple[str, bytes]]:
    """(device ID, base64 DER CSR) for each device; the keys are dropped once their CSRs are signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    csrs = []
    for number in range(count):
        device = f"device-{number:05d}"
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
               .sign(key, hashes.SHA256()))
        csrs.append((device, base64.encodebytes(csr.public_bytes(Encoding.DER))))
    return csrs


def _request(route: str, device: str, csr_b64: bytes, code: str | None):
    import azure.functions as func

    if route == "est":
        credentials = base64.b64encode(f"{device}:{code}".encode()).decode()
        return "kvca_est_simpleenroll", func.HttpRequest(
            method="POST", url=f"https://kvca.example/.well-known/est/{CA}/simpleenroll", body=csr_b64,
            headers={"Content-Type": "application/pkcs10", "Authorization": f"Basic {credentials}"},
            params={}, route_params={"ca": CA})
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + csr_b64 + b"-----END CERTIFICATE REQUEST-----\n"
    return "kvca_sign_csr", func.HttpRequest(
        method="POST", url=f"https://kvca.example/api/cas/{CA}/sign-csr",
        body=json.dumps({"csr": pem.decode(), "name": device}).encode(),
        headers={"Content-Type": "application/json"}, params={}, route_params={"ca": CA})


@contextmanager
def emulator(folder: Path) -> Iterator[dict[str, str]]:
    """`python -m kvemulator` on a free port, its exports (vault, TLS CA, identity, a SQLite ledger)
    in os.environ while the block runs; stopped with SIGTERM after."""
    process = subprocess.Popen([sys.executable, "-m", "kvemulator", "--port", "0", "--tls-dir", str(folder)],
                               stdout=subprocess.PIPE, text=True)
    exports: dict[str, str] = {}
    saved = dict(os.environ)
    try:
        for line in process.stdout:
            if line.startswith("export "):
                name, _, value = line[len("export "):].strip().partition("=")
                exports[name] = shlex.split(value)[0] if value else ""
                if name == "KVCA_LEDGER_TABLE_URL":  # the last line it prints
                    break
        if "KVCA_VAULT_URL" not in exports:
            raise SystemExit("the emulator did not start")
        os.environ.update(exports)
        yield exports
    finally:
        os.environ.clear()
        os.environ.update(saved)
        process.terminate()
        process.wait(timeout=30)


def control(exports: dict[str, str], path: str, body: dict) -> None:
    """POST to the emulator's control API (/_emulator/...)."""
    context = ssl.create_default_context(cafile=exports["KVCA_TLS_CA_BUNDLE"])
    request = urllib.request.Request(exports["KVCA_VAULT_URL"].rstrip("/") + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, context=context, timeout=30):
        pass


async def run(exports: dict[str, str], count: int, concurrency: int, route: str) -> int:
    import function_app
    from kvca_core import context
    from kvca_core.enrollment import DeviceEntry, make_codes

    import logging

    logging.getLogger("kvca_core").setLevel(logging.WARNING)  # function_app turns kvca's records on
    functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
    ctx = await context.shared()
    print(f"making {count} device keys and CSRs, and their enrollment codes (not timed) ...", flush=True)
    csrs = device_csrs(count)
    codes = {}
    if route == "est":
        codes = {c.device_id: c.code for c in await make_codes(ctx, CA, [DeviceEntry(d) for d, _ in csrs], days=1)}
    await ctx.authority.load(CA)  # the CA's chain loaded once, as a warm instance holds it
    control(exports, "/_emulator/throttling", {"enabled": True})  # Key Vault's limits, from a fresh window on
    limit = asyncio.Semaphore(concurrency)
    statuses: dict[int, int] = {}
    done = 0

    async def one(device: str, csr_b64: bytes) -> None:
        nonlocal done
        name, request = _request(route, device, csr_b64, codes.get(device))
        async with limit:
            response = await functions[name](request)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        done += 1
        if done % 500 == 0 or done == count:
            print(f"  {done}/{count} ({time.monotonic() - started:.1f} s)", flush=True)

    started, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(one(device, csr) for device, csr in csrs))
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    enrolled = sum(n for status, n in statuses.items() if status in (200, 201))
    recorded = len([r async for r in ctx.ledger.certificates(CA)])
    await context.reset_shared()
    rate = enrolled / elapsed
    print(f"\nenrolled {enrolled} of {count} devices in {elapsed:.1f} s through "
          f"{'EST simpleenroll' if route == 'est' else 'POST /api/cas/{ca}/sign-csr'} "
          f"({concurrency} at a time); HTTP statuses {dict(sorted(statuses.items()))}; "
          f"{recorded} certificates in the ledger")
    print(f"rate: {rate:.1f} signed certificates/s; kvca's CPU time per enrollment {cpu / count * 1000:.1f} ms "
          f"(the emulator's is its own process's)")
    print(f"ratio to the keys API's limit for the CA's EC P-256 key ({KEY_LIMIT_PER_S:.0f} signs/s): "
          f"{rate / KEY_LIMIT_PER_S:.2f} (this instance may use KVCA_EXTERNAL_SIGN_SHARE="
          f"{ctx.settings.external_sign_share} of it)")
    print(f"ratio to the create path of `make bench-bulk` ({CREATE_PATH_PER_S:.0f} certificates/s): "
          f"{rate / CREATE_PATH_PER_S:.0f}x (goal: at least 50x)")
    return 0 if enrolled == count == recorded else 1


def create_ca() -> None:
    """`kvca ca create` as an operator runs it: both keys generated in the vault."""
    from kvca_core.cli import main

    code = main(["ca", "create", CA, "--subject", "CN=Fleet Issuing CA, O=kvca bench", "--key", "ec-p256",
                 "--years", "2", "--policy", json.dumps(POLICY)])
    if code != 0:
        raise SystemExit(f"kvca ca create failed with exit code {code}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="devices to enroll (default 5000)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument("--route", choices=("est", "sign-csr"), default="est",
                        help="EST simpleenroll with a one-time code (default), or the JSON route")
    args = parser.parse_args()
    import cryptography

    print(f"kvca enrollment bench: Python {platform.python_version()}, cryptography {cryptography.__version__}, "
          f"{os.cpu_count()} CPUs; {args.count} devices, {args.concurrency} at a time, route {args.route}")
    import logging

    logging.basicConfig(level=logging.ERROR)  # a refusal is counted below, not logged line by line
    folder = Path(tempfile.mkdtemp(prefix="kvca-bench-"))
    try:
        with emulator(folder) as exports:
            os.environ["KVCA_ISSUANCE_POLICY"] = ""
            create_ca()
            return asyncio.run(run(exports, args.count, args.concurrency, args.route))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
