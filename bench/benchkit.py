"""What several benches share: leaves to fill a vault with, and scratch folders that go away."""

from __future__ import annotations

import atexit
import datetime as dt
import shutil
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


def one_year_leaf(name: str, issuer: x509.Certificate, issuer_key, now: dt.datetime):
    """(key, certificate) for `name`.corp.internal, valid from 5 minutes before `now` for a year."""
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(f"CN={name}.corp.internal"))
            .issuer_name(issuer.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(issuer_key, hashes.SHA256()))
    return key, leaf


def scratch(prefix: str) -> Path:
    """A new temporary folder, removed when the bench's process exits (a ledger file, the
    emulator's TLS files: nothing of a bench run stays behind)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
