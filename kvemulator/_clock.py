"""The emulator's controllable clock: real time plus an offset tests can move."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Callable


class EmulatorClock:
    """`now()` is real time shifted by an offset; `advance`/`set` move the offset.

    Moving the clock calls the listener (the emulator), which fires the
    NearExpiry/Expired events whose thresholds were just passed, before
    `advance`/`set` return.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = dt.timedelta(0)
        self._listener: Callable[[], None] | None = None

    def now(self) -> dt.datetime:
        with self._lock:
            offset = self._offset
        return dt.datetime.now(dt.timezone.utc) + offset

    def advance(self, *, days: float = 0, hours: float = 0, minutes: float = 0,
                seconds: float = 0) -> dt.datetime:
        step = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if step < dt.timedelta(0):
            raise ValueError("the emulator clock only moves forward with advance(); use set()")
        with self._lock:
            self._offset += step
        self._changed()
        return self.now()

    def set(self, when: dt.datetime) -> dt.datetime:
        if when.tzinfo is None:
            raise ValueError("clock.set() needs a timezone-aware datetime")
        with self._lock:
            self._offset = when - dt.datetime.now(dt.timezone.utc)
        self._changed()
        return self.now()

    def reset(self) -> None:
        """Back to real time (no events: going back fires nothing)."""
        with self._lock:
            self._offset = dt.timedelta(0)

    @property
    def offset_seconds(self) -> float:
        with self._lock:
            return self._offset.total_seconds()

    def _set_listener(self, listener: Callable[[], None] | None) -> None:
        self._listener = listener

    def _changed(self) -> None:
        if self._listener is not None:
            self._listener()
