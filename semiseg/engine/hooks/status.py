"""Status hook: `state.json` (docs/ARCHITECTURE.md §2), what a monitor reads about the run now."""
from __future__ import annotations

import logging
import os
import socket

from semiseg.engine.logging_utils import write_state

from .base import HookBase

logger = logging.getLogger('semiseg.engine.trainer')


class StatusHook(HookBase):
    """Writes 'running' when the loop starts and after each epoch, 'finished' at the end; the
    trainer writes 'failed' / 'interrupted' through `write`."""

    def before_train(self) -> None:
        self.write('running')

    def after_epoch(self, epoch: int) -> None:
        self.write('running')

    def after_train(self) -> None:
        t = self.trainer
        if t.dist.is_main:
            t.eta_s = 0.0
            self.write('finished')
            logger.info('finished %d iterations: mIoU %.2f, best %.2f (%s)', t.iteration, t.results['miou'],
                        t.results['best_miou'], t.run_dir)

    def write(self, state: str, error: str | None = None) -> None:
        """state.json on rank 0; a failed write (e.g. a full disk) is a warning, the run's own error matters."""
        t = self.trainer
        if not t.dist.is_main:
            return
        plan = t.plan
        try:
            write_state(t.run_dir, state, iteration=t.iteration, saved_iteration=t.saved_iteration,
                        total_iters=plan.total_iters if plan else 0,
                        epoch=t.iteration // plan.iters_per_epoch if plan else 0,
                        best_miou=t.evaluation.best_miou, last_miou=t.evaluation.last_miou,
                        eta_s=t.eta_s, elapsed_s=t.elapsed(), world_size=t.dist.world_size,
                        host=socket.gethostname(), pid=os.getpid(), error=error,
                        **{name: {'miou': rec.get('miou'), 'best_miou': rec.get('best_miou')}   # e.g. the EMA teacher:
                           for name, rec in t.evaluation.extra_records().items()})          # --results reads it
        except OSError as err:
            logger.warning('could not write state.json (%s)', err)
