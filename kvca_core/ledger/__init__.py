"""The CA's ledger: one record per certificate kvca signs, one per revocation, kept where the
app's identity may only read and insert.

    ledger = open_ledger(url, credential)          # KVCA_LEDGER_TABLE_URL
    stored = await ledger.record_certificate(CertificateRecord.of(cert, ca=..., ...))
    record, new = await ledger.record_revocation(RevocationRecord(...))
    number = await ledger.next_crl_number(ca, key_version)
    await ledger.close()

Key Vault tags were the record before: deleting a revoked certificate un-revoked it, anyone
with certificates/update could strip them, and OCSP could not tell a serial never issued from
one not revoked. The ledger is the CA's own record, in Azure Table Storage under a custom role
with read and add only (table.py), so neither a bug nor a stolen app token can change what
was recorded. The port is port.py, its semantics rows.py (the key scheme is there), the records
records.py; SqliteLedger (sqlite.py) stands in on a machine without Azure.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from kvca_core.errors import ConfigurationError
from kvca_core.ledger.port import Ledger
from kvca_core.ledger.records import (
    EXTERNAL,
    VAULT,
    CertificateRecord,
    RevocationRecord,
    ca_key,
    san_strings,
    serial_text,
)

SETTING = "KVCA_LEDGER_TABLE_URL"
# Storage account names: 3-24 lower-case letters and digits; table names: 3-63 letters and
# digits, not starting with a digit
# (learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model).
_ACCOUNT = r"[a-z0-9]{3,24}"
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
# The Table endpoints of Azure's public and sovereign clouds.
_AZURE_HOST = re.compile(rf"{_ACCOUNT}\.table\.core\.(windows\.net|chinacloudapi\.cn|usgovcloudapi\.net)")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_FORMS = ("https://<account>.table.core.windows.net/<table>, "
          "http(s)://127.0.0.1:<port>/<account>/<table> (Azurite) or sqlite:///<absolute path> (make demo)")


def open_ledger(url: str, credential: Any) -> Ledger:
    """The store `url` names: a Table Storage table (TableLedger, with `credential`), or a SQLite
    file (SqliteLedger, refused in Azure); anything else is a ConfigurationError naming it."""
    text = url.strip() if isinstance(url, str) else ""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.query or parts.fragment or parts.username or parts.password:
        raise _unusable(text, "no query, fragment or credentials belong in it: the app signs in with its identity")
    if parts.scheme == "sqlite":
        from kvca_core.ledger.sqlite import SqliteLedger

        if parts.netloc or not parts.path.startswith("/") or parts.path.endswith("/"):
            raise _unusable(text, "a SQLite ledger is sqlite:/// and an absolute file path")
        return SqliteLedger(parts.path)
    segments = parts.path.strip("/").split("/") if parts.path.strip("/") else []
    azure = parts.scheme == "https" and _AZURE_HOST.fullmatch(parts.hostname or "") and port is None \
        and len(segments) == 1
    azurite = parts.scheme in ("http", "https") and parts.hostname in _LOOPBACK and port is not None \
        and len(segments) == 2 and re.fullmatch(_ACCOUNT, segments[0])
    if not (azure or azurite) or not _TABLE.fullmatch(segments[-1]):
        raise _unusable(text, "not a table URL")
    from kvca_core.rim.tables import TableLedger

    return TableLedger(text, credential)


def _unusable(value: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"{_shown(value)!r} is not a ledger URL: {why}; the forms are {_FORMS}", subject=SETTING)


def _shown(value: str) -> str:
    """The value without what may be a secret: a SAS in the query, a user's password."""
    head = re.sub(r"//[^/]*@", "//", re.split(r"[?#]", value, maxsplit=1)[0])
    return head[:200] + ("..." if head != value else "")


__all__ = ["EXTERNAL", "VAULT", "CertificateRecord", "Ledger", "RevocationRecord", "SETTING", "ca_key",
           "open_ledger", "san_strings", "serial_text"]
