"""Training engine: `train(cfg, run_dir)` builds everything, trains, evaluates and checkpoints.

`TrainingInterrupted` is raised after a requested stop (latest.pth saved); `TrainingFailed` when
training cannot continue (e.g. a non-finite loss). `semiseg.engine.signals.request_stop()` asks a
running training to stop after its current iteration. The names load lazily so that light modules
(`semiseg.engine.options`) can be imported without torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {'train': 'trainer', 'Trainer': 'trainer', 'TrainerParts': 'trainer',
            'TrainingFailed': 'trainer', 'TrainingInterrupted': 'trainer',
            'CheckpointError': 'checkpoint'}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f'{__name__}.{_EXPORTS[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
