"""Training methods: one `step(batch, ctx) -> StepResult` per method (docs/ARCHITECTURE.md §5).

`METHODS` (the registry, `registry.py`) imports without torch; `build_method` loads the
implementation of the configured method, and the contract types (`Method`, `StepContext`,
`StepResult`, `VISUAL_LAYOUT`) load from `base.py` on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from .registry import METHODS, MethodInfo, method_info

_BASE = ('Method', 'StepContext', 'StepResult', 'VISUAL_LAYOUT')
__all__ = ['METHODS', 'MethodInfo', 'build_method', 'method_class', 'method_info', *_BASE]


def method_class(name: str) -> type:
    """The Method subclass registered under `name`."""
    module, _, cls = method_info(name).impl.partition(':')
    return getattr(importlib.import_module(module), cls)


def build_method(cfg: dict, model: Any):
    """The method named by cfg['method'], bound to `model` (which may be DDP-wrapped)."""
    return method_class(cfg['method'])(cfg, model)


def __getattr__(name: str) -> Any:
    if name in _BASE:
        return getattr(importlib.import_module(f'{__name__}.base'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
