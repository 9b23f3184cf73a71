"""The ledger port: what the operations may ask of the CA's own record, and nothing that changes it.

Every method is idempotent and safe when several processes call it at once. There is no
method that updates or deletes: what is recorded stays recorded, so neither a bug nor a
stolen app token can un-revoke a certificate or rewrite what the CA signed.
"""

from __future__ import annotations

import datetime as dt
from typing import AsyncIterator, Mapping, Protocol

from kvca_core.ledger.records import CertificateRecord, RevocationRecord


class Ledger(Protocol):
    async def record_certificate(self, record: CertificateRecord) -> CertificateRecord:
        """Insert. The same serial already recorded with the same sha256 is a retry: the stored
        record comes back. Another sha256 under that serial is a Conflict naming the serial."""

    async def certificate(self, ca: str, serial: int | str) -> CertificateRecord | None: ...

    async def find_serial(self, serial: int | str) -> list[CertificateRecord]:
        """Every CA's record of `serial` (serials are unique per CA, not across CAs)."""

    def certificates(self, ca: str | None = None, *, expiring_before: dt.datetime | None = None,
                     expiring_after: dt.datetime | None = None,
                     location: str | None = None) -> AsyncIterator[CertificateRecord]:
        """The records of one CA (or of all), optionally only those whose not_after is before
        `expiring_before`, at or after `expiring_after`, or only those at `location`; ordered by CA,
        then serial."""

    async def record_revocation(self, record: RevocationRecord) -> tuple[RevocationRecord, bool]:
        """Insert; True when this call recorded it. A serial already revoked keeps its first
        record, which comes back with False. Whether the serial was ever issued is the
        caller's question (NotFound there), not the store's."""

    async def revocation(self, ca: str, serial: int | str) -> RevocationRecord | None: ...

    async def revocations(self, ca: str) -> list[RevocationRecord]:
        """One CA's revocations, in serial order: one partition read, its cost proportional to
        that CA's revocations, never to its certificates."""

    async def next_crl_number(self, ca: str, scope: str) -> int:
        """A CRL number for (ca, scope), above every number handed out for it before, by any
        process. `scope` is the CA key version the CRL is signed with: each key has its own
        CRL and its own numbering."""

    async def insert_once(self, kind: str, key: str, data: Mapping[str, str]) -> bool:
        """Insert the marker (kind, key) holding `data`; True for the one call that inserted it."""

    async def marker_keys(self, kind: str, *, from_key: str = "") -> list[str]:
        """The keys of `kind`'s markers at or after `from_key`, in key order."""

    async def get(self, kind: str, key: str) -> Mapping[str, str] | None: ...

    async def close(self) -> None: ...
