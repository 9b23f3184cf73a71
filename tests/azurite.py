"""Azurite, Microsoft's Azure Storage emulator (npm), for the tests that need Blob or Table storage.

    with Azurite(tmp_path / "azurite", "table") as server:   # or "blob"
        ...   # server.account_url, server.credential()

One service per process (`azurite-blob`, `azurite-table`), on 127.0.0.1 and a free port, its
data in a folder of the test's.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

AZURITE_VERSION = "3.35.0"  # 3.37 needs a newer Node than Debian's
# Azurite's well-known development account (learn.microsoft.com/azure/storage/common/storage-use-azurite,
# "Well-known storage account and key"): public, and good only for the emulator.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
REPO = Path(__file__).resolve().parents[1]
# What answers (403 without a credential) once each service is up.
_PROBES = {"blob": "?comp=list", "table": "/Tables"}


def azurite_binary(service: str = "blob") -> Path:
    """`<repo>/.azurite/node_modules/.bin/azurite-<service>`, installed with npm when missing
    (`.ci/run` installs it the same way). A missing npm fails the test, never skips it."""
    binary = REPO / ".azurite" / "node_modules" / ".bin" / f"azurite-{service}"
    if not binary.exists():
        npm = shutil.which("npm")
        assert npm, "npm is missing: install Debian's nodejs and npm (.ci/run does) to run Azurite"
        result = subprocess.run([npm, "install", "--prefix", str(REPO / ".azurite"), f"azurite@{AZURITE_VERSION}"],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0 and binary.exists(), f"npm install azurite failed:\n{result.stderr[-2000:]}"
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Azurite:
    """azurite-<service> on 127.0.0.1 and a free port, its data in `location`."""

    def __init__(self, location: Path, service: str = "blob") -> None:
        assert service in _PROBES, service
        self.location = location
        self.service = service
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    def credential(self):
        from azure.core.credentials import AzureNamedKeyCredential

        return AzureNamedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY)

    def __enter__(self) -> "Azurite":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        name = f"azurite-{self.service}"
        self.process = subprocess.Popen(
            [str(azurite_binary(self.service)), f"--{self.service}Host", "127.0.0.1", f"--{self.service}Port",
             str(self.port), "--location", str(self.location), "--silent", "--disableTelemetry",
             "--skipApiVersionCheck"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{name} exited {self.process.returncode}: "
                                     f"{self.process.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                urllib.request.urlopen(self.account_url + _PROBES[self.service], timeout=2)
            except urllib.error.HTTPError:
                return  # it answers (403: the request needs a credential)
            except OSError:
                time.sleep(0.2)
                continue
            return
        self.stop()
        raise AssertionError(f"{name} did not answer on 127.0.0.1:{self.port} within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
