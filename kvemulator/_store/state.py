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
from kvemulator._store.expiry import EXPIRED, NEAR, PURGE, Due, Schedule
from kvemulator._store.index import Named
from kvemulator._store.model import RECOVERABLE_DAYS, Certificate, CertVersion, Emit, Secret, check_name, epoch

Obj = TypeVar("Obj", Certificate, Secret)

_EVENTS = {NEAR: "CertificateNearExpiry", EXPIRED: "CertificateExpired"}


class VaultState:
    def __init__(self, *, vault_name: str, now: Callable[[], dt.datetime], emit: Emit) -> None:
        self.lock = threading.RLock()
        self.vault_name = vault_name
        self.base_url = "https://127.0.0.1"
        self._now = now
        self.emit = emit
        self.certs: Named[Certificate] = Named()
        self.deleted_certs: Named[Certificate] = Named()
        self.secrets: Named[Secret] = Named()
        self.deleted_secrets: Named[Secret] = Named()
        self.generation = 0  # bumped on every change (persistence watches it)
        self.schedule = Schedule()
        self._held: list[Due] = []  # events of merged versions while unknown_issuer_events is off
        self._fidelity = Fidelity()

    @property
    def fidelity(self) -> Fidelity:
        return self._fidelity

    @fidelity.setter
    def fidelity(self, value: Fidelity) -> None:
        with self.lock:
            self._fidelity = value
            if value.unknown_issuer_events:
                # Held back while the switch was off: due now, they fire at the next fire_due.
                for due in self._held:
                    self.schedule.again(due)
                self._held.clear()

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
            for objects in (self.certs, self.deleted_certs, self.secrets, self.deleted_secrets):
                objects.clear()
            self.schedule.clear()
            self._held.clear()
            self.touch()

    def replace(self, certs: dict[str, Certificate], deleted_certs: dict[str, Certificate],
                secrets: dict[str, Secret], deleted_secrets: dict[str, Secret]) -> None:
        """Everything at once (a loaded state file), with what falls due scheduled again."""
        with self.lock:
            self.reset()
            self.certs, self.deleted_certs = Named(certs), Named(deleted_certs)
            self.secrets, self.deleted_secrets = Named(secrets), Named(deleted_secrets)
            for cert in self.certs.values():
                current = cert.current()
                if current is not None:
                    self.schedule.expiry(cert, current)
            for deleted in (*self.deleted_certs.values(), *self.deleted_secrets.values()):
                if deleted.purge_at is not None:
                    self.schedule.purge(deleted)
            self.touch()

    def completed(self, cert: Certificate, ver: CertVersion) -> None:
        """`ver` is the current version of `cert` from now on: schedule its expiry events."""
        self.schedule.expiry(cert, ver)

    # ------------------------------------------------------------ soft delete
    # Soft delete works alike for certificates and plain secrets: these serve both.

    def deleted_fields(self, obj: Certificate | Secret, kind: str) -> dict[str, Any]:
        return {"recoveryId": f"{self.base_url}/deleted{kind}/{obj.name}",
                "deletedDate": obj.deleted, "scheduledPurgeDate": obj.purge_at}

    def soft_delete(self, live: Named[Obj], deleted: Named[Obj], obj: Obj) -> None:
        now = self.now()
        obj.deleted, obj.purge_at = now, now + RECOVERABLE_DAYS * 86400
        deleted[obj.name.lower()] = live.pop(obj.name.lower())
        self.schedule.purge(obj)
        self.touch()

    def recover(self, live: Named[Obj], deleted: Named[Obj], obj: Obj) -> None:
        obj.deleted = obj.purge_at = None
        live[obj.name.lower()] = deleted.pop(obj.name.lower())
        self.touch()

    @staticmethod
    def find_deleted(deleted: Named[Obj], name: str, kind: str) -> Obj:
        check_name(name)
        obj = deleted.get(name.lower())
        if obj is None:
            raise KvError(404, f"{kind}NotFound", f"Deleted {kind} not found: {name}")
        return obj

    def purge(self, deleted: Named[Obj], name: str, kind: str) -> None:
        del deleted[self.find_deleted(deleted, name, kind).name.lower()]
        self.touch()

    # ------------------------------------------------------------ time-driven work

    def fire_due(self) -> None:
        """Fire the NearExpiry/Expired events the clock has reached; purge what is due."""
        with self.lock:
            now = self.now()
            while (due := self.schedule.pop_due(now)) is not None:
                if due.kind == PURGE:
                    self._purge_due(due)
                else:
                    self._fire(due)

    def _fire(self, due: Due) -> None:
        cert, ver = due.obj, due.version
        assert ver is not None
        # NearExpiry and Expired are raised for the current version only
        # (learn.microsoft.com/azure/event-grid/event-schema-key-vault).
        if self.certs.get(cert.name.lower()) is not cert or cert.current() is not ver \
                or due.kind in ver.fired:
            return  # superseded, deleted, or already fired
        if ver.merged and not self.fidelity.unknown_issuer_events:
            self._held.append(due)
            return
        ver.fired.add(due.kind)
        self.touch()
        self.emit(_EVENTS[due.kind], cert.name, ver.version, ver.nbf, ver.exp)

    def _purge_due(self, due: Due) -> None:
        obj = due.obj
        deleted = self.deleted_certs if isinstance(obj, Certificate) else self.deleted_secrets
        if deleted.get(obj.name.lower()) is obj and obj.purge_at == due.when:
            del deleted[obj.name.lower()]
            self.touch()
