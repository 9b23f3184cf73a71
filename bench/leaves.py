"""Leaves for filling a benchmark's vault: one-year server certificates signed locally by a test CA."""

from __future__ import annotations

import datetime as dt

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
