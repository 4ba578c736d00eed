"""A name registry: alternatives (models, datasets, optimizers, ...) picked by name."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnnlab import catalog
from cnnlab.errors import ConfigError, one_of


@dataclass(frozen=True)
class Entry:
    """One registered alternative: its name, the callable and free-form metadata."""

    name: str
    fn: Callable
    meta: dict = field(default_factory=dict)


class Registry:
    """Maps names to callables; unknown or duplicate names fail loudly.

    Args:
        key: the config key that picks an entry, used in error messages
            (e.g. ``"model.architecture"``). When `cnnlab.catalog` lists the names
            for that key, only those may be registered: the catalog is the one list
            that the schema validates against.
    """

    def __init__(self, key):
        self.key = key
        self._entries = {}

    def register(self, name, **meta):
        """Decorator registering `fn` under `name` with metadata `meta`."""

        def decorator(fn):
            self.add(name, fn, **meta)
            return fn

        return decorator

    def add(self, name, fn, **meta):
        """Register `fn` under `name`; a name may be registered once."""
        if name in self._entries:
            raise ValueError(f"{self.key}: '{name}' is registered twice.")
        listed = catalog.CHOICES.get(self.key)
        if listed is not None and name not in listed:
            raise ValueError(f"{self.key}: '{name}' is not in cnnlab.catalog; add it there first.")
        self._entries[name] = Entry(name, fn, meta)

    def get(self, name) -> Entry:
        """Return the entry for `name`, or raise `ConfigError` listing the choices."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(one_of(self.key, self.names(), name)) from None

    def names(self):
        """All registered names, in registration order."""
        return list(self._entries)

    def entries(self):
        """All entries, in registration order."""
        return list(self._entries.values())

    def __contains__(self, name: Any):
        return name in self._entries
