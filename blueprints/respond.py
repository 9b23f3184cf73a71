"""One mapping from kvca's results and errors to HTTP answers and log lines.

The status comes from the error kind (`kvca_core.errors`: `http_status`), the
body is the `error` document of kvca's JSON contract (`kvca_core/jsonshape.py`): kind and
message, never a stack trace and never key material (messages are built from names, versions
and serials). Every other answer is a document of the same contract.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from typing import Any, Awaitable, Callable

import azure.functions as func

from kvca_core import jsonshape, jsontext, telemetry
from kvca_core.errors import InvalidRequest, KvcaError, Throttled

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
        return json_response(jsonshape.error(exc), exc.http_status, headers)
    # A bug: the details go to the log (type and trace, no locals), the caller gets a plain message.
    logger.error("kvca http op=%s status=500 kind=%s", operation, type(exc).__name__, exc_info=exc)
    return json_response(jsonshape.document("error", {
        "error": "InternalError", "message": f"{operation}: unexpected error; see the function's log"}), 500)


def answers(operation: str, refusal: Callable[..., func.HttpResponse] | None = None):
    """Wrap an HTTP handler so every exception becomes the mapped answer above, never a trace.
    `refusal(exc, operation=...)`: another protocol's mapping (EST answers in text/plain).

    functools.wraps keeps the handler's signature, which azure-functions reads for its bindings."""
    refuse = refusal or error_response

    def wrap(handler: Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]):
        @functools.wraps(handler)
        async def handle(req: func.HttpRequest) -> func.HttpResponse:
            try:
                with telemetry.source("http"):
                    return await handler(req)
            except Exception as exc:  # every error becomes a mapped answer
                return refuse(exc, operation=operation)
        return handle
    return wrap


# --- request bodies: one reader for every HTTP trigger -------------------------------------------
MAX_BODY = 64 * 1024


def json_body(req: func.HttpRequest, *, optional: bool) -> dict[str, Any]:
    """The request's JSON object: bounded in size and nesting (kvca_core/jsontext.py) before it is parsed."""
    raw = req.get_body() or b""
    if not raw.strip():
        if optional:
            return {}
        raise InvalidRequest("the request needs a JSON body", subject="request")
    if len(raw) > MAX_BODY:
        raise InvalidRequest(f"the body is larger than {MAX_BODY} bytes", subject="request")
    try:
        data = jsontext.loads(raw, what="the body")
    except (jsontext.TooDeep, jsontext.DuplicateKey) as exc:
        raise InvalidRequest(str(exc), subject="request") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON ({getattr(exc, 'msg', 'undecodable')})",
                             subject="request") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", subject="request")
    return data


def known_fields(data: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(known)})",
                             subject="request")
    return data


def json_flag(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"field {key!r} must be true or false, got {str(value)[:40]!r}", subject="request")
    return value
