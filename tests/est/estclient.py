"""The device's side of EST, as RFC 7030's own examples run it: curl for the requests, openssl to make
the key and CSR and to unpack the certs-only answers. Everything runs in the device's folder; the key
file is handed to openssl and curl only."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from esthelpers import Device, openssl


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


async def curl(device: Device, frontend, path: str, *args: str) -> Answer:
    """`curl -sS --cacert <front end CA> ... URL` in the device's folder; the answer as curl saw it."""
    answer, headers = device.folder / "answer.bin", device.folder / "headers.txt"
    for stale in (answer, headers):
        stale.unlink(missing_ok=True)
    command = ["curl", "-sS", "--cacert", str(frontend.cafile), "-o", answer.name, "-D", headers.name,
               "-w", "%{http_code}", *args, f"{frontend.url}{path}"]
    done = await asyncio.to_thread(subprocess.run, command, cwd=device.folder, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    lines = headers.read_text().splitlines()[1:] if headers.exists() else []
    parsed = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines) if k.strip()}
    return Answer(int(done.stdout.decode()), parsed, answer.read_bytes() if answer.exists() else b"")


async def enroll(device: Device, frontend, ca: str, *, code: str | None = None, reenroll: bool = False,
                 csr_b64: bytes | None = None, content_type: str = "application/pkcs10") -> Answer:
    """POST the device's CSR (base64 DER, openssl's 64-column lines) to simpleenroll, with its ID and
    code as HTTP Basic; or to simplereenroll with its current certificate (device.pem) over TLS."""
    (device.folder / "device.b64").write_bytes(csr_b64 if csr_b64 is not None else device.csr_der_base64())
    args = ["--data-binary", "@device.b64", "-H", f"Content-Type: {content_type}"]
    if code is not None:
        args += ["-u", f"{device.device_id}:{code}"]
    if reenroll:
        args += ["--cert", "device.pem", "--key", device.key.name]
    operation = "simplereenroll" if reenroll else "simpleenroll"
    return await curl(device, frontend, f"/.well-known/est/{ca}/{operation}", *args)


def unpack(device: Device, answer: Answer, name: str = "device.pem") -> list[x509.Certificate]:
    """A certs-only answer as the device unpacks it: `openssl base64 -d | openssl pkcs7 -print_certs`."""
    der = openssl("base64", "-d", cwd=device.folder, input=answer.body)
    pem = openssl("pkcs7", "-inform", "DER", "-print_certs", cwd=device.folder, input=der)
    (device.folder / name).write_bytes(pem)
    return x509.load_pem_x509_certificates(pem)


def device_files(device: Device) -> dict[str, Path]:
    return {p.name: p for p in device.folder.iterdir()}
