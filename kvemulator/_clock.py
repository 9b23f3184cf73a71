"""The emulator's controllable clock: real time plus an offset tests can move."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Callable


# Certificates need epoch seconds (>= 1970) and room for their validity after "now"
# (validity_months is at most 1200: 100 years) below datetime's year 9999.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.timezone.utc)


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
        try:
            step = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        except OverflowError:
            raise ValueError("the clock step is too large") from None
        if step < dt.timedelta(0):
            raise ValueError("the emulator clock only moves forward with advance(); use set()")
        with self._lock:
            self._offset = self._checked(self._offset + step)
        self._changed()
        return self.now()

    def set(self, when: dt.datetime) -> dt.datetime:
        if when.tzinfo is None:
            raise ValueError("clock.set() needs a timezone-aware datetime")
        with self._lock:
            self._offset = self._checked(when - dt.datetime.now(dt.timezone.utc))
        self._changed()
        return self.now()

    @staticmethod
    def _checked(offset: dt.timedelta) -> dt.timedelta:
        """Refuse an offset before the clock takes it: near datetime's limits every later
        now() would overflow and the whole emulator would answer 500 from then on."""
        try:
            when = dt.datetime.now(dt.timezone.utc) + offset
        except OverflowError:
            when = None
        if when is None or not EARLIEST <= when <= LATEST:
            raise ValueError(f"the emulator clock must stay between {EARLIEST:%Y} and {LATEST:%Y}")
        return offset

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
