"""Objects by name, with the names kept sorted: a list page starts at its `$skiptoken`'s
name by bisection instead of sorting the whole vault for every page."""

from __future__ import annotations

import bisect
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Named(Generic[T]):
    """A mapping of lowercased name -> object, plus the names in sorted order.

    Adding or removing a name costs a bisection and a list insert (a memmove); `after`
    walks the names that sort after a given one. Callers hold the vault's lock, so no
    walk sees the index change under it."""

    def __init__(self, items: dict[str, T] | None = None) -> None:
        self._by_name: dict[str, T] = dict(items or {})
        self._names: list[str] = sorted(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> T:
        return self._by_name[name]

    def get(self, name: str) -> T | None:
        return self._by_name.get(name)

    def __setitem__(self, name: str, obj: T) -> None:
        if name not in self._by_name:
            bisect.insort(self._names, name)
        self._by_name[name] = obj

    def setdefault(self, name: str, obj: T) -> T:
        if name not in self._by_name:
            self[name] = obj
        return self._by_name[name]

    def pop(self, name: str) -> T:
        obj = self._by_name.pop(name)
        del self._names[bisect.bisect_left(self._names, name)]
        return obj

    def __delitem__(self, name: str) -> None:
        self.pop(name)

    def clear(self) -> None:
        self._by_name.clear()
        self._names.clear()

    def values(self) -> Iterator[T]:
        return iter(self._by_name.values())

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._by_name.items())

    def after(self, name: str | None) -> Iterator[tuple[str, T]]:
        """(name, object) in name order, from the first name after `name` (None: from the start)."""
        names = self._names
        start = 0 if name is None else bisect.bisect_right(names, name)
        for i in range(start, len(names)):
            yield names[i], self._by_name[names[i]]
