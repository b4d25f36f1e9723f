"""One registry shape for everything roundlab looks up by name: solvers, MIQP backends, executors, architectures,
zoo models, method presets.

A :class:`Registry` maps a validated name to an entry. ``register`` refuses a second entry under a taken name
unless ``override=True``; ``get`` of an unknown name is one :class:`RoundlabError` line listing what is registered;
``names()`` keeps registration order. An optional ``check`` callable validates an entry when it is registered (it raises
:class:`RoundlabError`)::

    SOLVERS = Registry("solver", check=_check_solver_class)

    @SOLVERS.decorator("mine")
    class Mine(Solver): ...

    SOLVERS.get("mine")        # the class
    SOLVERS.names()            # [..., 'mine']
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from roundlab.errors import RoundlabError
from roundlab.validate import check_known

T = TypeVar("T")


def check_name(kind: str, name) -> None:
    """A registry name: a non-empty string of letters, digits, '_' or '-'."""
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise RoundlabError(f"a {kind} name must be a non-empty string of letters, digits, '_' or '-', got {name!r}")


class Registry(Generic[T]):
    """Name → entry, for one ``kind`` of thing (used in error messages: "unknown solver 'x'")."""

    def __init__(self, kind: str, check: Callable[[str, T], None] | None = None):
        self.kind = kind
        self._check = check
        self._entries: dict[str, T] = {}

    @classmethod
    def of_named(cls, kind: str, entry_type: type) -> "Registry":
        """A registry of ``entry_type`` objects that carry their own ``name`` (registered with :meth:`add`)."""
        article = "an" if entry_type.__name__[:1].lower() in "aeiou" else "a"

        def check(name: str, entry) -> None:
            if not isinstance(entry, entry_type) or getattr(entry, "name", None) != name:
                raise RoundlabError(f"{kind} {name!r} must be registered as {article} {entry_type.__name__} named "
                                    f"{name!r}, got {entry!r}")

        return cls(kind, check=check)

    def add(self, entry: T, *, override: bool = False) -> T:
        """Register ``entry`` under its own ``name``."""
        return self.register(entry.name, entry, override=override)

    def register(self, name: str, entry: T, *, override: bool = False) -> T:
        """Add ``entry`` under ``name``; a taken name is refused unless ``override`` (or it is the same entry)."""
        check_name(self.kind, name)
        if self._check is not None:
            self._check(name, entry)
        old = self._entries.get(name)
        if old is not None and old is not entry and not override:
            raise RoundlabError(f"a {self.kind} named {name!r} is already registered ({_label(old)}); pass "
                                f"override=True to replace it")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str, *, override: bool = False) -> Callable[[T], T]:
        """``@registry.decorator(name)``: register the decorated class or function."""
        return lambda entry: self.register(name, entry, override=override)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plugins that clean up); absent names are ignored."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        if not isinstance(name, str) or name not in self._entries:
            check_known(self.kind, name, self.names())
        return self._entries[name]

    __getitem__ = get

    def names(self, where: Callable[[T], bool] | None = None) -> list[str]:
        """Registered names in registration order; ``where`` keeps those whose entry passes it."""
        return [n for n, e in self._entries.items() if where is None or where(e)]

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _label(entry) -> str:
    return getattr(entry, "__qualname__", None) or type(entry).__name__
