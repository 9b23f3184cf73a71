"""The one source of "now" for kvca_core: the system clock, corrected by the vault's.

Every time kvca decides on is measured against times the vault keeps: a certificate is due when
its version's `exp` is near, a version "completed N s ago" by its `created`, and Key Vault raises
its NearExpiry events on its own clock. So "now" is the vault's time. `kvca_core/rim/keyvault.py` hands
every Key Vault response's `Date` header (RFC 7231: one-second resolution) to `observe`, which
keeps the offset Date - local time at receipt; `now()` is the system clock plus that offset.
This needs no switch for development: an emulator whose clock was moved forward is simply a
vault whose clock says another time, and the CLI, the Functions app and the demo all follow
it. In production it guards against a skewed local clock (a laptop, a container host): leaves,
CRLs and "is it due?" go by the vault's time, not the machine's.

- The offset is applied only beyond OFFSET_THRESHOLD (2 s). Date is the server's time truncated
  to the second and stamped before the answer left, so with two clocks in step the measured
  offset still falls anywhere in about (-1 s - latency, 0]. Applying that would move "now" back
  and forth by up to a second from one response to the next for nothing; 2 s is one second of
  resolution plus a second of latency, well above what a synchronised pair of clocks shows.
- Applied, the offset never puts kvca ahead of the vault (truncation and latency both make
  Date - receipt smaller than the true offset): what kvca stamps (a leaf's notBefore, a CRL's
  thisUpdate, a revocation time) is never in the vault's future. It may lag by a second or so,
  and step by as much from one response to the next.
- One process talks to one vault (a Functions instance, a CLI run), so the state is per
  process and the newest response wins: a vault whose clock moves (an emulator's, or a clock
  corrected by NTP on either side) is followed at its next answer.
- Before the process's first vault response, now() is the system time. Operations read the
  vault before they decide; the places that look at the time first (a cached CRL's age, the
  dates of a CA file checked before it is imported) are noted where they do.
- A skew beyond SKEW_WARNING (5 minutes) is logged once per process as a WARNING: it is worth
  fixing at its source, and it tells why kvca's times differ from the machine's.

Pure: no `azure.*` here; vault.py feeds it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading

logger = logging.getLogger(__name__)

OFFSET_THRESHOLD = _dt.timedelta(seconds=2)
SKEW_WARNING = _dt.timedelta(minutes=5)

_lock = threading.Lock()
_offset = _dt.timedelta(0)
_warned = False


def now() -> _dt.datetime:
    """The current time on the vault's clock (as last observed), timezone-aware UTC."""
    offset = _offset
    system = _dt.datetime.now(_dt.timezone.utc)
    if abs(offset) <= OFFSET_THRESHOLD:
        return system
    return system + offset


def offset() -> _dt.timedelta:
    """The vault's clock minus this machine's, as last observed (zero before any response)."""
    return _offset


def observe(server_time: _dt.datetime, received: _dt.datetime, *, source: str = "the vault") -> None:
    """Record the vault's clock: `server_time` from a response's Date header, `received` the
    system time when the response arrived. `source` (a host name) names it in the warning."""
    global _offset, _warned
    if server_time.tzinfo is None or received.tzinfo is None:
        return  # RFC 7231 Dates are GMT; a zone-less one is not a Date to trust
    measured = server_time - received
    with _lock:
        _offset = measured
        warn = abs(measured) > SKEW_WARNING and not _warned
        _warned = _warned or warn
    if warn:
        logger.warning("kvca clock: the clock of %s is %+d s from this machine's; kvca follows the vault's "
                       "(check the time synchronisation)", source, int(measured.total_seconds()))
