"""The webhook: `Notifier` posts one JSON body per notice to KVCA_NOTIFY_WEBHOOK_URL
(`kvca_core.ports.NoticeSender`); kvca_core/notify.py decides what the notices say.

Never raises: a notice that cannot be delivered is a log line naming the webhook's host and the
HTTP status (never the URL, which carries the webhook's token), and the operation's own result
stands.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any, Mapping
from urllib.parse import urlparse

import aiohttp

from kvca_core.rim import netcause

logger = logging.getLogger("kvca_core.notify")

# A short timeout and few retries: a notice is told once more at the next sweep if it matters, and a
# webhook that hangs must not hold a sweep or an HTTP call for long.
TIMEOUT_SECONDS = 10.0
RETRIES = 2  # after the first attempt, on a 5xx, a 429 or a connection failure; never on a 4xx
BACKOFF_SECONDS = (1.0, 3.0)
MAX_RETRY_AFTER = 10.0


def host_of(url: str) -> str:
    """The only part of the webhook URL kvca ever logs."""
    return urlparse(url).hostname or "(no host)"


class Notifier:
    """Posts notices to one webhook: SSL verified (the system trust store), TIMEOUT_SECONDS per
    attempt, RETRIES more on 5xx/429/connection errors. Its own aiohttp session, opened on the
    first notice: the vault's transport trusts KVCA_TLS_CA_BUNDLE (the emulator), which is no
    authority for a chat service."""

    def __init__(self, url: str) -> None:
        self.url, self.host = url, host_of(url)
        # What a connection failure names (netcause): the webhook's host and port, never its URL.
        self.peer = netcause.Peer.of_url(url, connect_timeout=TIMEOUT_SECONDS)
        self._session: aiohttp.ClientSession | None = None
        self._posted: set[asyncio.Task] = set()  # notices on their way, not awaited by their sender

    async def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl.create_default_context()),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS), cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def send(self, event: str, body: Mapping[str, Any]) -> bool:
        """POST `body` (notice `event`); True when the webhook accepted it (2xx). Never raises."""
        try:
            data = json.dumps(body).encode()
            session = await self._open()
        except Exception as exc:  # a notice never breaks the operation that sends it
            logger.warning("kvca notify event=%s host=%s outcome=failed error=%s", event, self.host,
                           type(exc).__name__)
            return False
        for attempt in range(RETRIES + 1):
            status, retry_after, error, cause = None, None, "", None
            try:
                async with session.post(self.url, data=data, allow_redirects=False,
                                        headers={"Content-Type": "application/json"}) as resp:
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
                    await resp.read()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                error = type(exc).__name__  # not str(exc): it may quote the URL
                cause = netcause.describe(exc, peer=self.peer)  # host and port only, never the URL
            except Exception as exc:
                logger.warning("kvca notify event=%s host=%s outcome=failed error=%s", event, self.host,
                               type(exc).__name__)
                return False
            if status is not None and 200 <= status < 300:
                logger.info("kvca notify event=%s host=%s outcome=sent status=%s", event, self.host, status)
                return True
            retriable = status is None or status == 429 or status >= 500
            if not retriable or attempt == RETRIES:
                logger.warning("kvca notify event=%s host=%s outcome=failed status=%s error=%s attempts=%s%s",
                               event, self.host, status, error or "-", attempt + 1,
                               _cause_words(cause))
                return False
            await asyncio.sleep(_delay(retry_after, attempt))
        return False  # unreachable

    def post(self, event: str, body: Mapping[str, Any]) -> None:
        """Send `notice` in the background. For callers that answer someone (an HTTP call, an
        Event Grid delivery): a slow webhook (up to 3 attempts of TIMEOUT_SECONDS) must not hold
        the answer to a refused renewal. The task is kept until it ends (the event loop holds only
        weak references to tasks), and `drain`/`close` wait for it, so a CLI run does not end
        before its notice is sent; a warm Functions worker's loop runs it to its end."""
        task = asyncio.get_running_loop().create_task(self.send(event, body))
        self._posted.add(task)
        task.add_done_callback(self._posted.discard)

    async def drain(self) -> None:
        """Wait for every notice posted so far (each is bounded by its timeouts and never raises).

        A task is forgotten once it is done, whether or not its done callback has run yet (the
        callback runs on the task's own loop, which may already be closed: a done task kept here
        made this loop spin without ever yielding). A task of another loop that is not done can
        never be awaited here: it is forgotten too, and said in the log."""
        loop = asyncio.get_running_loop()
        while True:
            waiting = []
            for task in list(self._posted):
                if task.done():
                    self._posted.discard(task)
                elif task.get_loop() is not loop:
                    self._posted.discard(task)
                    logger.warning("kvca notify outcome=abandoned reason=posted on another event loop, not finished")
                else:
                    waiting.append(task)
            if not waiting:
                return
            await asyncio.gather(*waiting, return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _cause_words(cause: netcause.Cause | None) -> str:
    """The end of a failure's log line: why the webhook could not be reached, if that was it."""
    if cause is None:
        return ""
    return f" cause=the webhook: {cause.text}" + (f" (hint: {cause.hint})" if cause.hint else "")


def _delay(retry_after: str | None, attempt: int) -> float:
    """Retry-After in seconds (bounded: an answer is untrusted input), else the backoff."""
    try:
        seconds = float(retry_after) if retry_after else None
    except ValueError:
        seconds = None
    if seconds is not None and 0 <= seconds:
        return min(seconds, MAX_RETRY_AFTER)
    return BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
