"""Training methods: one `step(batch, ctx) -> StepResult` per method (ARCHITECTURE.md §5)."""
from __future__ import annotations

from torch import nn

from .base import VISUAL_LAYOUT, Method, StepContext, StepResult, unwrap
from .fixmatch import FixMatch
from .semivl import SemiVL
from .supervised import Supervised
from .unimatch import UniMatch

METHODS: dict[str, type[Method]] = {
    'supervised': Supervised,
    'fixmatch': FixMatch,
    'unimatch': UniMatch,
    'semivl': SemiVL,
}


def build_method(cfg: dict, model: nn.Module) -> Method:
    """The method named by cfg['method'], bound to `model` (which may be DDP-wrapped)."""
    name = cfg.get('method')
    if name not in METHODS:
        raise ValueError(f'unknown method {name!r}; valid methods: {", ".join(METHODS)}')
    return METHODS[name](cfg, model)


__all__ = ['METHODS', 'VISUAL_LAYOUT', 'Method', 'StepContext', 'StepResult', 'build_method',
           'unwrap']
