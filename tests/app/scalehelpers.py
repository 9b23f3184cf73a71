"""Helpers for the fleet-scale tests: the emulator's request log with a time on each entry, counts
per sliding window, and a fake clock for the pacing and the create budget."""

from __future__ import annotations

import asyncio
import bisect
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

CREATE = "POST /certificates/{name}/create"


class TimedLog(list):
    """A stand-in for `Emulator.requests` (the emulator appends (method, "METHOD route") to it from its
    own thread) that also keeps (time, method, route) in `stamps`, on `clock`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.stamps: list[tuple[float, str, str]] = []

    def append(self, item) -> None:
        self.stamps.append((self.clock(), *item))
        super().append(item)

    def clear(self) -> None:
        self.stamps.clear()
        super().clear()

    def times(self, *, creates: bool) -> list[float]:
        """The times of the creates (creates=True), or of every other request."""
        return sorted(t for t, _m, route in self.stamps if (route == CREATE) == creates)


@contextmanager
def timed_requests(em, clock: Callable[[], float] = time.monotonic) -> Iterator[TimedLog]:
    log = TimedLog(clock)
    saved, em.requests = em.requests, log
    try:
        yield log
    finally:
        em.requests = saved


def most_in_window(times: Iterable[float], window: float = 10.0) -> int:
    """The most of `times` in any half-open interval [t, t + window)."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0)


class FakeClock:
    """Seconds that pass only when someone sleeps: `now()` and `sleep()` for ReadPace and CreateBudget."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        # The caller computed `seconds` from now() without yielding: the clock moves to its wake time.
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)
