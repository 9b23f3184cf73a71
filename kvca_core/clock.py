"""The one source of "now" for kvca_core.

Production reads the system clock. The demo and the tests run kvca against the
emulator, whose clock can be moved forward to make certificates near expiry;
they point kvca at the same clock with `use(...)` so that "is it due?" and the
emulator's NearExpiry events agree. Nothing in the product sets it.
"""

from __future__ import annotations

import datetime as _dt
from typing import Callable

_source: Callable[[], _dt.datetime] | None = None


def now() -> _dt.datetime:
    """The current time, timezone-aware UTC."""
    if _source is not None:
        return _source()
    return _dt.datetime.now(_dt.timezone.utc)


def use(source: Callable[[], _dt.datetime] | None) -> None:
    """Follow another clock (tests, demo); `None` returns to the system clock."""
    global _source
    _source = source
