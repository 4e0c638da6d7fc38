"""Scenarios: the article's leak module and ways to load modules from files.

>>> from kmemsim.workloads import bundled_module
>>> bundled_module("article-leak").module_name()
'article_leak'
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..errors import KmemsimTypeError, KmemsimValueError
from ..module import Module
from .article import ArticleLeakModule, FixedArticleModule
from .slow_leak import SlowLeakModule

#: Modules ``modprobe`` finds by name.
BUNDLED: dict[str, type[Module]] = {
    ArticleLeakModule.module_name(): ArticleLeakModule,
    FixedArticleModule.module_name(): FixedArticleModule,
    SlowLeakModule.module_name(): SlowLeakModule,
}


def bundled_module(name: str) -> type[Module]:
    """The bundled module called *name* (``-`` and ``_`` are interchangeable, as for modprobe)."""
    if not isinstance(name, str):
        raise KmemsimTypeError(f"name must be a str, not {type(name).__name__}")
    key = name.replace("-", "_")
    try:
        return BUNDLED[key]
    except KeyError:
        raise FileNotFoundError(
            2, f"FATAL: Module {name} not found in directory /lib/modules/6.16.0-kmemsim"
        ) from None


def load_module_file(path: Path) -> type[Module]:
    """Import a Python file and return the one :class:`Module` subclass it defines."""
    if path.is_dir():
        raise IsADirectoryError(21, f"could not load module {path}: Is a directory")
    if not path.is_file():
        raise FileNotFoundError(2, f"could not load module {path}: No such file or directory")
    modname = f"kmemsim_usermod_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise KmemsimValueError(f"{path} is not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        del sys.modules[modname]
        raise KmemsimValueError(f"{path} failed to import: {exc!r}") from exc
    found = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, Module)
             and v is not Module and v.__module__ == modname]
    if len(found) != 1:
        raise KmemsimValueError(
            f"{path} must define exactly one Module subclass, found {len(found)}")
    return found[0]


__all__ = ["BUNDLED", "ArticleLeakModule", "FixedArticleModule", "SlowLeakModule",
           "bundled_module", "load_module_file"]
