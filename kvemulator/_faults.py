"""Fault injection and Key Vault's throttling limits for the emulator's data plane."""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import threading
import time
from typing import Any

KINDS = ("429", "500", "503", "latency", "drop")


@dataclasses.dataclass
class Fault:
    id: int
    kind: str
    route: re.Pattern[str] | None
    method: str | None
    rate: float | None
    count: int | None
    retry_after: float | None  # the Retry-After header's seconds; None: none on a 429, 1 on a 503
    seconds: float
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method.upper():
            return False
        return self.route is None or self.route.search(path) is not None

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind,
                "route": self.route.pattern if self.route else None, "method": self.method,
                "rate": self.rate, "count": self.count, "retry_after": self.retry_after,
                "seconds": self.seconds, "fired": self.fired}


class Faults:
    """Rules that make matching data-plane requests fail or slow down.

    `add(kind=..., route=regex, method=..., rate=0.1)` fails that share of
    matching requests; `count=N` fails the next N; neither fails every one
    until `clear()`. A "429" carries Retry-After only when `retry_after` is given:
    the one real capture of Key Vault's 429 had none (AzureSignTool#219).
    """

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._ids = itertools.count(1)
        self._random = random.Random(seed)

    def add(self, kind: str, route: str | None = None, method: str | None = None,
            rate: float | None = None, count: int | None = None, retry_after: float | None = None,
            seconds: float = 0.2) -> int:
        kind = str(kind)
        if kind not in KINDS:
            raise ValueError(f"fault kind {kind!r} is not one of {', '.join(KINDS)}")
        if rate is not None and not 0 < float(rate) <= 1:
            raise ValueError(f"fault rate {rate!r} must be in (0, 1]")
        if count is not None and int(count) < 1:
            raise ValueError(f"fault count {count!r} must be at least 1")
        if rate is not None and count is not None:
            raise ValueError("give a fault either rate or count, not both")
        if (retry_after is not None and float(retry_after) < 0) or float(seconds) < 0:
            raise ValueError("retry_after and seconds must not be negative")
        if method is not None and not isinstance(method, str):
            raise ValueError(f"fault method {method!r} must be a string such as GET")
        pattern = re.compile(route) if route else None
        with self._lock:
            fault = Fault(next(self._ids), kind, pattern, method.upper() if method else None,
                          float(rate) if rate is not None else None,
                          int(count) if count is not None else None,
                          float(retry_after) if retry_after is not None else None, float(seconds))
            self._rules.append(fault)
        return fault.id

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._rules]

    def pick(self, method: str, path: str) -> Fault | None:
        """The first rule that fires for this request (and counts it)."""
        with self._lock:
            for fault in self._rules:
                if not fault.matches(method, path):
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._rules.remove(fault)
                elif fault.rate is not None and self._random.random() >= fault.rate:
                    continue
                fault.fired += 1
                return dataclasses.replace(fault)
        return None


# Key Vault service limits, per vault and region, per 10 seconds
# (learn.microsoft.com/azure/key-vault/general/service-limits): software keys: create 20, other key
# operations 4,000 (RSA-3072: 1,000; RSA-4096: 500); HSM keys: create 10, half the other
# limits; secrets: create 300; other secret and vault transactions 4,000. Creating or
# importing a certificate creates a key, so it counts as a key create (an inference).
#
# "The limits are a weighted sum across key types": each class has one budget in units of
# its cheapest operation (software RSA-2048 / EC), and an operation costs budget / its own
# limit: a software RSA-3072 operation 4 (4000/1000), RSA-4096 8 (4000/500); HSM doubles
# every cost (create 20/10 = 2; others 4000/2000, so RSA-4096-HSM costs 16). Limits set
# through `throttling(limits=...)` are in these units.
LIMITS = {"key-create": 20, "key-other": 4000, "secret-create": 300, "other": 4000}
RSA_WEIGHT = {3072: 4, 4096: 8}  # 2048 and every curve: 1
HSM_WEIGHT = 2
WINDOW = 10.0


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """What a key operation's cost depends on: RSA size (None for EC) and HSM or not."""
    rsa_size: int | None
    hsm: bool


def classify(method: str, path: str) -> str:
    parts = [p for p in path.lower().split("/") if p]
    if not parts:
        return "other"
    if parts[0] == "certificates" and method == "POST" and len(parts) == 3 \
            and parts[2] in ("create", "import"):
        return "key-create"
    if parts[0] == "keys":
        return "key-create" if method == "POST" and parts[-1] == "create" else "key-other"
    if parts[0] == "secrets" and method == "PUT":
        return "secret-create"
    return "other"


def weight(kind: str, key: KeySpec | None) -> int:
    """The cost of one operation of class `kind` on `key` (None: unknown, the cheapest)."""
    if key is None or kind not in ("key-create", "key-other"):
        return 1
    cost = 1 if kind == "key-create" else RSA_WEIGHT.get(key.rsa_size or 0, 1)
    return cost * (HSM_WEIGHT if key.hsm else 1)


class Throttle:
    """Fixed 10-second windows per transaction class, as the service documents them. Its 429s
    carry Retry-After (the seconds until the window resets) only when `retry_after` is on: the
    one real capture had none (AzureSignTool#219)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.enabled = False
        self.retry_after = False
        self._windows: dict[str, tuple[float, int]] = {}
        self.limits = dict(LIMITS)

    def set(self, enabled: bool, limits: dict[str, int] | None = None, retry_after: bool = False) -> None:
        # Check everything first: a refused request must leave the throttle as it was.
        new_limits = dict(LIMITS)
        if limits:
            if not isinstance(limits, dict):
                raise ValueError("throttling limits must be an object of class: count")
            for name, value in limits.items():
                if name not in LIMITS:
                    raise ValueError(f"throttling class {name!r} is not one of {', '.join(LIMITS)}")
                new_limits[name] = int(value)
        with self._lock:
            self.enabled = bool(enabled)
            self.retry_after = bool(retry_after)
            self._windows.clear()
            self.limits = new_limits

    def check(self, kind: str, cost: int = 1) -> float | None:
        """None when allowed (and counted), else the seconds until the window resets."""
        if not self.enabled:
            return None
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get(kind, (now, 0))
            if now - start >= WINDOW:
                start, used = now, 0
            if used + cost > self.limits[kind]:
                return max(1.0, WINDOW - (now - start))
            self._windows[kind] = (start, used + cost)
        return None
