"""The training loop's hooks, one job each (semiseg/engine/trainer.py calls them in list order)."""
from __future__ import annotations

from .base import HookBase, StepOutcome
from .checkpoint import FIXED_ON_RESUME, CheckpointHook
from .debug_panels import DebugPanelHook, wants_visuals
from .evaluation import EvaluationHook
from .logging import LoggingHook
from .status import StatusHook
from .tensorboard import TensorBoardHook

__all__ = ['FIXED_ON_RESUME', 'CheckpointHook', 'DebugPanelHook', 'EvaluationHook', 'HookBase', 'LoggingHook',
           'StatusHook', 'StepOutcome', 'TensorBoardHook', 'default_hooks', 'wants_visuals']


def default_hooks(checkpoints: CheckpointHook, evaluation: EvaluationHook, status: StatusHook) -> list[HookBase]:
    """The order matters: after a step, panels, then the log line, then a periodic save; after an
    epoch, latest.pth, then the evaluation (best.pth), then state.json; after training,
    results.json, then the HParams, then the final state."""
    return [DebugPanelHook(), LoggingHook(), checkpoints, evaluation, TensorBoardHook(), status]
