"""Key Vault's create limit, kept by the process: at most `limit` certificate creates start in any
`window` seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

# Key Vault's create limit: 20 software-key creates per vault per 10 s (docs/keyvault-behaviour.md,
# "Throttling"; a certificate create makes a key). issue_many and the rotation moves keep below it.
CREATE_LIMIT, CREATE_WINDOW = 20, 10.0


class CreateRate:
    """At most `limit` certificate creates start in any `window` seconds (a sliding window)."""

    def __init__(self, limit: int, window: float, *, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.limit, self.window = limit, window
        self.monotonic, self.sleep = monotonic, sleep
        self.starts: list[float] = []
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:  # one waiter at a time keeps the order fair
            while True:
                now = self.monotonic()
                self.starts = [t for t in self.starts if now - t < self.window]
                if len(self.starts) < self.limit:
                    self.starts.append(now)
                    return
                await self.sleep(self.window - (now - self.starts[0]))
