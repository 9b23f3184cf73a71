"""What revocation costs the vault, and how fast the OCSP responder answers, at two vault sizes.

    .venv/bin/python bench/revocation.py [--certificates 300,3000] [--seconds 3]

For each size, a fresh emulator (in this process, over HTTPS) holds one CA made by `kvca ca create`
(its key never leaves the vault: CRLs and OCSP answers are signed through the keys API) and that
many managed certificates (imported with the kvca-ca tag, one call each: the vault's size is what
matters here, not who signed them), plus ten certificates kvca issued itself. Counted, as the
emulator answers them:

- Key Vault calls per revoke (the revocation recorded in the ledger, its mirror written in the
  vault, the CA key's CRL signed anew), and how many of those are keys-API signs;
- Key Vault calls per CRL signed (the anonymous CRL route on a cold cache);
- OCSP requests per second answered by `answer_ocsp`, over the issued serials (half of them
  revoked), with and without a nonce, and keys-API signs per request after the first answer of
  each (serial, status).

The ledger is SQLite in a temporary folder (what `make demo` uses); on Azure it is Table storage,
whose calls are not vault calls. The goal is the same cost at every size: revocation and CRLs read
the ledger, never a listing of the vault. Printed beside the numbers measured before the ledger
(3,126 calls per revoke at 3,000 certificates; 3 calls, one a sign, per OCSP request; about 70
OCSP requests per second). A benchmark, not a test: the counts are exact, the rates are not.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, pkcs12  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402

from kvca_core import operations, revocation  # noqa: E402
from kvca_core.ca import create_ca  # noqa: E402
from kvca_core.context import Context  # noqa: E402
from kvca_core.operations import IssueRequest  # noqa: E402
from kvca_core.settings import Settings  # noqa: E402
from kvca_core.vocabulary import CA_TAG  # noqa: E402
from kvemulator import Emulator  # noqa: E402
from benchkit import scratch  # noqa: E402  (bench/, the script's own folder)

CA = "bench-ca"
ISSUED = 10
BEFORE = {"revoke at 3000": 3126, "ocsp calls": 3, "ocsp signs": 1, "ocsp per second": 70}


def _counted(em: Emulator) -> tuple[int, int]:
    """(vault calls, of which keys-API signs) since the last count."""
    calls = collections.Counter(em.requests)
    em.requests.clear()
    signs = sum(n for (method, route), n in calls.items() if method == "POST" and route.endswith("/sign"))
    return sum(calls.values()), signs


async def _fill(vault, issuer: x509.Name, count: int, now: dt.datetime) -> None:
    """`count` one-year certificates naming the CA as issuer, imported with the kvca-ca tag."""
    limit = asyncio.Semaphore(16)
    signer = ec.generate_private_key(ec.SECP256R1())  # the vault does not check who signed an import

    async def one(i: int) -> None:
        name = f"leaf-{i:05d}"
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(f"CN={name}.bench.internal"))
                .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .sign(signer, hashes.SHA256()))
        async with limit:
            await vault.import_certificate(name, pkcs12.serialize_key_and_certificates(
                name.encode(), key, leaf, None, NoEncryption()), tags={CA_TAG: CA})

    await asyncio.gather(*(one(i) for i in range(count)))


def _request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


async def _ocsp_rate(ctx, em: Emulator, requests: list[bytes], seconds: float) -> tuple[float, float]:
    """(requests per second, keys-API signs per request) answering `requests` round and round."""
    em.requests.clear()
    done, start = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - start < seconds:  # at least one round
        for der in requests:
            answer = ocsp.load_der_ocsp_response(await revocation.answer_ocsp(ctx, CA, der))
            assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, answer.response_status
        done += len(requests)
    elapsed = time.perf_counter() - start
    _, signs = _counted(em)
    return done / elapsed, signs / done


async def _measure(certificates: int, seconds: float) -> dict[str, object]:
    with Emulator(vault_name="bench") as em:
        ledger = scratch("kvca-bench-ledger-") / "ledger.db"
        env = {**em.environ(), "KVCA_ISSUANCE_POLICY": '{"*": {"allowed_domains": ["bench.internal"]}}',
               "KVCA_LEDGER_TABLE_URL": f"sqlite:///{ledger}"}
        env.pop("KVCA_EVENTGRID_TOPIC_ENDPOINT", None)  # sign inline; publishing is not a vault call
        async with Context.open(Settings.from_env(env), credential=em.async_credential()) as ctx:
            await create_ca(ctx, CA, subject="CN=Bench CA", key="ec-p256", years=5)
            issuer = x509.load_der_x509_certificate((await ctx.vault.get_certificate(CA)).cer)
            issued = []
            for i in range(ISSUED):
                name = f"issued-{i}"
                await operations.issue(ctx, IssueRequest(name=name, ca=CA, dns_names=(f"{name}.bench.internal",)))
                issued.append(x509.load_der_x509_certificate((await ctx.vault.get_certificate(name)).cer))
            started = time.perf_counter()
            await _fill(ctx.vault, issuer.subject, certificates, em.clock.now())
            filled = time.perf_counter() - started
            await ctx.authority.keys(CA)  # a warm instance: the CA's keys are cached
            em.requests.clear()
            revoked = []
            for i in range(0, ISSUED, 2):
                await revocation.revoke(ctx, f"issued-{i}", reason="keyCompromise")
                revoked.append(_counted(em))
            ctx.__dict__.pop("_kvca_crl_cache", None)  # a cold CRL cache, as after a restart
            em.requests.clear()
            await revocation.publish_crl(ctx, CA)
            crl = _counted(em)
            plain = [_request(c, issuer, None) for c in issued]
            nonced = [_request(c, issuer, os.urandom(16)) for c in issued]
            em.requests.clear()
            first_rate, first_signs = await _ocsp_rate(ctx, em, plain, 0)  # one round: each answer signed once
            rate, signs = await _ocsp_rate(ctx, em, plain, seconds)
            nonce_rate, nonce_signs = await _ocsp_rate(ctx, em, nonced, seconds)
    return {"revoke": revoked, "crl": crl, "first": (first_rate, first_signs), "ocsp": (rate, signs),
            "nonce": (nonce_rate, nonce_signs), "filled": filled}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certificates", default="300,3000", help="vault sizes, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="time for each OCSP rate")
    args = parser.parse_args()
    sizes = [int(s) for s in args.certificates.split(",")]
    print(f"kvca revocation against the emulator (python {sys.version.split()[0]}, {os.cpu_count()} cpu); "
          f"CA key in the vault, ledger SQLite")
    rows = []
    for size in sizes:
        r = asyncio.run(_measure(size, args.seconds))
        calls = [c for c, _ in r["revoke"]]
        signs = [s for _, s in r["revoke"]]
        rows.append((size, sum(calls) / len(calls), sum(signs) / len(signs), *r["crl"], *r["first"], *r["ocsp"],
                     *r["nonce"], r["filled"]))
    print(f"  {'managed certificates':32}" + "".join(f"{row[0] + ISSUED:>12}" for row in rows))
    labels = ["vault calls per revoke", "  of which keys-API signs", "vault calls per CRL (cold)",
              "  of which keys-API signs", "OCSP first answers per second", "  keys-API signs per request",
              "OCSP repeated, per second", "  keys-API signs per request", "OCSP with nonces, per second",
              "  keys-API signs per request"]
    for i, label in enumerate(labels, start=1):
        print(f"  {label:32}" + "".join(f"{row[i]:>12.2f}" if isinstance(row[i], float) else f"{row[i]:>12}"
                                        for row in rows))
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        print(f"  ratio {large[0] + ISSUED} / {small[0] + ISSUED} certificates: calls per revoke "
              f"{large[1] / small[1]:.2f}, per CRL {large[3] / max(small[3], 1):.2f} (goal 1.00)")
    print(f"  before the ledger: {BEFORE['revoke at 3000']} calls per revoke at 3,000 certificates; "
          f"{BEFORE['ocsp calls']} calls ({BEFORE['ocsp signs']} sign) per OCSP request, "
          f"~{BEFORE['ocsp per second']} requests per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
