"""A generic name → class registry shared by every family of plug-ins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a unique name to a class; built-ins register exactly like extensions.

    >>> formats: Registry[type] = Registry("format")
    >>> @formats.register("csv")
    ... class Csv: ...
    >>> formats.get("csv").__name__
    'Csv'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator that registers under ``name``; a duplicate name is an error."""

        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return decorate

    def get(self, name: str) -> T:
        """Return the item registered as ``name``."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._items
