"""A tiny generic registry for the parts users plug in: encoders, objectives and heads.

`LOSSES` (objective config models, by `type`) and `HEADS` (auxiliary head specs, by term
name) live here, below `config`, because the config validates `loss.objectives` and the
heads through them. Their built-in entries register themselves when their package is
imported; the registry imports that package on its first lookup, so validating a config
never depends on what the caller happened to import first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from contrastkit.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a factory (or config model). `get` also accepts the entry itself.

    Args:
        kind: what the entries are ("encoder", "loss"), used in error messages.
        builtins: module that registers the built-in entries, imported on first lookup.
    """

    def __init__(self, kind: str, builtins: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._builtins = builtins

    def _load_builtins(self) -> None:
        if self._builtins is not None:
            module, self._builtins = self._builtins, None
            importlib.import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds its target under `name`; a name can be registered only once."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name_or_obj: str | T) -> T:
        """The entry registered as `name_or_obj`, or the object itself when it is not a name."""
        if not isinstance(name_or_obj, str):
            return name_or_obj
        self._load_builtins()
        try:
            return self._entries[name_or_obj]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name_or_obj!r}; registered: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Every registered name, sorted (the built-in entries included)."""
        self._load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._entries


# type -> objective config model (a `config.ObjectiveConfig` whose `build()` makes the loss).
LOSSES: Registry[Any] = Registry("loss", builtins="contrastkit.losses")
# term name -> head config model (a `config.HeadConfig` whose `build()` makes the head).
HEADS: Registry[Any] = Registry("head", builtins="contrastkit.models.heads")
