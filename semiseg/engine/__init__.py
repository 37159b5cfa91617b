"""Training engine: `train(cfg, run_dir)` builds everything, trains, evaluates and checkpoints.

`TrainingInterrupted` is raised after a requested stop (latest.pth saved); `TrainingFailed` when
training cannot continue (e.g. a non-finite loss). `semiseg.engine.signals.request_stop()` asks a
running training to stop after its current iteration.
"""
from .checkpoint import CheckpointError
from .trainer import Trainer, TrainingFailed, TrainingInterrupted, train

__all__ = ['CheckpointError', 'Trainer', 'TrainingFailed', 'TrainingInterrupted', 'train']
