"""Lazy public names of a package (PEP 562): ``import eqt.physics`` stays light and cycle-free.

A package lists ``name -> module`` and gets a module-level ``__getattr__``/``__dir__`` that import
the defining module on first use and cache the value in the package's namespace.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, namespace: dict[str, Any],
                 exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public names are ``exports``.

    Args:
        package: the package's ``__name__`` (for the error message).
        namespace: the package's ``globals()`` (values are cached there).
        exports: public name -> module that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
