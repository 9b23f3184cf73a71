"""The emulator's HTTP side: Key Vault's data plane, the control API, the
Event Grid topic and the managed-identity token endpoint, on aiohttp.

Every request runs on the one event loop; the vault's methods take its lock
for each read-modify-write, and nothing awaits in between, so concurrent
requests never lose an update.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import logging
import re
import secrets
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from kvemulator import _crypto as kc
from kvemulator._errors import KvError, bad_parameter
from kvemulator._faults import classify, weight

if TYPE_CHECKING:
    from kvemulator._store import Certificates, Keys, Secrets
    from kvemulator.emulator import Emulator

log = logging.getLogger(__name__)

# What the current SDKs send by default (certificates/secrets 2026-04-01, keys
# 2025-07-01: DEFAULT_VERSION in their _shared/client_base.py) and the older numbered versions.
API_VERSIONS = frozenset({"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"})
TENANT = "00000000-0000-0000-0000-000000000000"
CHALLENGE = (f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
             'resource="https://vault.azure.net"')
UNAUTHORIZED = {"error": {"code": "Unauthorized",
                          "message": "AKV10000: Request is missing a Bearer or PoP token."}}
INTERNAL = {"error": {"code": "InternalServerError",
                      "message": "The emulator failed to handle the request; see its log."}}
MAX_BODY = 1024 * 1024
MAX_DEPTH = 32

Handler = Callable[[web.Request, dict[str, str], Any], Awaitable[tuple[int, Any, dict[str, str]] | Any]]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


def _as_response(result: Any) -> web.StreamResponse:
    """A handler's answer: a response as is, (status, body, headers), or a body for 200."""
    if isinstance(result, web.StreamResponse):
        return result
    if isinstance(result, tuple):
        status, payload, headers = result
        return _json(status, payload, headers)
    return _json(200, result)


def _error(err: KvError) -> web.Response:
    return _json(err.status, err.body(), err.headers)


