"""One mapping from kvca's results and errors to HTTP answers and log lines.

The status comes from the error kind (`kvca_core.errors`: `http_status`), the
body from `KvcaError.to_dict()`: kind and message, never a stack trace and
never key material (messages are built from names, versions and serials).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from typing import Any, Awaitable, Callable

import azure.functions as func

from kvca_core.errors import KvcaError, Throttled

logger = logging.getLogger(__name__)

# Throttled with no Retry-After from the service: Key Vault's limits are per 10 seconds.
DEFAULT_RETRY_AFTER = 10


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=1, sort_keys=False), status_code=status,
                             mimetype="application/json", headers=headers or {})


def error_response(exc: BaseException, *, operation: str) -> func.HttpResponse:
    """The one place an exception becomes an HTTP answer."""
    if isinstance(exc, KvcaError):
        headers = {}
        if isinstance(exc, Throttled):
            retry = exc.retry_after if exc.retry_after and exc.retry_after > 0 else DEFAULT_RETRY_AFTER
            headers["Retry-After"] = str(math.ceil(retry))
        log = logger.warning if exc.http_status < 500 else logger.error
        log("kvca http op=%s status=%s kind=%s reason=%s", operation, exc.http_status, exc.kind, exc)
        return json_response(exc.to_dict(), exc.http_status, headers)
    # A bug: the details go to the log (type and trace, no locals), the caller gets a plain message.
    logger.error("kvca http op=%s status=500 kind=%s", operation, type(exc).__name__, exc_info=exc)
    return json_response({"error": "InternalError",
                          "message": f"{operation}: unexpected error; see the function's log"}, 500)


def answers(operation: str):
    """Wrap an HTTP handler so every exception becomes the mapped answer above, never a trace.

    functools.wraps keeps the handler's signature, which azure-functions reads for its bindings."""
    def wrap(handler: Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]):
        @functools.wraps(handler)
        async def handle(req: func.HttpRequest) -> func.HttpResponse:
            try:
                return await handler(req)
            except Exception as exc:  # every error becomes a mapped answer
                return error_response(exc, operation=operation)
        return handle
    return wrap
