"""List pages and their `$skiptoken`, as the service's lists hand them out."""

from __future__ import annotations

import bisect
from typing import Any, Callable

from kvemulator import _crypto as kc
from kvemulator._errors import bad_parameter
from kvemulator._store.model import MAX_PAGE


def page(items: list[Any], maxresults: int | None, skip: str,
         next_url: Callable[[str], str], keys: list[str] | None = None,
         build: Callable[[Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """One page after the position `skip` (a $skiptoken this function made, or "").

    The token names the last item's key (the object's name, or the index for version
    lists), not an offset: the real service's links drop includePending and maxresults
    (azure-sdk-for-python#38589), so the next page may be cut from a different list,
    and it must still start after what the last page held, as the service's does.
    """
    size = MAX_PAGE if maxresults is None else maxresults
    keys = keys if keys is not None else [f"{i:09d}" for i in range(len(items))]
    after = skip_key(skip)
    start = 0
    if after is not None:
        start = bisect.bisect_right(keys, after)  # keys are sorted
    chunk = items[start:start + size]
    # Only this page's items are rendered (`build`): a sweep over a large vault reads every
    # page, and rendering the whole list per page would be quadratic.
    out: dict[str, Any] = {"value": [build(i) for i in chunk] if build else chunk, "nextLink": None}
    if start + size < len(items):
        out["nextLink"] = next_url(kc.b64url(keys[start + size - 1].encode()))
    return out


def skip_key(token: str) -> str | None:
    if not token:
        return None
    try:
        return kc.b64url_decode(token).decode()
    except (ValueError, UnicodeDecodeError):
        raise bad_parameter(f"Invalid $skiptoken '{token[:64]}'.") from None
