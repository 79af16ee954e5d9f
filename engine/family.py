"""A family of loaded backends: models load once per process, lazily or up front."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .plans import Member
from .types import Backend

BackendFactory = Callable[[Member], Backend]


class Family:
    """The members of a plan, each loaded on first use (or by `load_all`) and kept.

    Thread-safe: the server loads models in the background while requests wait
    for them.
    """

    def __init__(self, members: Sequence[Member], factory: BackendFactory | None = None) -> None:
        if factory is None:
            from .backends import create_backend

            factory = create_backend
        self.members = tuple(members)
        self._factory = factory
        self._backends: dict[str, Backend] = {}
        self._locks = {m.name: threading.Lock() for m in self.members}

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    def get(self, name: str) -> Backend:
        backend = self._backends.get(name)
        if backend is not None:
            return backend
        with self._locks[name]:
            if name not in self._backends:
                self._backends[name] = self._factory(self.member(name))
            return self._backends[name]

    __call__ = get

    def is_loaded(self, name: str) -> bool:
        return name in self._backends

    def load_all(self, names: Sequence[str] | None = None) -> None:
        for name in names or [m.name for m in self.members]:
            self.get(name)

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
