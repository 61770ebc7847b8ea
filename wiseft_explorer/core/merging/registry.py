"""The registered merge methods: every `MergeMethod` subclass defined in this package, found by walking it.

A new method is one file here (a subclass with a `name`) and its test: the CLI and the pages list what
`methods()` returns and draw each method's controls from its `params`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from .base import MergeError, MergeMethod

PLAIN = "wiseft"  # the straight line: its choice adds nothing to cache keys


@cache
def _registry() -> dict[str, MergeMethod]:
    for info in pkgutil.iter_modules(_package_path()):
        importlib.import_module(f"{__package__}.{info.name}")
    found: dict[str, MergeMethod] = {}
    stack = list(MergeMethod.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.name:
            found[cls.name] = cls()
    return dict(sorted(found.items(), key=lambda item: (item[0] != PLAIN, item[0])))


def _package_path() -> list[str]:
    return list(importlib.import_module(__package__ or "").__path__)


def methods() -> dict[str, MergeMethod]:
    """Every registered method by name, WiSE-FT first."""
    return _registry()


def get_method(name: str) -> MergeMethod:
    """A method by name; the error lists the registered ones."""
    try:
        return _registry()[name]
    except KeyError as err:
        raise MergeError(f"no merge method {name!r}; registered: {', '.join(_registry())}") from err


@dataclass(frozen=True)
class MethodChoice:
    """A method and its parameter values, α aside (α is the axis a sweep runs along)."""

    name: str = PLAIN
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, given: Mapping[str, Any] | None = None) -> MethodChoice:
        """Checked values (defaults filled in) for method `name`; an `alpha` in `given` is refused."""
        if given and "alpha" in given:
            raise MergeError("alpha is the sweep's axis (--alphas) or the export's --alpha, not a --param")
        values = get_method(name).values(given)
        values.pop("alpha")
        return cls(name, values)

    @property
    def method(self) -> MergeMethod:
        return get_method(self.name)

    @property
    def plain(self) -> bool:
        return self.name == PLAIN

    def key(self) -> dict[str, Any] | None:
        """The cache-key part: None for plain WiSE-FT (its keys stay what they were)."""
        return None if self.plain else {"name": self.name, "params": dict(sorted(self.params.items()))}

    def label(self) -> str:
        """In words, e.g. "slerp" or "lines (beta=0.5)"."""
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name} ({shown})" if shown else self.name

    def values(self, alpha: float) -> dict[str, Any]:
        return {**self.params, "alpha": float(alpha)}