class Routes:
    """A tiny regex router, so unknown routes and wrong methods get Key Vault's error shape."""

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], str, dict[str, Handler]]] = []

    def add(self, pattern: str, **methods: Handler) -> None:
        # A version may be empty: the SDK sends "/keys/NAME//sign" for a versionless key id.
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern).replace(
            "(?P<version>[^/]+)", "(?P<version>[^/]*)") + "$"
        self._routes.append((re.compile(regex), pattern, {m.upper(): h for m, h in methods.items()}))

    def find(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        handler, params, _ = self.find_route(method, path)
        return handler, params

    def find_route(self, method: str, path: str) -> tuple[Handler, dict[str, str], str]:
        """The handler, the path's parameters and the route's template ("/certificates/{name}")."""
        allowed = False
        for regex, pattern, methods in self._routes:
            match = regex.match(path)
            if match is None:
                continue
            handler = methods.get(method)
            if handler is not None:
                return handler, match.groupdict(), pattern
            allowed = True
        if allowed:
            raise KvError(405, "MethodNotAllowed", f"The method {method} is not allowed on {path}.")
        raise KvError(404, "NotFound", f"The requested resource {path} was not found.")


def _int_param(request: web.Request, name: str, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_parameter(f"Invalid {name} '{raw}': it must be an integer.") from None
    if not low <= value <= high:
        raise bad_parameter(f"Invalid {name} {value}: it must be between {low} and {high}.")
    return value


def _bool_param(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


class Server:
    def __init__(self, emulator: "Emulator") -> None:
        self.em = emulator
        self.state = emulator._state
        self.events = emulator._events
        self.vault_routes = Routes()
        self.control_routes = Routes()
        self._add_vault_routes()
        self._add_control_routes()

    # ------------------------------------------------------------ apps

    def vault_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    def identity_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.identity)
        return app

    # ------------------------------------------------------------ dispatch

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        response = await self._answer(request)
        if not _is_control(request.path):
            # Every Key Vault answer carries `Date` from the emulator's clock, as the real
            # service's carries its own (RFC 7231 7.1.1.2, one-second resolution): kvca follows
            # the vault's clock by it. aiohttp adds a Date only when there is none
            # (web_response.py `_prepare_headers`), so there is exactly one. The control API
            # (its Event Grid topic included) keeps aiohttp's, real time: it is not Key Vault.
            response.headers["Date"] = email.utils.format_datetime(self.em.clock.now(), usegmt=True)
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        try:
            if _is_control(path):
                return await self._control(request)
            return await self._data_plane(request)
        except KvError as err:
            return _error(err)
        except web.HTTPException:
            raise
        except asyncio.CancelledError:
            raise
        except Exception:  # never a stack trace in a response
            log.exception("unhandled error on %s %s", request.method, path)
            return _json(500, INTERNAL)
        finally:
            self.events.flush()

    async def _data_plane(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        fault = self.em.faults.pick(method, path)
        if fault is not None:
            if fault.kind == "latency":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "drop":
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError  # nothing to answer: the connection is gone
            elif fault.kind == "429":
                return self._throttled(fault.retry_after, injected=True)
            else:
                code = "InternalServerError" if fault.kind == "500" else "ServiceUnavailable"
                wait = fault.retry_after if fault.retry_after is not None else 1
                headers = {"Retry-After": f"{wait:g}"} if fault.kind == "503" else None
                return _json(int(fault.kind), {"error": {"code": code, "message": (
                    f"The service failed with {fault.kind} (injected by kvemulator).")}}, headers)
        auth = request.headers.get("Authorization", "")
        if not (auth.startswith("Bearer ") and auth[7:].strip()):
            return _json(401, UNAUTHORIZED, {"WWW-Authenticate": CHALLENGE})
        version = request.query.get("api-version")
        if not version:
            raise bad_parameter("The api-version query parameter is missing.")
        if version not in API_VERSIONS:
            raise bad_parameter(f"The specified version ({version}) is not recognized. Consider "
                                "using the latest supported version (2026-04-01).")
        handler, params, template = self.vault_routes.find_route(
            method, path.rstrip("/") if path != "/" else path)
        self.em.requests.append((method, f"{method} {template}"))
        body = await self._read_json(request) if method in ("POST", "PUT", "PATCH") else None
        if self.em._throttle.enabled:
            kind = classify(method, path)
            wait = self.em._throttle.check(kind, weight(kind, self.em._keys.key_spec(template, params, body)))
            if wait is not None:
                return self._throttled(float(int(wait + 0.999)) if self.em._throttle.retry_after else None)
        result = await handler(request, params, body)
        if method != "GET":
            self.state.fire_due()
        return _as_response(result)

    def _throttled(self, retry_after: float | None, *, injected: bool = False) -> web.Response:
        """Key Vault's 429, as captured (AzureSignTool#219): code Throttled, the reason at the
        end of the message, and no Retry-After (that capture had none) unless the fault or
        the throttling control asked for one."""
        source = " (injected by kvemulator)" if injected else ""
        body = {"error": {"code": "Throttled", "message": (
            f"Request was not processed because too many requests were received{source}. "
            "Reason: VaultRequestTypeLimitReached")}}
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        return _json(429, body, headers)

    @staticmethod
    async def _read_json(request: web.Request) -> Any:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise KvError(413, "RequestTooLarge", f"The request body is larger than {MAX_BODY} bytes.") from None
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." deeper than the stack
            raise bad_parameter("The request body is not valid JSON.") from None
        if _too_deep(body, MAX_DEPTH):
            # Key Vault bodies nest a few levels; deeper ones would exhaust the recursion of
            # the validators (a 500) instead of getting the service's 400.
            raise bad_parameter(f"The request body nests deeper than {MAX_DEPTH} levels.")
        return body

    def _next_url(self, request: web.Request, *keep: str, certificates: bool = False) -> Callable[[str], str]:
        def build(skip: str) -> str:
            params = {"api-version": request.query.get("api-version", ""), "$skiptoken": skip}
            # The certificate lists' real links keep only api-version and $skiptoken
            # (azure-sdk-for-python#38589); the switch brings
            # back the full link. Secret and key lists were not recorded: they keep theirs.
            dropped = certificates and self.em.fidelity.paging_drops_params
            for name in () if dropped else keep:
                if name in request.query:
                    params[name] = request.query[name]
            # "$skiptoken" literally, as the service writes it (not "%24skiptoken").
            return f"{self.em.url}{request.path.rstrip('/')}?{urllib.parse.urlencode(params, safe='$')}"
        return build

    def _paging(self, request: web.Request) -> dict[str, Any]:
        skip = request.query.get("$skiptoken", "")
        if len(skip) > 1024:
            raise bad_parameter("Invalid $skiptoken: it is longer than 1024 characters.")
        return {"maxresults": _int_param(request, "maxresults", 1, 25), "skip": skip}

    # ------------------------------------------------------------ vault routes

    def _add_vault_routes(self) -> None:
        self._add_certificate_routes(self.em._certificates)
        self._add_secret_routes(self.em._secrets)
        self._add_key_routes(self.em._keys)

    def _paged(self, fn: Callable[..., Any], *names: str, certificates: bool = False) -> Handler:
        async def handler(req: web.Request, p: dict[str, str], b: Any) -> Any:
            return fn(*[p[n] for n in names],
                      next_url=self._next_url(req, "maxresults", certificates=certificates),
                      **self._paging(req))
        return handler

    def _add_certificate_routes(self, c: Certificates) -> None:
        r = self.vault_routes

        def listing(deleted: bool) -> Handler:
            async def handler(req: web.Request, p: dict[str, str], b: Any) -> Any:
                return c.list_certificates(include_pending=_bool_param(req, "includePending"),
                                           next_url=self._next_url(req, "maxresults", "includePending",
                                                                   certificates=True),
                                           deleted=deleted, **self._paging(req))
            return handler

        async def create(req: web.Request, p: dict[str, str], b: Any) -> Any:
            plan = c.prepare_create(p["name"], b)
            key = plan.key
            if key is None:
                kp = plan.policy["key_props"]
                # RSA generation takes up to seconds: off the loop, then commit re-checks conflicts.
                key = await asyncio.get_running_loop().run_in_executor(
                    None, kc.generate_key, kp["kty"], kp.get("key_size"), kp.get("crv"))
            op = c.commit_create(plan, key)
            location = (f"{self.em.url}/certificates/{p['name']}/pending?"
                        f"api-version={req.query['api-version']}&request_id={op['request_id']}")
            return 202, op, {"Retry-After": "10", "Location": location}

        async def merge(req: web.Request, p: dict[str, str], b: Any) -> Any:
            # The 201 names the certificate (Python recording test_merge_certificate, 7.3).
            location = f"{self.em.url}/certificates/{p['name']}?api-version={req.query['api-version']}"
            return 201, c.merge(p["name"], b), {"Location": location}

        async def purge(req: web.Request, p: dict[str, str], b: Any) -> Any:
            c.purge_certificate(p["name"])
            return 204, None, {}

        r.add("/certificates", get=listing(deleted=False))
        r.add("/certificates/issuers", get=lambda *_: _const({"value": [], "nextLink": None}))
        r.add("/certificates/{name}/create", post=create)
        r.add("/certificates/{name}/import", post=_simple(c.import_certificate, "name", body=True))
        r.add("/certificates/{name}/versions", get=self._paged(c.list_versions, "name", certificates=True))
        r.add("/certificates/{name}/policy", get=_simple(c.get_policy, "name"),
              patch=_simple(c.update_policy, "name", body=True))
        r.add("/certificates/{name}/pending", get=_simple(c.get_operation, "name"),
              patch=_simple(c.cancel_operation, "name", body=True),
              delete=_simple(c.delete_operation, "name"))
        r.add("/certificates/{name}/pending/merge", post=merge)
        r.add("/certificates/{name}", get=_simple(c.get_certificate, "name"),
              delete=_simple(c.delete_certificate, "name"),
              patch=_simple(c.update_certificate, "name", "version", body=True))
        r.add("/certificates/{name}/{version}", get=_simple(c.get_certificate, "name", "version"),
              patch=_simple(c.update_certificate, "name", "version", body=True))
        r.add("/deletedcertificates", get=listing(deleted=True))
        r.add("/deletedcertificates/{name}", get=_simple(c.get_deleted_certificate, "name"), delete=purge)
        r.add("/deletedcertificates/{name}/recover", post=_simple(c.recover_certificate, "name"))

    def _add_secret_routes(self, s: Secrets) -> None:
        r = self.vault_routes

        async def list_deleted(req: web.Request, p: dict[str, str], b: Any) -> Any:
            return s.list_secrets(next_url=self._next_url(req, "maxresults"), deleted=True,
                                  **self._paging(req))

        async def purge(req: web.Request, p: dict[str, str], b: Any) -> Any:
            s.purge_secret(p["name"])
            return 204, None, {}

        r.add("/secrets", get=self._paged(s.list_secrets))
        r.add("/secrets/{name}", put=_simple(s.set_secret, "name", body=True),
              delete=_simple(s.delete_secret, "name"), get=_simple(s.get_secret, "name"),
              patch=_simple(s.update_secret, "name", "version", body=True))
        r.add("/secrets/{name}/versions", get=self._paged(s.list_secret_versions, "name"))
        r.add("/secrets/{name}/{version}", get=_simple(s.get_secret, "name", "version"),
              patch=_simple(s.update_secret, "name", "version", body=True))
        r.add("/deletedsecrets", get=list_deleted)
        r.add("/deletedsecrets/{name}", get=_simple(s.get_deleted_secret, "name"), delete=purge)
        r.add("/deletedsecrets/{name}/recover", post=_simple(s.recover_secret, "name"))

    def _add_key_routes(self, k: Keys) -> None:
        r = self.vault_routes
        r.add("/keys", get=self._paged(k.list_keys))
        r.add("/keys/{name}/versions", get=self._paged(k.list_key_versions, "name"))
        r.add("/keys/{name}", get=_simple(k.get_key, "name"))
        r.add("/keys/{name}/{version}", get=_simple(k.get_key, "name", "version"))
        r.add("/keys/{name}/{version}/sign", post=_simple(k.sign, "name", "version", body=True))
        r.add("/keys/{name}/{version}/verify", post=_simple(k.verify, "name", "version", body=True))

    # ------------------------------------------------------------ control API

    async def _control(self, request: web.Request) -> web.StreamResponse:
        handler, params = self.control_routes.find(request.method, request.path.rstrip("/"))
        body = await self._read_json(request) if request.method in ("POST", "PUT", "PATCH") else None
        return _as_response(await handler(request, params, body))

    def _add_control_routes(self) -> None:
        r, em = self.control_routes, self.em

        async def health(req: web.Request, p: dict[str, str], b: Any) -> Any:
            return {"status": "ok", "vault_url": em.url, "vault_name": em.vault_name,
                    "ca_path": str(em.ca_path), "identity_endpoint": em.identity_endpoint,
                    "topic_endpoint": em.topic_endpoint}

        async def reset(req: web.Request, p: dict[str, str], b: Any) -> Any:
            if _control_body(b).get("controls"):
                em.clear_controls()
            em.reset()
            return 204, None, {}

        async def clock_get(req: web.Request, p: dict[str, str], b: Any) -> Any:
            return {"now": em.clock.now().isoformat(), "offset_seconds": em.clock.offset_seconds}

        async def clock_post(req: web.Request, p: dict[str, str], b: Any) -> Any:
            b = _control_body(b)
            try:
                if "set" in b:
                    when = dt.datetime.fromisoformat(str(b["set"]).replace("Z", "+00:00"))
                    if when.tzinfo is None:
                        when = when.replace(tzinfo=dt.timezone.utc)
                    em.clock.set(when)
                else:
                    step = _control_body(b.get("advance"))
                    em.clock.advance(**{k: float(step[k]) for k in ("days", "hours", "minutes", "seconds")
                                        if k in step})
            except (TypeError, ValueError, OverflowError) as exc:
                raise bad_parameter(f"Invalid clock request: {exc}") from None
            return await clock_get(req, p, b)

        r.add("/_emulator/health", get=health)
        r.add("/_emulator/reset", post=reset)
        r.add("/_emulator/clock", get=clock_get, post=clock_post)
        self._add_event_routes()
        self._add_fault_routes()
        r.add("/_emulator/eventgrid/api/events", post=self.eventgrid_publish)

    def _add_event_routes(self) -> None:
        r, em = self.control_routes, self.em

        async def events_get(req: web.Request, p: dict[str, str], b: Any) -> Any:
            return {"value": em._events.peek()}

        async def events_take(req: web.Request, p: dict[str, str], b: Any) -> Any:
            return {"value": em.take_events()}

        async def webhook(req: web.Request, p: dict[str, str], b: Any) -> Any:
            try:
                em.subscribe_webhook(str(_control_body(b).get("url", "")))
            except ValueError as exc:
                raise bad_parameter(str(exc)) from None
            return 204, None, {}

        r.add("/_emulator/events", get=events_get)
        r.add("/_emulator/events/take", post=events_take)
        r.add("/_emulator/subscriptions", post=webhook)

    def _add_fault_routes(self) -> None:
        """Faults, throttling and the fidelity switches."""
        r, em = self.control_routes, self.em

        async def faults_get(req: web.Request, p: dict[str, str], b: Any) -> Any:
            return {"value": em.faults.list()}

        async def faults_add(req: web.Request, p: dict[str, str], b: Any) -> Any:
            b = _control_body(b)
            allowed = {"kind", "route", "method", "rate", "count", "retry_after", "seconds"}
            unknown = set(b) - allowed
            if unknown:
                raise bad_parameter(f"Unknown fault field(s): {', '.join(sorted(unknown))}.")
            try:
                return 201, {"id": em.faults.add(**b)}, {}
            except (TypeError, ValueError, OverflowError, re.error) as exc:
                raise bad_parameter(f"Invalid fault: {exc}") from None

        async def faults_clear(req: web.Request, p: dict[str, str], b: Any) -> Any:
            em.faults.clear()
            return 204, None, {}

        async def throttling(req: web.Request, p: dict[str, str], b: Any) -> Any:
            b = _control_body(b)
            try:
                em.throttling(bool(b.get("enabled", True)), b.get("limits"),
                              retry_after=bool(b.get("retry_after", False)))
            except (TypeError, ValueError, OverflowError) as exc:
                raise bad_parameter(f"Invalid throttling request: {exc}") from None
            return 204, None, {}

        async def fidelity_get(req: web.Request, p: dict[str, str], b: Any) -> Any:
            return em.fidelity.describe()

        async def fidelity_set(req: web.Request, p: dict[str, str], b: Any) -> Any:
            try:
                return em.set_fidelity(**_control_body(b)).describe()
            except ValueError as exc:
                raise bad_parameter(f"Invalid fidelity request: {exc}") from None

        r.add("/_emulator/faults", get=faults_get, post=faults_add, delete=faults_clear)
        r.add("/_emulator/throttling", post=throttling)
        r.add("/_emulator/fidelity", get=fidelity_get, post=fidelity_set)

    async def eventgrid_publish(self, request: web.Request, p: dict[str, str], body: Any) -> Any:
        """Event Grid custom topic: what EventGridPublisherClient posts (either schema)."""
        auth = request.headers.get("Authorization", "")
        if not (request.headers.get("aeg-sas-key") or request.headers.get("aeg-sas-token")
                or (auth.startswith("Bearer ") and auth[7:].strip())):
            return 401, {"error": {"code": "Unauthorized", "message": (
                "The request authorization key is not authorized for this topic: send a bearer "
                "token, aeg-sas-key or aeg-sas-token.")}}, {}
        events = body if isinstance(body, list) else [body]
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise KvError(400, "BadRequest", f"Event {index} is not a JSON object.")
            if "specversion" in event:
                required = ("id", "source", "type")
            else:
                required = ("id", "subject", "eventType", "data", "dataVersion", "eventTime")
            missing = [f for f in required if event.get(f) in (None, "")]
            if missing:
                raise KvError(400, "BadRequest", f"Event {index} is missing required "
                              f"field(s): {', '.join(missing)}.")
            if "specversion" not in event and not event.get("topic"):
                event["topic"] = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/" \
                                 "kvemulator/providers/Microsoft.EventGrid/topics/kvemulator"
        self.events.publish(events)
        return 200, None, {}

    # ------------------------------------------------------------ managed identity

    async def identity(self, request: web.Request) -> web.StreamResponse:
        """App Service's identity endpoint (IDENTITY_ENDPOINT + IDENTITY_HEADER), as MSAL calls it:
        GET ?api-version=2019-08-01&resource=...; header X-IDENTITY-HEADER
        (msal/managed_identity.py, _obtain_token_on_app_service)."""
        if request.path.rstrip("/") != "/msi/token" or request.method != "GET":
            return _json(404, {"statusCode": 404, "message": "Not found."})
        supplied = request.headers.get("X-IDENTITY-HEADER", "")
        if not secrets.compare_digest(supplied.encode(), self.em.identity_header.encode()):
            return _json(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong."})
        self.em.identity_requests += 1
        resource = request.query.get("resource")
        if not resource:
            return _json(400, {"statusCode": 400, "message": "The resource parameter is required."})
        expires_on = int(time.time()) + 3600
        return _json(200, {"access_token": f"kvemulator.{secrets.token_urlsafe(16)}",
                           "expires_on": str(expires_on), "resource": resource,
                           "token_type": "Bearer", "client_id": TENANT})


def _is_control(path: str) -> bool:
    return path == "/_emulator" or path.startswith("/_emulator/")


def _too_deep(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests more than `limit` arrays/objects (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


async def _const(value: Any) -> Any:
    return value


def _simple(fn: Callable[..., Any], *names: str, body: bool = False) -> Handler:
    """A handler calling `fn` with the named path parameters (and the body, if asked)."""
    async def handler(req: web.Request, p: dict[str, str], b: Any) -> Any:
        args = [p.get(n, "") for n in names]
        return fn(*args, b) if body else fn(*args)
    return handler


def _control_body(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad_parameter("The request body must be a JSON object.")
    return body
