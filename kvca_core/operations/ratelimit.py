"""Key Vault's limits, kept by the process: a sweep's calls stay within its share of the vault's transactions
(ReadPace); at most a share of the vault's key-operation budget goes to keys-API signing of external
CSRs (SignRate). The create limit shared by every instance is coordination.py's."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric import rsa

# Key Vault's create limit: 20 software-key creates per vault per 10 s (docs/keyvault-behaviour.md,
# "Throttling"; a certificate create makes a key): KVCA_CREATE_LIMIT's default, kept by coordination.py.
CREATE_LIMIT, CREATE_WINDOW = 20, 10.0
# Key Vault's limit on all other vault transactions: 4,000 per vault per 10 s
# (learn.microsoft.com/azure/key-vault/general/service-limits). A sweep takes a share of it
# (KVCA_SWEEP_READ_SHARE); events, HTTP callers, the CRL and OCSP share the rest.
READ_LIMIT, READ_WINDOW = 4000, 10.0
# Seconds added to each of Key Vault's 10-second windows by the paces kvca keeps on its side (the
# reads here, the shared create schedule in coordination.py): the vault counts a request when it
# arrives, some time after kvca let it go, and the instances' clocks differ a little.
WINDOW_MARGIN = 0.5


class Pace:
    """At most `limit` units of work start in any `window` seconds (a sliding window), each start
    weighing its `cost`, first come first served; with an account of them: how many units started
    (`count`) and the most in one window (`peak`). The one pace behind each of Key Vault's limits
    kvca keeps on its side (SignRate, ReadPace; the creates' is coordination.py's, shared by every
    instance)."""

    def __init__(self, limit: int, window: float, *, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        if limit < 1:
            raise ValueError(f"a pace of {limit} per {window} s lets nothing through")
        self.limit, self.window = int(limit), window
        self.monotonic, self.sleep = monotonic, sleep
        self.starts: deque[tuple[float, int]] = deque()
        self.used = self.count = self.peak = 0
        self.lock = asyncio.Lock()

    async def take(self, cost: int = 1) -> None:
        cost = max(1, min(cost, self.limit))  # work dearer than the whole budget still runs, alone
        async with self.lock:  # one waiter at a time keeps the order fair
            while True:
                now = self.monotonic()
                while self.starts and now - self.starts[0][0] >= self.window:
                    self.used -= self.starts.popleft()[1]
                if self.used + cost <= self.limit:
                    self.starts.append((now, cost))
                    self.used += cost
                    self.count += cost
                    self.peak = max(self.peak, self.used)
                    return
                await self.sleep(self.window - (now - self.starts[0][0]))

    wait = take


# Key Vault's limit on key operations other than create (a keys-API sign among them): per vault
# and region, 4,000 per 10 s for software EC and RSA-2048 keys, 1,000 for RSA-3072, 500 for
# RSA-4096, half of each for HSM keys, and "a weighted sum across key types"
# (learn.microsoft.com/azure/key-vault/general/service-limits, "Key transactions"). One budget of
# KEY_OPERATION_LIMIT units, each operation costing its key type's weight (key_operation_cost).
KEY_OPERATION_LIMIT, KEY_OPERATION_WINDOW = 4000, 10.0


def key_operation_cost(public_key: Any, *, hsm: bool = False) -> int:
    """The weight of one keys-API operation with `public_key`'s key in KEY_OPERATION_LIMIT's units."""
    size = public_key.key_size if isinstance(public_key, rsa.RSAPublicKey) else 0  # EC keys cost 1
    cost = 1 if size <= 2048 else 4 if size <= 3072 else 8
    return cost * 2 if hsm else cost


class SignRate(Pace):
    """Keys-API work weighted by key type (key_operation_cost) over the vault's key-operation budget.
    One per process; `share_of_vault` gives it a share of Key Vault's limit, leaving the rest for
    the vault's other work."""

    @classmethod
    def share_of_vault(cls, share: float, **kwargs: Any) -> "SignRate":
        """`share` (0 < share <= 1) of KEY_OPERATION_LIMIT per KEY_OPERATION_WINDOW."""
        return cls(max(1, int(KEY_OPERATION_LIMIT * share)), KEY_OPERATION_WINDOW, **kwargs)


class ReadPace(Pace):
    """The calls of a sweep: the vault adapter calls `take()` before each request it sends while the
    pace is in force (`Vault.paced`), retries included."""

    def __init__(self, limit: int, window: float = READ_WINDOW, **kwargs: Any) -> None:
        super().__init__(max(1, int(limit)), window, **kwargs)

    @classmethod
    def share(cls, share: float, **kwargs: Any) -> "ReadPace":
        """The pace of `share` of Key Vault's transaction limit (KVCA_SWEEP_READ_SHARE), over a
        window WINDOW_MARGIN longer than the vault's."""
        return cls(int(READ_LIMIT * share), READ_WINDOW + WINDOW_MARGIN, **kwargs)
