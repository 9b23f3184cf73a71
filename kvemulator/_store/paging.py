"""List pages and their `$skiptoken`, as the service's lists hand them out."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Iterator, TypeVar

from kvemulator import _crypto as kc
from kvemulator._errors import bad_parameter
from kvemulator._store.model import MAX_PAGE

T = TypeVar("T")

# (key, item) pairs in key order, starting after the given key (None: from the start).
Walk = Callable[[str | None], Iterator[tuple[str, T]]]


def page(walk: Walk[T], maxresults: int | None, skip: str, next_url: Callable[[str], str],
         build: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    """One page after the position `skip` (a $skiptoken this function made, or "").

    The token names the last item's key (the object's name, or the index for version
    lists), not an offset: the real service's links drop includePending and maxresults
    (azure-sdk-for-python#38589), so the next page may be cut from a different list,
    and it must still start after what the last page held, as the service's does.
    `walk` starts at the token's key in the sorted names (`Named.after`), so a page costs
    its own items (and the look for one more, which decides nextLink), not the vault's.
    """
    size = MAX_PAGE if maxresults is None else maxresults
    entries = walk(skip_key(skip))
    chunk = list(itertools.islice(entries, size))
    out: dict[str, Any] = {"value": [build(item) for _, item in chunk], "nextLink": None}
    if next(entries, None) is not None:
        out["nextLink"] = next_url(kc.b64url(chunk[-1][0].encode()))
    return out


def numbered(items: Iterable[T]) -> Walk[T]:
    """A walk over a short list (a certificate's or a secret's versions) keyed by position."""
    keyed = [(f"{i:09d}", item) for i, item in enumerate(items)]
    return lambda after: iter([pair for pair in keyed if after is None or pair[0] > after])


def skip_key(token: str) -> str | None:
    if not token:
        return None
    try:
        return kc.b64url_decode(token).decode()
    except (ValueError, UnicodeDecodeError):
        raise bad_parameter(f"Invalid $skiptoken '{token[:64]}'.") from None
