"""What falls due with time: a certificate version's NearExpiry and Expired events, a
deleted object's purge. Kept in due order (a heap), so a write schedules in O(log n) and
a clock move pops exactly what came due, instead of scanning the vault.

Entries are never removed when they go stale (a newer version became current, the
certificate was deleted, a deleted object was recovered): whoever pops one checks it
still holds (`VaultState.fire_due`), and drops it otherwise.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from typing import Any

from kvemulator._store.model import NEAR_EXPIRY, Certificate, CertVersion, Secret

NEAR = "near"
EXPIRED = "expired"
PURGE = "purge"

_NEAR_SECONDS = int(NEAR_EXPIRY.total_seconds())


@dataclasses.dataclass(frozen=True)
class Due:
    when: int  # epoch seconds
    kind: str  # NEAR, EXPIRED or PURGE
    obj: Any  # the Certificate of a version, or the deleted Certificate / Secret
    version: CertVersion | None = None


class Schedule:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Due]] = []
        self._order = itertools.count()  # ties in time keep the order they were scheduled in

    def clear(self) -> None:
        self._heap.clear()

    def _push(self, due: Due) -> None:
        heapq.heappush(self._heap, (due.when, next(self._order), due))

    def expiry(self, cert: Certificate, ver: CertVersion) -> None:
        """The events of `ver` (which became the current version of `cert`) not yet fired."""
        exp = ver.exp
        assert exp is not None  # a completed version has its certificate's dates
        if NEAR not in ver.fired:
            self._push(Due(exp - _NEAR_SECONDS, NEAR, cert, ver))
        if EXPIRED not in ver.fired:
            self._push(Due(exp, EXPIRED, cert, ver))

    def purge(self, obj: Certificate | Secret) -> None:
        assert obj.purge_at is not None
        self._push(Due(obj.purge_at, PURGE, obj))

    def again(self, due: Due) -> None:
        """Put back an entry popped but not acted on (see VaultState.fire_due)."""
        self._push(due)

    def pop_due(self, now: int) -> Due | None:
        """The earliest entry due at `now` (removed), or None."""
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None
