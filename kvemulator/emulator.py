"""`Emulator`: the Python API (start/stop in a background thread, clock, events,
faults) over the HTTP server. The CLI (`python -m kvemulator`) uses it too."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from aiohttp import web
from azure.core.credentials import AccessToken, AccessTokenInfo

from kvemulator._clock import EmulatorClock
from kvemulator._errors import KvError
from kvemulator._events import Event, Events
from kvemulator._faults import Faults, Throttle
from kvemulator._fidelity import Fidelity, changed
from kvemulator._server import Server
from kvemulator._store import Certificates, Keys, Secrets, VaultState, persistence
from kvemulator._tls import make_server_context

log = logging.getLogger(__name__)

DUE_INTERVAL = 1.0  # seconds between looks for expiry events due on real time
SAVE_INTERVAL = 0.5  # seconds between --state saves when something changed


class Emulator:
    """A local Azure Key Vault for the real SDK clients, over HTTPS on loopback.

        with Emulator() as em:
            client = CertificateClient(em.url, em.credential(), **em.client_kwargs())
    """

    def __init__(self, vault_name: str = "kvemulator", tls_dir: str | os.PathLike[str] | None = None,
                 *, host: str = "127.0.0.1", port: int = 0, identity_port: int = 0,
                 state_path: str | os.PathLike[str] | None = None,
                 fidelity: Fidelity | None = None) -> None:
        self.vault_name = vault_name
        self.host = host
        self._port = port
        self._identity_port = identity_port
        self._own_tls_dir = tls_dir is None
        self.tls_dir = (Path(tls_dir) if tls_dir is not None
                        else Path(tempfile.mkdtemp(prefix="kvemulator-"))).resolve()
        self.state_path = Path(state_path) if state_path is not None else None
        self.identity_header = secrets.token_urlsafe(24)
        self.clock = EmulatorClock()
        self.faults = Faults()
        self._throttle = Throttle()
        self._events = Events(vault_name=vault_name, now=self.clock.now)
        self._state = VaultState(vault_name=vault_name, now=self.clock.now,
                                 emit=self._events.emit_certificate)
        self._certificates = Certificates(self._state)
        self._secrets = Secrets(self._state)
        self._keys = Keys(self._state)
        if fidelity is not None:
            self.fidelity = fidelity
        # (method, route template) of each data-plane request past authentication, e.g.
        # ("POST", "/certificates/{name}/create"); throttled ones included. Bench and call
        # counting tests read it; reset() empties it.
        self.requests: list[tuple[str, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._saved_generation = -1
        self._save_lock = threading.Lock()
        self.url = ""
        self.ca_path = self.tls_dir / "ca.pem"
        self.identity_endpoint = ""
        self.identity_requests = 0  # tokens handed out (tests check the identity hop happened)
        if self.state_path is not None and self.state_path.exists():
            self._load_state()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "Emulator":
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        self._started.clear()
        self._thread = threading.Thread(target=self._run, name="kvemulator", daemon=True)
        self._thread.start()
        self._started.wait(timeout=60)
        if self._start_error is not None:
            self._thread.join(timeout=5)
            self._thread = None
            raise RuntimeError(f"the emulator failed to start: {self._start_error}") from self._start_error
        if not self._started.is_set():
            raise RuntimeError("the emulator did not start within 60 s")
        self.clock._set_listener(self._on_clock_moved)
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self.clock._set_listener(None)
        if self._stopping is not None:
            loop.call_soon_threadsafe(self._stopping.set)
        thread.join(timeout=30)
        self._thread = None
        if self._own_tls_dir:
            shutil.rmtree(self.tls_dir, ignore_errors=True)

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); never a silent dead thread
            if not self._started.is_set():
                self._start_error = exc
                self._started.set()
            else:
                log.exception("the emulator stopped on an error")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        # Both ports first, then the files: a second emulator started on a busy port fails
        # here, before it replaces the running one's ca.pem (every client of that one would
        # stop trusting it) or, at its exit, its --state file.
        vault_sock, identity_sock = self._bind_ports()
        try:
            ssl_ctx, self.ca_path = make_server_context(self.tls_dir, [self.host])
        except BaseException:
            vault_sock.close()
            identity_sock.close()
            raise
        server = Server(self)
        self._events._loop = asyncio.get_running_loop()
        vault_runner = web.AppRunner(server.vault_app(), access_log=None, handle_signals=False)
        identity_runner = web.AppRunner(server.identity_app(), access_log=None, handle_signals=False)
        await vault_runner.setup()
        await identity_runner.setup()
        self._runners = [vault_runner, identity_runner]
        try:
            await web.SockSite(vault_runner, vault_sock, ssl_context=ssl_ctx).start()
            await web.SockSite(identity_runner, identity_sock).start()
            port = vault_sock.getsockname()[1]
            url_host = f"[{self.host}]" if ":" in self.host else self.host
            self.url = f"https://{url_host}:{port}"
            self.identity_endpoint = f"http://127.0.0.1:{identity_sock.getsockname()[1]}/msi/token"
            self._state.base_url = self.url
            self._events.base_url = self.url
            self._started.set()
            background = [asyncio.create_task(self._due_ticker())]
            if self.state_path is not None:
                background.append(asyncio.create_task(self._saver()))
            await self._stopping.wait()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        finally:
            for runner in self._runners:
                await runner.cleanup()
            await self._events.close()
            if self.state_path is not None and self._started.is_set():
                self._save_state()

    def _bind_ports(self) -> tuple[socket.socket, socket.socket]:
        vault_sock = _bind(self.host, self._port)
        try:
            return vault_sock, _bind("127.0.0.1", self._identity_port)
        except BaseException:
            vault_sock.close()
            raise

    async def _due_ticker(self) -> None:
        while True:
            await asyncio.sleep(DUE_INTERVAL)
            try:
                self._state.fire_due()
                self._events.flush()
            except Exception:
                log.exception("firing the expiry events due failed")

    async def _saver(self) -> None:
        while True:
            await asyncio.sleep(SAVE_INTERVAL)
            if self._state.generation != self._saved_generation:
                data, generation = self._snapshot()
                try:
                    # The file write and fsync off the loop: requests keep flowing meanwhile.
                    await asyncio.to_thread(self._write_state, data, generation, final=False)
                except OSError:
                    log.exception("saving the state file failed")

    def _on_clock_moved(self) -> None:
        """Fire the events the new time passed, on the emulator's thread, before returning."""
        loop = self._loop
        if loop is None or self._thread is None:
            return

        def work() -> None:
            self._state.fire_due()
            self._events.flush()

        if threading.current_thread() is self._thread:
            work()
            return
        done = threading.Event()

        def run() -> None:
            try:
                work()
            finally:
                done.set()
        loop.call_soon_threadsafe(run)
        done.wait(timeout=30)

    # ------------------------------------------------------------ state file

    def _save_state(self) -> None:
        """Write the vault (its private keys included) to the --state file, mode 0600."""
        self._write_state(*self._snapshot(), final=True)

    def _snapshot(self) -> tuple[bytes, int]:
        with self._state.lock:
            state = persistence.dump(self._state)
            generation = self._state.generation
        state["clock_offset_seconds"] = self.clock.offset_seconds
        return json.dumps(state).encode(), generation

    def _write_state(self, data: bytes, generation: int, *, final: bool) -> None:
        """Atomically replace the state file: a fresh mode-0600 temporary file (mkstemp:
        O_EXCL, so no symlink planted at a known name is followed), fsync, rename."""
        assert self.state_path is not None
        with self._save_lock:
            # A periodic save still running when the final one has written must not
            # put back an older vault.
            if not final and generation <= self._saved_generation:
                return
            fd, tmp = tempfile.mkstemp(prefix=f".{self.state_path.name}.", suffix=".tmp",
                                       dir=self.state_path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.state_path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)  # never leave keys behind in a stray file
                raise
            self._saved_generation = generation

    def _load_state(self) -> None:
        assert self.state_path is not None
        mode = self.state_path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("state file %s is readable by others (mode %o); it holds private keys",
                        self.state_path, mode)
        try:
            state = json.loads(self.state_path.read_text())
            persistence.load(self._state, state)
            offset = float(state.get("clock_offset_seconds", 0))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # Only the exception's type: its text could quote the file (private keys).
            raise ValueError(f"{self.state_path} is not a readable kvemulator state file "
                             f"({type(exc).__name__})") from None
        if offset:
            self.clock.set(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset))
        self._saved_generation = self._state.generation

    # ------------------------------------------------------------ what clients need

    @property
    def topic_endpoint(self) -> str:
        return f"{self.url}/_emulator/eventgrid/api/events"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for SDK clients (sync and aio) against this emulator."""
        return {"connection_verify": str(self.ca_path), "verify_challenge_resource": False}

    def environ(self) -> dict[str, str]:
        """The environment kvca (and DefaultAzureCredential) read to use this emulator."""
        return {
            "KVCA_VAULT_URL": self.url,
            "KVCA_VAULT_NAME": self.vault_name,
            "KVCA_TLS_CA_BUNDLE": str(self.ca_path),
            "KVCA_VERIFY_CHALLENGE_RESOURCE": "false",
            "KVCA_EVENTGRID_TOPIC_ENDPOINT": self.topic_endpoint,
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
        }

    def credential(self) -> "EmulatorCredential":
        return EmulatorCredential()

    def async_credential(self) -> "AsyncEmulatorCredential":
        return AsyncEmulatorCredential()

    # ------------------------------------------------------------ controls

    def import_certificate(self, name: str, value: str | bytes, *, password: str | None = None,
                           tags: dict[str, str] | None = None) -> dict[str, Any]:
        """Import a certificate and its key (PFX bytes, or PEM text: key and certificates) as
        `POST /certificates/{name}/import` does, straight into the vault without HTTP: fills a
        vault with thousands of certificates in seconds (bench, scale tests). Answers the
        import's CertificateBundle body; a refused import raises ValueError with the service's
        status, code and message."""
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        body: dict[str, Any] = {"value": value, "pwd": password, "tags": tags}
        try:
            return self._certificates.import_certificate(name, body)
        except KvError as err:
            raise ValueError(f"{err.status} {err.code}: {err.message}") from None

    def reset(self) -> None:
        """Empty the vault (certificates, secrets, deleted items), the outbox and `requests`."""
        self._state.reset()
        self._events.take()
        self.requests.clear()

    @property
    def fidelity(self) -> Fidelity:
        """The live switches (kvemulator._fidelity); the vault reads them on every request."""
        return self._state.fidelity

    @fidelity.setter
    def fidelity(self, value: Fidelity) -> None:
        if not isinstance(value, Fidelity):
            raise TypeError(f"fidelity must be a kvemulator.Fidelity, not {type(value).__name__}")
        self._state.fidelity = changed(value, {})

    def set_fidelity(self, **changes: object) -> Fidelity:
        """Change some switches at run time, e.g. `set_fidelity(paging_drops_params=False)`."""
        self._state.fidelity = changed(self._state.fidelity, changes)
        return self._state.fidelity

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback(event)` from the emulator's thread for each event; returns an unsubscribe."""
        return self._events.subscribe(callback)

    def subscribe_webhook(self, url: str) -> None:
        """POST each batch of events (an Event Grid schema array) to `url`."""
        self._events.subscribe_webhook(url)

    def take_events(self) -> list[Event]:
        """The events emitted since the last call (and clear them)."""
        return self._events.take()

    def throttling(self, enabled: bool = True, limits: dict[str, int] | None = None, *,
                   retry_after: bool = False) -> None:
        """Key Vault's per-10-second limits (classes: key-create, key-other, secret-create, other).
        Its 429s carry no Retry-After, as the one real capture (AzureSignTool#219), unless
        `retry_after` is on: then the seconds until the window resets."""
        self._throttle.set(enabled, limits, retry_after)

    def clear_controls(self) -> None:
        """Back to defaults: real time, no faults, no throttling, no subscribers, empty outbox,
        the default `Fidelity()`."""
        self.clock.reset()
        self._state.fidelity = Fidelity()
        self.faults.clear()
        self._throttle.set(False)
        self._events.clear()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


class EmulatorCredential:
    """A sync TokenCredential the emulator accepts (it accepts any bearer token)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("kvemulator-token", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo("kvemulator-token", int(time.time()) + 3600)

    def close(self) -> None:
        return None

    def __enter__(self) -> "EmulatorCredential":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class AsyncEmulatorCredential:
    """The async counterpart of `EmulatorCredential`."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("kvemulator-token", int(time.time()) + 3600)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo("kvemulator-token", int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> "AsyncEmulatorCredential":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None
