"""`make demo` keeps working: `python -m demo` runs end to end and exits 0."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_demo_signs_renews_and_verifies_every_certificate():
    result = subprocess.run([sys.executable, "-m", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "demo complete" in out
    assert out.count("OK (v1, v2)") == 3
    assert "renewed 0, signed 0" in out  # redelivered events and a later sweep change nothing
    # The certificates in use: a verified TLS handshake, then a device enrolling over EST with a key of
    # its own (in the ledger, never in the vault) and publishing over MQTT with it.
    flat = " ".join(out.split())  # rich wraps long lines
    assert "openssl s_client -verify_return_error with the root: verified" in flat
    assert "POST /.well-known/est/demo-ca/simpleenroll -> 200, CN=device-002" in flat
    assert "in the ledger as external (never in the vault)" in flat
    assert "device-002 published to devices/device-002/telemetry with its own key, the subscriber got " \
        "'devices/device-002/telemetry 21.5'" in flat
    # A month before the vault's certificates expire the device has not re-enrolled: the sweep says so.
    assert "sweep: device device-002 has not re-enrolled (due," in flat
    # The narration alone: no log records (WARNING, ERROR) of kvca, asyncio or aiohttp in between.
    assert "Traceback" not in out + result.stderr
    assert not [line for line in (out + result.stderr).splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert "certificate revoked" in out and "portal-made: passes" in out  # the revocation step
    # The rotation step: GET /api/certificates calls demo-ca's leaves due, the timer's sweep moves
    # each onto the new intermediate, which verifies it where the old one cannot.
    assert "rotated demo-ca: intermediate serial " in out
    assert "shop-web, web-http due (signed by the old intermediate, waiting to move; devices move when they " \
        "next enroll)" in flat
    assert flat.count("moved: openssl verify with root + new intermediate: OK; with the old one: fails") == 2
    assert "every leaf of demo-ca moved onto the new key" in out
