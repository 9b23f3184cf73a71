"""Key Vault's error shape: {"error": {"code": ..., "message": ...}} with the service's status."""

from __future__ import annotations

from typing import Any


class KvError(Exception):
    """An error the emulator answers with, exactly as Key Vault would shape it."""

    def __init__(self, status: int, code: str, message: str, *, inner: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


def bad_parameter(message: str, status: int = 400) -> KvError:
    return KvError(status, "BadParameter", message)


def not_found(kind: str, name: str, version: str | None = None) -> KvError:
    """404 as the service words it, e.g. CertificateNotFound."""
    what = {"Certificate": "certificate", "Secret": "secret", "Key": "key"}[kind]
    if version:
        message = f"A {what} with (name/id) {name}/{version} was not found in this key vault."
    else:
        message = f"A {what} with (name/id) {name} was not found in this key vault."
    return KvError(404, f"{kind}NotFound", message + " If you recently deleted this "
                   f"{what} you may be able to recover it using the correct recovery command.")
