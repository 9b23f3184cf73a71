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
    retry_after: float
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
    until `clear()`.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._ids = itertools.count(1)
        self._random = random.Random(seed)

    def add(self, kind: str, route: str | None = None, method: str | None = None,
            rate: float | None = None, count: int | None = None, retry_after: float = 1,
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
        if float(retry_after) < 0 or float(seconds) < 0:
            raise ValueError("retry_after and seconds must not be negative")
        if method is not None and not isinstance(method, str):
            raise ValueError(f"fault method {method!r} must be a string such as GET")
        pattern = re.compile(route) if route else None
        with self._lock:
            fault = Fault(next(self._ids), kind, pattern, method.upper() if method else None,
                          float(rate) if rate is not None else None,
                          int(count) if count is not None else None,
                          float(retry_after), float(seconds))
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
# (https://learn.microsoft.com/azure/key-vault/general/service-limits):
# secrets create 300, other secret transactions 4000; software RSA 2048 key
# create 20, other key transactions 4000. Creating or importing a certificate
# creates a key, so it counts against the key-create limit (an inference,
# as keyvault-facts.md says).
LIMITS = {"key-create": 20, "key-other": 4000, "secret-create": 300, "other": 4000}
WINDOW = 10.0


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


class Throttle:
    """Fixed 10-second windows per transaction class, as the service documents them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.enabled = False
        self._windows: dict[str, tuple[float, int]] = {}
        self.limits = dict(LIMITS)

    def set(self, enabled: bool, limits: dict[str, int] | None = None) -> None:
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
            self._windows.clear()
            self.limits = new_limits

    def check(self, method: str, path: str) -> float | None:
        """None when allowed, else the seconds until the window resets (Retry-After)."""
        if not self.enabled:
            return None
        kind = classify(method, path)
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get(kind, (now, 0))
            if now - start >= WINDOW:
                start, used = now, 0
            if used >= self.limits[kind]:
                return max(1.0, WINDOW - (now - start))
            self._windows[kind] = (start, used + 1)
        return None
