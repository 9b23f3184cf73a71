"""The error tree shared by every layer of kvca.

Callers act on the *kind* of an error, never on its text:

    KvcaError                 root; anything kvca raises on purpose
    ├── InvalidRequest        the caller's input is malformed (HTTP 400)
    ├── Forbidden             the access rules do not let this caller do it (403)
    ├── PolicyViolation       well-formed, but the CA's policy forbids it (422)
    ├── NotFound              the certificate, CA or pending request is absent (404)
    ├── NotManaged            exists, but kvca must not touch it (409)
    ├── Conflict              the vault's state forbids it right now (409)
    │   └── Busy              someone else is changing the pending request; try later (409)
    ├── UpstreamError         Key Vault or Event Grid failed (502)
    │   └── Throttled         429 from the service, with Retry-After (503)
    └── ConfigurationError    a setting is missing or malformed (500)

Messages name the object, the rule and the value, and end with a hint where
there is one. They never contain key material: build them from names,
versions, serials and thumbprints only.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Iterator

# What the errors raised in the current task are about, when they do not say (`about`).
_about: contextvars.ContextVar[str | None] = contextvars.ContextVar("kvca_error_subject", default=None)


@contextmanager
def about(subject: str) -> Iterator[None]:
    """Errors raised inside that name no object of their own are about `subject`: the signing
    engine's steps name the step ("check-names: DNS name ..."), the operation running them names
    the certificate ("certificate 'api': check-names: ..."). Decided when the error is made, so no
    error is rewritten after it was raised."""
    token = _about.set(subject)
    try:
        yield
    finally:
        _about.reset(token)


class KvcaError(Exception):
    """Root of every error kvca raises on purpose."""

    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, subject: str | None = None, step: str | None = None,
                 hint: str | None = None) -> None:
        self.message = message
        # The certificate / CA / setting the error is about; else what `about` says.
        self.subject = subject if subject is not None else _about.get()
        self.step = step  # the pipeline step that refused, for signing errors
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message
        if self.step:
            text = f"{self.step}: {text}"
        if self.subject:
            text = f"{self.subject}: {text}"
        if self.hint:
            text = f"{text} (hint: {self.hint})"
        return text

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, str]:
        """The JSON body an HTTP caller sees: kind and message, nothing else."""
        body = {"error": self.kind, "message": str(self)}
        if self.step:
            body["step"] = self.step
        return body


class InvalidRequest(KvcaError):
    http_status = 400


class Forbidden(KvcaError):
    http_status = 403


class PolicyViolation(KvcaError):
    http_status = 422


class NotFound(KvcaError):
    http_status = 404


class NotManaged(KvcaError):
    http_status = 409


class Conflict(KvcaError):
    http_status = 409


class Busy(Conflict):
    """Key Vault's 409 on a change (merge, cancel, delete) of a pending certificate that another
    caller is changing at the same moment (docs/keyvault-behaviour.md, "Pending versions": "There was a conflict
    while updating/deleting pending certificate"). Nothing is wrong: whoever else is working on
    it finishes, or a later pass does."""


class UpstreamError(KvcaError):
    http_status = 502


class Throttled(UpstreamError):
    http_status = 503

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class ConfigurationError(KvcaError):
    http_status = 500
    exit_code = 2  # the CLI's usage error: the settings are the user's to fix, nothing ran
