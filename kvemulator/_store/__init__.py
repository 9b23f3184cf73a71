"""The emulated vault: its state (`VaultState`) and one class per object kind that works
on it (`Certificates`, `Secrets`, `Keys`), plus the --state file (`persistence`)."""

from kvemulator._store.certificates import Certificates
from kvemulator._store.keys import Keys
from kvemulator._store.secrets import Secrets
from kvemulator._store.state import VaultState

__all__ = ["Certificates", "Keys", "Secrets", "VaultState"]
