"""The hook contract of the training loop (detectron2 `HookBase`, MMEngine `Hook` as the model).

The trainer calls every hook, in the order of its list, at each stage; a hook does one job (text
log, checkpoints, evaluation, ...) and reads what it needs off the trainer (`self.trainer`).
Stages: `start` (the run begins, before anything is built), `before_train` (built, resumed; the
loop starts), `before_epoch(epoch)`, `after_step(step)`, `after_epoch(epoch)`, `after_train`
(all iterations done) and `close` (always, also after a failure).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class StepOutcome:
    """What the loop hands the hooks after each iteration."""
    iteration: int           # the iteration just trained (trainer.iteration is iteration + 1)
    epoch: int
    index: int               # batch index within the epoch
    result: Any              # semiseg.methods.base.StepResult (losses detached)
    total: torch.Tensor      # detached weighted loss
    iter_time: float         # seconds of data loading + step


class HookBase:
    """Every stage does nothing by default; `trainer` is set by the trainer before `start`."""

    trainer: Any = None

    def start(self) -> None:
        pass

    def before_train(self) -> None:
        pass

    def before_epoch(self, epoch: int) -> None:
        pass

    def after_step(self, step: StepOutcome) -> None:
        pass

    def after_epoch(self, epoch: int) -> None:
        pass

    def after_train(self) -> None:
        pass

    def close(self) -> None:
        pass
