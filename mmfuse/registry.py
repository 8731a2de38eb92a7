"""A tiny name -> object registry (timm style): ``register(name)``, ``get(name)``, ``names()``."""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps string names to classes or functions.

    Args:
        kind: what is registered ("fusion", "data source", ...); used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; a duplicate name is an error."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise KeyError(f"{self.kind} {name!r} is already registered ({self._items[name]!r})")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """Return the object registered as ``name``; an unknown name lists the known ones."""
        if name not in self._items:
            close = difflib.get_close_matches(str(name), self._items, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: {', '.join(self.names())}.{hint}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def constructor_options(cls: type[Any], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The keyword options of ``cls(...)`` and their defaults, from its signature (minus ``self``, ``exclude``
    and ``*args``/``**kwargs``): what a config may set for a registered part."""
    skip = {"self", *exclude}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind in kinds and p.name not in skip}


def check_options(kind: str, name: str, given: Mapping[str, Any], valid: Mapping[str, Any]) -> None:
    """``TypeError`` naming the unknown options of ``kind`` ``name`` and the valid ones."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise TypeError(f"{kind} {name!r} got unknown option(s) {unknown}; valid options: {sorted(valid) or 'none'}")


def option_types(cls: type[Any]) -> dict[str, Any]:
    """The annotated types of ``cls(...)``'s options (``{}`` where they cannot be resolved)."""
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation naming something not importable here: leave the check to the constructor
        return {}


def type_mismatch(value: Any, hint: Any) -> bool:
    """True if ``value`` (from a config) plainly cannot be ``hint``: a string for an int, a float for an int,
    a number for a bool... Hints it does not know (classes, callables) are never a mismatch."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return False
    if origin is typing.Union or origin is types.UnionType:
        return all(type_mismatch(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is not None
    if hint is bool:
        return not isinstance(value, bool)
    if hint is int:
        return isinstance(value, bool) or not isinstance(value, int)
    if hint is float:
        return isinstance(value, bool) or not isinstance(value, (int, float))
    if hint is str:
        return not isinstance(value, str)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return isinstance(value, (str, bytes)) or not isinstance(value, Sequence)
    return False


def check_option_types(where: str, cls: type[Any], given: Mapping[str, Any]) -> str | None:
    """The first of ``given`` whose value does not fit ``cls``'s annotation, as a message naming
    ``<where>.<option>``, the value and the type expected; None if all fit."""
    hints = option_types(cls)
    for k, v in given.items():
        if k in hints and type_mismatch(v, hints[k]):
            expected = getattr(hints[k], "__name__", None) or str(hints[k]).replace("typing.", "")
            return f"config key '{where}.{k}' is {v!r}; expected {expected}"
    return None
