"""Checkpoint hook: `latest.pth` every `ckpt_every` iterations and after every epoch, `best.pth`
on a strict improvement of the trained model's mIoU, and the resume of a run from `latest.pth`.

Every save checks the losses since the last check first, so no checkpoint follows a NaN.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from semiseg.engine import checkpoint as ckpt
from semiseg.engine.options import option
from semiseg.utils.modules import unwrap
from semiseg.utils.run_files import CONFIG_FILE

from .base import HookBase, StepOutcome

logger = logging.getLogger('semiseg.engine.trainer')

# config keys a resumed run may not change: its checkpoint would not fit or would mean something else
FIXED_ON_RESUME = ('model', 'model_args', 'dataset', 'nclass', 'method', 'crop_size', 'split')


class CheckpointHook(HookBase):
    def before_train(self) -> None:
        self.every = int(option(self.trainer.cfg, 'ckpt_every'))

    def after_step(self, step: StepOutcome) -> None:
        t = self.trainer
        if self.every > 0 and t.iteration % self.every == 0 and t.iteration % t.plan.iters_per_epoch != 0:
            self.save_latest()

    def after_epoch(self, epoch: int) -> None:
        """latest.pth before the evaluation: an interruption during it loses no training."""
        if self.trainer.saved_iteration != self.trainer.iteration:
            self.save_latest()

    def save_latest(self) -> None:
        t = self.trainer
        t.check_finite()
        if t.dist.is_main:
            ckpt.save_checkpoint(self.state(), t.run_dir / ckpt.LATEST)
            logger.debug('saved %s at iteration %d', ckpt.LATEST, t.iteration)
        t.saved_iteration = t.iteration
        t.evaluation.unsaved = False

    def save_best(self) -> None:
        if self.trainer.dist.is_main:
            ckpt.save_checkpoint(self.state(), self.trainer.run_dir / ckpt.BEST)

    def state(self) -> dict[str, Any]:
        """The checkpoint (keys: semiseg.engine.checkpoint.CHECKPOINT_KEYS)."""
        t = self.trainer
        state = {
            'model': unwrap(t.model).state_dict(),
            'optimizer': t.optimizer.state_dict(),
            'scheduler': t.scheduler.state_dict(),
            'epoch': t.iteration // t.plan.iters_per_epoch,
            'iteration': t.iteration,
            'rng': ckpt.capture_rng(),
            'config': t.cfg,
            'total_iters': t.plan.total_iters,
            **t.evaluation.state_dict(),
            'elapsed_s': t.elapsed(),
            'method': t.method.state_dict(),
        }
        return {k: state[k] for k in ckpt.CHECKPOINT_KEYS}

    def restore(self, state: dict, path: Path) -> None:
        """Continue from `state` (read from `path`): the same iteration, optimizer, schedule, RNG,
        method state and evaluation records; the config file wins for hyperparameters."""
        t = self.trainer
        saved_total = state.get('total_iters')
        config_file = t.run_dir / CONFIG_FILE
        if saved_total is not None and saved_total != t.plan.total_iters:
            raise ckpt.CheckpointError(
                f'{path} was written by a run of {saved_total} iterations but this config plans '
                f'{t.plan.total_iters}; resume with the config in {config_file} or start a new run folder')
        old_cfg = state.get('config') or {}
        changed = sorted(k for k in set(old_cfg) | set(t.cfg) if old_cfg.get(k) != t.cfg.get(k))
        fixed = [k for k in changed if k in FIXED_ON_RESUME]
        if fixed:
            was = ', '.join(f'{k}={old_cfg.get(k)!r}' for k in fixed)
            raise ckpt.CheckpointError(
                f'{path} was trained with {was}, but {config_file} says otherwise; '
                f'{", ".join(fixed)} cannot change mid-run: restore them, or start a new run folder')
        if changed:
            logger.warning('config.yaml differs from the checkpoint in %s; the config file wins: %s',
                           ', '.join(changed), '; '.join(f'{k}: {old_cfg.get(k)!r} -> {t.cfg.get(k)!r}'
                                                        for k in changed))
        configured = [{k: v for k, v in g.items() if k != 'params'} for g in t.optimizer.param_groups]
        t.optimizer.load_state_dict(state['optimizer'])
        for group, hyper in zip(t.optimizer.param_groups, configured):
            group.update(hyper)        # lr, weight decay, ... as the config says, not as saved
        t.method.load_state_dict(state.get('method') or {})
        t.evaluation.load_state_dict(state)
        last_iter = (state.get('scheduler') or {}).get('last_iter', -1)
        if last_iter >= 0:
            t.scheduler.step(last_iter)   # the configured schedule at the saved position
        if state.get('rng') is not None:
            ckpt.restore_rng(state['rng'])
        t.iteration = t.saved_iteration = int(state['iteration'])
        t.elapsed_before = float(state.get('elapsed_s') or 0.0)
        logger.info('resuming from %s at iteration %d/%d (epoch %d), best mIoU %.2f', path, t.iteration,
                    t.plan.total_iters, t.iteration // t.plan.iters_per_epoch, t.evaluation.best_miou)
