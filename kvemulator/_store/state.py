"""The emulated vault's state, shared by every object kind (certificates, secrets, keys).

All state sits behind one re-entrant lock; every public method of the kinds takes it for
its whole read-modify-write, so concurrent requests (the server's loop, the Python API's
thread) never lose an update. Methods are synchronous and quick; the one slow step (RSA
key generation) happens between `Certificates.prepare_create` and `commit_create`,
outside the lock, and `commit_create` re-checks the conflicts.

The kinds answer plain JSON-ready dicts shaped like Key Vault's REST bodies and raise
`KvError` with the service's status, code and message.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Callable, TypeVar

from kvemulator._errors import KvError
from kvemulator._fidelity import Fidelity
from kvemulator._store.model import (NEAR_EXPIRY, RECOVERABLE_DAYS, Certificate, Emit, Secret, check_name,
                                     epoch)

Obj = TypeVar("Obj", Certificate, Secret)


class VaultState:
    def __init__(self, *, vault_name: str, now: Callable[[], dt.datetime], emit: Emit) -> None:
        self.lock = threading.RLock()
        self.vault_name = vault_name
        self.base_url = "https://127.0.0.1"
        self._now = now
        self.emit = emit
        self.certs: dict[str, Certificate] = {}
        self.deleted_certs: dict[str, Certificate] = {}
        self.secrets: dict[str, Secret] = {}
        self.deleted_secrets: dict[str, Secret] = {}
        self.generation = 0  # bumped on every change (persistence watches it)
        self.fidelity = Fidelity()

    def now(self) -> int:
        return epoch(self._now())

    def now_datetime(self) -> dt.datetime:
        return self._now()

    def seconds(self) -> float:
        """The emulator clock in fractional seconds (the settle delays are shorter than 1 s)."""
        return self._now().timestamp()

    def touch(self) -> None:
        self.generation += 1

    def reset(self) -> None:
        with self.lock:
            self.certs.clear()
            self.deleted_certs.clear()
            self.secrets.clear()
            self.deleted_secrets.clear()
            self.touch()

    def replace(self, certs: dict[str, Certificate], deleted_certs: dict[str, Certificate],
                secrets: dict[str, Secret], deleted_secrets: dict[str, Secret]) -> None:
        """Everything at once (a loaded state file)."""
        with self.lock:
            self.certs, self.deleted_certs = certs, deleted_certs
            self.secrets, self.deleted_secrets = secrets, deleted_secrets
            self.touch()

    # ------------------------------------------------------------ soft delete
    # Soft delete works alike for certificates and plain secrets: these serve both.

    def deleted_fields(self, obj: Certificate | Secret, kind: str) -> dict[str, Any]:
        return {"recoveryId": f"{self.base_url}/deleted{kind}/{obj.name}",
                "deletedDate": obj.deleted, "scheduledPurgeDate": obj.purge_at}

    def soft_delete(self, live: dict[str, Obj], deleted: dict[str, Obj], obj: Obj) -> None:
        now = self.now()
        obj.deleted, obj.purge_at = now, now + RECOVERABLE_DAYS * 86400
        deleted[obj.name.lower()] = live.pop(obj.name.lower())
        self.touch()

    def recover(self, live: dict[str, Obj], deleted: dict[str, Obj], obj: Obj) -> None:
        obj.deleted = obj.purge_at = None
        live[obj.name.lower()] = deleted.pop(obj.name.lower())
        self.touch()

    @staticmethod
    def find_deleted(deleted: dict[str, Obj], name: str, kind: str) -> Obj:
        check_name(name)
        obj = deleted.get(name.lower())
        if obj is None:
            raise KvError(404, f"{kind}NotFound", f"Deleted {kind} not found: {name}")
        return obj

    def purge(self, deleted: dict[str, Obj], name: str, kind: str) -> None:
        del deleted[self.find_deleted(deleted, name, kind).name.lower()]
        self.touch()

    # ------------------------------------------------------------ time-driven work

    def scan(self) -> None:
        """Fire NearExpiry/Expired for thresholds the clock has passed; purge what is due."""
        with self.lock:
            now = self.now()
            for cert in self.certs.values():
                # NearExpiry and Expired are raised for the current version only
                # (learn.microsoft.com/azure/event-grid/event-schema-key-vault).
                ver = cert.current()
                if ver is not None and (self.fidelity.unknown_issuer_events or not ver.merged):
                    exp = ver.exp
                    assert exp is not None
                    if "near" not in ver.fired and now >= exp - NEAR_EXPIRY.total_seconds():
                        ver.fired.add("near")
                        self.touch()
                        self.emit("CertificateNearExpiry", cert.name, ver.version, ver.nbf, exp)
                    if "expired" not in ver.fired and now >= exp:
                        ver.fired.add("expired")
                        self.touch()
                        self.emit("CertificateExpired", cert.name, ver.version, ver.nbf, exp)
            for store in (self.deleted_certs, self.deleted_secrets):
                for key in [k for k, obj in store.items() if obj.purge_at and now >= obj.purge_at]:
                    del store[key]
                    self.touch()

