"""An area's public surface: the names it offers the rest of Clearline, named once in the
area's package `__init__` and loaded on first use.

Why lazy: `clearline --help` and a notebook that wants one function must not import
Bytewax, Feast or MLflow because some other name of the same area needs them. Why named:
the shell, the notebooks and the benchmarks import an area only through this surface
(tests/test_layers.py holds them to it), so an area's internals can move without
breaking its users.

A name maps to "module" (the attribute of the same name in `<area>.module`),
"module:attr" (another attribute, exported under a clearer name) or "module:" (the
module itself, for a group of functions read as `module.function`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def surface(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """The package's `__getattr__` and `__all__` for `names` (see the module doc)."""

    def __getattr__(name: str) -> Any:
        where = names.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attr = where.partition(":")
        module = import_module(f"{package}.{module_name}")
        value = module if attr == "" and ":" in where else getattr(module, attr or name)
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    return __getattr__, sorted(names)
