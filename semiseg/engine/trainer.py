"""The training loop: build the run's parts, resume, iterate; everything else is a hook.

One `Trainer` per call of `train(cfg, run_dir)`. An iteration is `semiseg.engine.step.train_step`
(the method's maths, backward, optimizer, EMA, schedule); text log, checkpoints, evaluation,
tensorboard, debug panels and `state.json` are hooks (`semiseg.engine.hooks`), called in order.
Stops (SIGTERM / SIGUSR1 / Ctrl-C) save `latest.pth` and raise `TrainingInterrupted`; a non-finite
loss is found at the next log line or save (no host sync per step) and raises `TrainingFailed`.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import yaml

from semiseg.engine.options import option
from semiseg.methods.base import StepContext
from semiseg.utils.errors import failure_message
from semiseg.utils.files import atomic_write_text
from semiseg.utils.run_files import CONFIG_FILE, LATEST_CHECKPOINT

from . import checkpoint as ckpt
from .distributed import DistInfo, any_rank_true, cleanup_distributed, init_distributed, resolve_device, wrap_model
from .fastpath import apply_fast_path
from .hooks import CheckpointHook, EvaluationHook, StatusHook, StepOutcome, default_hooks, wants_visuals
from .loaders import auto_workers, batch_to_device, build_train_loaders, derive_seed, plan_iterations, seed_all
from .logging_utils import attach_file_log, count_parameters, detach_log, log_traceback, plain
from .parts import TrainerParts, TrainingFailed, TrainingInterrupted
from .runlock import RunLock
from .signals import clear_stop, stop_reason, stop_requested, stop_signal_handlers
from .step import LossWatch, non_finite_message, train_step

logger = logging.getLogger(__name__)

STREAM_STEP = 3   # seed stream of the per-iteration model RNG (0-2 are the data streams)


def train(cfg: dict, run_dir: Path, parts: TrainerParts | None = None) -> dict:
    """Train (or resume) the run `cfg` in `run_dir`; returns the `results.json` content."""
    return Trainer(cfg, Path(run_dir), parts).run()


class Trainer:
    """The loop and the state the hooks share (iteration, model, optimizer, ...); see `train`."""

    def __init__(self, cfg: dict, run_dir: Path, parts: TrainerParts | None = None) -> None:
        self.parts, self.cfg, self.run_dir = parts or TrainerParts(), plain(cfg), Path(run_dir)
        self.seed, self.precision = int(option(cfg, 'seed')), option(cfg, 'precision')
        self.iteration = self.saved_iteration = 0    # next iteration to run / the one latest.pth holds
        self.eta_s: float | None = None
        self.elapsed_before, self.t_start, self.iters_run = 0.0, None, 0   # training seconds of earlier starts
        self.dist, self.plan, self.watch = DistInfo(), None, LossWatch()
        self.checkpoints, self.evaluation, self.status = CheckpointHook(), EvaluationHook(), StatusHook()
        self.hooks = default_hooks(self.checkpoints, self.evaluation, self.status)
        for hook in self.hooks:
            hook.trainer = self

    def call(self, stage: str, *args) -> None:
        for hook in self.hooks:
            getattr(hook, stage)(*args)

    def run(self) -> dict:
        clear_stop()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.dist, self.device = init_distributed(resolve_device(option(self.cfg, 'device')))
        lock = RunLock(self.run_dir).acquire() if self.dist.is_main else None  # one writer per folder
        handler = attach_file_log(self.run_dir) if self.dist.is_main else None
        try:
            self.call('start')
            with stop_signal_handlers():
                self._setup()
                return self._train()
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:
            self.status.write('interrupted', f'aborted by a second Ctrl-C; latest.pth holds iteration '
                                             f'{self.saved_iteration}')
            raise
        except Exception as e:
            message = failure_message(e, self.run_dir)
            log_traceback(f'training of {self.run_dir} failed: {message}')   # train.log only
            self.status.write('failed', message)
            raise
        finally:
            self.call('close')
            if handler is not None:
                detach_log(handler)
            if lock is not None:
                lock.release()
            cleanup_distributed(self.dist)

    def _setup(self) -> None:
        cfg, parts = self.cfg, self.parts
        if self.dist.is_main:
            for stale in ckpt.remove_stale_temporaries(self.run_dir):
                logger.info('removed %s, left by an interrupted checkpoint write', stale.name)
            if not (self.run_dir / CONFIG_FILE).exists():
                atomic_write_text(self.run_dir / CONFIG_FILE, yaml.safe_dump(cfg, sort_keys=False))
        if self.device.type == 'cuda':
            torch.backends.cudnn.enabled = torch.backends.cudnn.benchmark = True
        logger.info('run %s (world size %d, device %s, precision %s)', self.run_dir.name, self.dist.world_size,
                    self.device, self.precision)
        logger.info('config:\n%s', yaml.safe_dump(cfg, sort_keys=False).rstrip())
        expected = int(cfg.get('n_gpus') or 1) * int(cfg.get('n_nodes') or 1)
        if expected != self.dist.world_size:
            logger.warning('config asks for %d process(es) (n_gpus x n_nodes) but %d run; the batch size is per '
                           'process, so the global batch differs from the config\'s', expected, self.dist.world_size)
        info = parts.dataset_info(cfg['dataset'], Path(str(cfg['data_root'])).expanduser())
        self.class_names, self.palette = list(info.class_names), info.palette
        data = parts.build_datasets(cfg, parts.method_info(cfg['method']))
        seed_all(self.seed)   # same initial weights on every rank (DDP also broadcasts rank 0's)
        model = parts.build_model(cfg).to(self.device)
        for line in count_parameters(model):
            logger.info('%s', line)
        latest = self.run_dir / LATEST_CHECKPOINT
        resume_state = ckpt.read_training_checkpoint(latest) if latest.exists() else None
        if resume_state is not None:
            model.load_state_dict(resume_state['model'])
        apply_fast_path(model, cfg)
        self.model = wrap_model(model, self.dist, self.device)
        self.method = parts.build_method(cfg, self.model)
        self.optimizer = parts.build_optimizer(self.model, cfg)
        self.loaders = build_train_loaders(data, int(cfg['batch_size']), self.seed, self.dist.world_size,
                                           self.dist.rank, option(cfg, 'num_workers'),
                                           pin_memory=self.device.type == 'cuda')
        self.plan = plan = plan_iterations(cfg, self.loaders.iters_per_epoch)
        self.scheduler = parts.build_scheduler(self.optimizer, cfg, plan.total_iters)
        self.val_loader = parts.build_eval_loader(data.val, distributed=self.dist.distributed,
                                                  num_workers=auto_workers(option(cfg, 'num_workers'), 1))
        logger.info('%d epochs x %d iterations = %d iterations (LR schedule over %d)', plan.epochs,
                    plan.iters_per_epoch, plan.total_iters, plan.scheduler_max_iters)
        if resume_state is not None:
            self.checkpoints.restore(resume_state, latest)

    def _train(self) -> dict:
        ipe, epochs = self.plan.iters_per_epoch, self.plan.epochs
        start_epoch = self.iteration // ipe
        if self.iteration % ipe == 0 and start_epoch > 0 and self.evaluation.pending(start_epoch - 1):
            self.call('after_epoch', start_epoch - 1)  # stopped between an epoch's last step and its eval
        self.call('before_train')
        self.t_start = time.time()
        for epoch in range(start_epoch, epochs):
            self.call('before_epoch', epoch)
            self._run_epoch(epoch)
            self.call('after_epoch', epoch)
            if epoch + 1 < epochs and self.should_stop():
                self.interrupt(epoch + 1)
        self.call('after_train')
        return self.results

    def _run_epoch(self, epoch: int) -> None:
        ipe, max_visuals = self.plan.iters_per_epoch, int(option(self.cfg, 'max_debug_images'))
        skip = self.iteration - epoch * ipe
        t_last = time.time()
        for i, batch in enumerate(self.loaders.start_epoch(epoch, skip), start=skip):
            it = epoch * ipe + i
            batch = batch_to_device(batch, self.device, self.cfg)
            seed_all(derive_seed(self.seed, STREAM_STEP, self.dist.rank, it))
            ctx = StepContext(iteration=it, total_iters=self.plan.total_iters, epoch=epoch,
                              want_visuals=wants_visuals(self.cfg, i, self.dist.is_main), max_visuals=max_visuals)
            result, total = train_step(self.method, self.optimizer, self.scheduler, batch, ctx, self.precision,
                                       self.device)
            self.watch.record(it, epoch, total, result.losses)
            self.iteration, self.iters_run = it + 1, self.iters_run + 1
            self.call('after_step', StepOutcome(it, epoch, i, result, total, time.time() - t_last))
            if self.should_stop():
                self.interrupt(epoch)
            t_last = time.time()

    def should_stop(self) -> bool:
        return any_rank_true(stop_requested(), self.dist, self.device)

    def elapsed(self) -> float:
        """Training wall time of this run over all its starts (resumes add up)."""
        return self.elapsed_before + (time.time() - self.t_start if self.t_start is not None else 0.0)

    def check_finite(self) -> None:
        """Fail at the first non-finite loss since the last check (one host sync per check); no
        checkpoint is ever written after a NaN."""
        bad = self.watch.first_bad(lambda flag: any_rank_true(flag, self.dist, self.device))
        if bad is None:
            return
        msg = non_finite_message(bad, self.run_dir / LATEST_CHECKPOINT, self.saved_iteration)
        self.status.write('failed', msg)
        raise TrainingFailed(msg)

    def interrupt(self, epoch: int, during: str = 'training') -> None:
        if self.saved_iteration != self.iteration or self.evaluation.unsaved:
            self.checkpoints.save_latest()
        reason = stop_reason() or ('stop requested on another rank' if self.dist.distributed else 'stop requested')
        logger.warning('%s during %s: stopped after iteration %d/%d (epoch %d); %s holds it, the same run '
                       'resumes from it', reason, during, self.iteration, self.plan.total_iters, epoch,
                       LATEST_CHECKPOINT)
        self.status.write('interrupted', reason)
        raise TrainingInterrupted(f'{reason}: training of {self.run_dir} stopped at iteration '
                                  f'{self.iteration}/{self.plan.total_iters}; latest.pth saved')
