"""Text-log hook: the epoch header, running means of the step's losses and stats, one log line
(and tensorboard `train/*` scalars) every `log_every` iterations, and the progress bar."""
from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

from semiseg.engine.logging_utils import MeanMeter
from semiseg.engine.options import option
from semiseg.utils.timefmt import format_duration

from .base import HookBase, StepOutcome

logger = logging.getLogger('semiseg.engine.trainer')


class LoggingHook(HookBase):
    def __init__(self) -> None:
        self.meter = MeanMeter()
        self.bar: tqdm | None = None

    def before_train(self) -> None:
        t = self.trainer
        self.log_every = max(1, int(option(t.cfg, 'log_every')))
        self.bar = tqdm(total=t.plan.total_iters, initial=t.iteration, dynamic_ncols=True, desc='train',
                        disable=not (t.dist.is_main and sys.stderr.isatty()))

    def before_epoch(self, epoch: int) -> None:
        t = self.trainer
        ipe = t.plan.iters_per_epoch
        skip = t.iteration - epoch * ipe
        logger.info('===> Epoch %d/%d, lr %.3e, previous best %.2f%s', epoch, t.plan.epochs - 1,
                    t.optimizer.param_groups[0]['lr'], t.evaluation.best_miou,
                    f' (resuming at batch {skip}/{ipe})' if skip else '')
        self.meter.reset()   # a line's means cover this epoch's steps only

    def after_step(self, step: StepOutcome) -> None:
        t = self.trainer
        r = step.result
        self.meter.update({'loss_all': step.total, **r.losses, **r.stats, 'iter_time': step.iter_time})
        self.bar.update(1)
        if t.iteration % self.log_every == 0 or t.iteration == t.plan.total_iters:
            self.log_line()

    def log_line(self) -> None:
        t = self.trainer
        t.check_finite()
        means = self.meter.means()
        self.meter.reset()
        lr = t.optimizer.param_groups[0]['lr']
        elapsed = time.time() - t.t_start
        t.eta_s = elapsed / max(t.iters_run, 1) * (t.plan.total_iters - t.iteration)
        if t.dist.is_main:
            parts = ' | '.join(f'{k} {v:.3f}' for k, v in means.items() if k != 'iter_time')
            logger.info('Iter %d/%d | %s | lr %.3e | iter_time %.3fs | eta %s', t.iteration, t.plan.total_iters,
                        parts, lr, means.get('iter_time', 0.0), format_duration(t.eta_s))
            t.tb.scalars('train', {**means, 'lr': lr}, t.iteration)
            self.bar.set_postfix(loss=f'{means.get("loss_all", float("nan")):.3f}')
        t.status.write('running')

    def after_train(self) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
