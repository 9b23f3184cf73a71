"""Switches for how the emulator behaves where the real Key Vault's behaviour is
unconfirmed, or where tests need to vary it. Each switch names its source: the
sessions the Azure SDK test suites recorded against the real service, or public reports.

The defaults are the real service's behaviour as recorded; only the delays
default short, so tests stay fast (the real values are noted per field).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass
class Fidelity:
    # A real nextLink of GET /certificates keeps only api-version and $skiptoken
    # (azure-sdk-for-python#38589): includePending and maxresults are dropped, and the
    # SDKs follow the link as it is. Also applied to the versions and deleted lists.
    # False: the link carries every parameter of the first request (the old emulator).
    paging_drops_params: bool = True
    # Unconfirmed either way (azure-cli#26044): whether a versionless GET /certificates/{name}
    # answers the newest version even when it is pending or abandoned while an older
    # completed one exists. False: the newest completed version (a pending-only
    # certificate still answers its pending version). True: always the newest version.
    current_includes_pending: bool = False
    # After PATCH .../pending {"cancellation_requested": true} the status reads inProgress
    # (with cancellation_requested true) until this many seconds have passed, then
    # "cancelled" (Java recording). Real: unmeasured, "later".
    cancel_settle_seconds: float = 1.0
    # GET /deletedcertificates/{name} is 404 for this long after the DELETE (Python
    # recording, 7.3: about 9 s on the real service).
    soft_delete_settle_seconds: float = 0.5
    # A second change (merge, PATCH or DELETE of /pending) to one pending certificate
    # within this many seconds of the first gets 409 "There was a conflict while
    # updating/deleting pending certificate" (azure-sdk-for-js#35011, #36328). 0: off.
    pending_conflict_seconds: float = 0.0
    # Unconfirmed either way (a maintainer of another Key Vault tool reported no events
    # for such certificates, 2021): whether CertificateNewVersionCreated fires at
    # merge for issuer Unknown, and NearExpiry/Expired for such versions at all. True: they
    # fire (as for Self and imported versions). False: none for merged versions.
    unknown_issuer_events: bool = True

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Fidelity)}


def changed(current: Fidelity, changes: dict[str, Any]) -> Fidelity:
    """A copy of `current` with `changes` applied, each checked (name, type, range) first,
    so a refused change leaves the switches as they were."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        field = FIELDS.get(name)
        if field is None:
            raise ValueError(f"fidelity switch {name!r} is not one of {', '.join(FIELDS)}")
        if field.type in ("bool", bool):
            if not isinstance(value, bool):
                raise ValueError(f"fidelity switch {name} must be true or false, not {value!r}")
            clean[name] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"fidelity switch {name} must be a number of seconds, not {value!r}")
            seconds = float(value)
            if not math.isfinite(seconds) or not 0 <= seconds <= 86400:
                raise ValueError(f"fidelity switch {name} must be between 0 and 86400 seconds, "
                                 f"not {value!r}")
            clean[name] = seconds
    return dataclasses.replace(current, **clean)
