"""Import every module of a package so that their `@MODELS.register_module()` calls run.

Variants live in their own files (one architecture per file); the packages register them all
without a hand-kept list.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import `package.<module>` for every module file found on `path`."""
    for info in pkgutil.iter_modules(list(path)):
        if not info.name.startswith('_'):
            importlib.import_module(f'{package}.{info.name}')
