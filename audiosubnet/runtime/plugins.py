"""Classes found through an entry-point group, the way speech engines (`audiosubnet.engines`) and scorers
(`audiosubnet.scorers`) are registered:

    [project.entry-points."audiosubnet.engines"]
    myengine = "my_package.engine:MyEngine"

Entry points are listed without importing their modules; a module is imported the first time its class
is asked for. `register()` adds a class at run time (tests, notebooks); a later registration wins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from audiosubnet.errors import DependencyError

T = TypeVar("T")


class PluginRegistry(Generic[T]):
    """The classes of one entry-point group, by name."""

    def __init__(self, group: str, what: str, unknown: Callable[[str, list[str]], Exception]):
        """`what` names a member in errors ("engine", "scorer"); `unknown(name, known)` is the error raised for
        a name nothing registers."""
        self.group, self.what, self.unknown = group, what, unknown
        self._lock = threading.Lock()
        self._registered: dict[str, type[T]] = {}
        self._entry_points: dict[str, EntryPoint] | None = None

    def _eps(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entry_points

    def reload(self) -> None:
        """Read the entry-point group again on the next lookup (a plugin installed while this process runs)."""
        with self._lock:
            self._entry_points = None

    def register(self, cls: type[T], name: str | None = None) -> type[T]:
        """Register a class under `name` (default: its `name` attribute). Usable as a decorator."""
        key = name or getattr(cls, "name", "")
        if not key:
            raise ValueError(f"{cls.__name__} has no name")
        with self._lock:
            self._registered[key] = cls
        return cls

    def unregister(self, name: str) -> None:
        with self._lock:
            self._registered.pop(name, None)

    def names(self) -> list[str]:
        """Every registered name, sorted (entry points and run-time registrations)."""
        return sorted(set(self._eps()) | set(self._registered))

    def get(self, name: str) -> type[T]:
        """The class registered as `name`; imports its module on first use. Raises the registry's unknown
        error, or DependencyError when the module needs a package that is not installed."""
        with self._lock:
            if name in self._registered:
                return self._registered[name]
        ep = self._eps().get(name)
        if ep is None:
            raise self.unknown(name, self.names())
        try:
            cls = ep.load()
        except ImportError as e:
            missing = getattr(e, "name", None) or str(e)
            raise DependencyError(missing, "all", f"{self.what} '{name}'") from e
        with self._lock:
            self._registered.setdefault(name, cls)
            return self._registered[name]
