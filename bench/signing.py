"""How fast kvca issues certificates, next to what one raw signature costs.

    .venv/bin/python bench/signing.py [--seconds 2]

For EC P-256, RSA 2048 and RSA 3072 issuing CAs: raw signatures per second
of the CA key, certificates issued per second through the whole pipeline
(parse, verify the CSR's signature, checks, build, sign, re-verify) with the
key in memory, and with a remote signer whose "vault" is an in-process
coroutine (so the remote path's own overhead shows, without network). The
ratio says what share of the signature rate survives the pipeline. A
benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
import cryptography  # noqa: E402

from kvca_core.signing import (IssuingCA, LocalSigner, RemoteSigner, create_intermediate,  # noqa: E402
                               create_root, issue_leaf, parse_subject)
from kvemulator._crypto import sign_digest  # noqa: E402  (the emulator's Key Vault sign; a bench may use it)

ISSUERS = [("EC P-256", lambda: ec.generate_private_key(ec.SECP256R1())),
           ("RSA 2048", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
           ("RSA 3072", lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072))]


def in_process_vault(key):
    """Key Vault's sign answered in this process by the emulator's implementation of it
    (digest in; raw r||s, PKCS#1 v1.5 or PSS out), without its HTTP layer."""
    async def sign(algorithm: str, digest: bytes) -> bytes:
        return sign_digest(key, algorithm, digest)
    return sign


def rate(fn, seconds: float) -> float:
    fn()  # warm-up
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        count += 1
    return count / elapsed


async def arate(fn, seconds: float) -> float:
    await fn()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await fn()
        count += 1
    return count / elapsed


async def main(seconds: float) -> None:
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(parse_subject("CN=api.bench.test"))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.bench.test"),
                                                       x509.DNSName("www.bench.test")]), critical=False)
           .sign(leaf_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    print(f"kvca signing benchmark: Python {platform.python_version()}, cryptography {cryptography.__version__}, "
          f"{os.cpu_count()} CPUs, {seconds:g} s per measurement; leaf key EC P-256, 2 DNS SANs")
    header = (f"{'issuer key':<10} {'raw sig/s':>10} {'issued/s local':>15} {'ratio':>6} "
              f"{'issued/s remote*':>17} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for label, make_key in ISSUERS:
        key = make_key()
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = await create_root("CN=Bench Root", LocalSigner(root_key), years=10)
        intermediate = await create_intermediate(f"CN=Bench {label} CA", key.public_key(),
                                                 IssuingCA(root, (), LocalSigner(root_key)), years=5)
        local = LocalSigner(key)
        tbs = intermediate.tbs_certificate_bytes  # a realistic message size for the raw signature
        raw = rate(lambda: local.sign_bytes(tbs), seconds)
        local_ca = IssuingCA(intermediate, (root,), local)
        remote_ca = IssuingCA(intermediate, (root,), RemoteSigner(key.public_key(), in_process_vault(key)))
        issued_local = await arate(lambda: issue_leaf(csr, ca=local_ca), seconds)
        issued_remote = await arate(lambda: issue_leaf(csr, ca=remote_ca), seconds)
        print(f"{label:<10} {raw:>10.0f} {issued_local:>15.0f} {issued_local / raw:>6.2f} "
              f"{issued_remote:>17.0f} {issued_remote / raw:>6.2f}")
    print("* remote: RemoteSigner with an in-process coroutine as the vault (no network); a real Key Vault "
          "adds one HTTPS round trip per certificate")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each measurement")
    asyncio.run(main(parser.parse_args().seconds))
