"""A tiny generic registry for the parts users plug in: encoders, objectives and heads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from contrastkit.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a factory. `get` also accepts the factory itself.

    Args:
        kind: what the entries are ("encoder", "loss"), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name_or_obj: str | T) -> T:
        if not isinstance(name_or_obj, str):
            return name_or_obj
        try:
            return self._entries[name_or_obj]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name_or_obj!r}; registered: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
