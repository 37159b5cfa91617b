"""Tensorboard hook: the event file's writer (rank 0) for the other hooks, and the run's HParams
(settings and final metrics) when training ends."""
from __future__ import annotations

from semiseg.engine.tensorboard import TensorBoard

from .base import HookBase


class TensorBoardHook(HookBase):
    """Opens `trainer.tb` at the start (other ranks get a no-op writer), closes it at the end."""

    def start(self) -> None:
        t = self.trainer
        t.tb = TensorBoard(t.run_dir, enabled=t.dist.is_main)

    def after_train(self) -> None:
        t = self.trainer
        if not t.dist.is_main:
            return
        results, extra = t.results, t.evaluation.extra_records()
        metrics = {'hparam/mIoU': results['miou'], 'hparam/best_mIoU': results['best_miou']}
        metrics.update({f'hparam/{name}_best_mIoU': rec['best_miou'] for name, rec in extra.items()})
        t.tb.hparams(t.cfg, metrics, t.iteration)

    def close(self) -> None:
        tb = getattr(self.trainer, 'tb', None)
        if tb is not None:
            tb.close()
