"""The training loop: data, model, method, optimizer; iterate, log, evaluate, checkpoint, resume.

One `Trainer` per call of `train(cfg, run_dir)`. The maths of a step belongs to the method
(`semiseg.methods`); the trainer sums the weighted losses, backpropagates, steps the optimizer and
the LR schedule (release timing: `schedule.step(it)` after the optimizer step of iteration `it`),
and owns every file in the run folder (docs/ARCHITECTURE.md §2).
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from semiseg.data.build import build_datasets
from semiseg.data.datasets import dataset_info
from semiseg.engine.optim import build_optimizer
from semiseg.engine.options import option
from semiseg.engine.schedule import build_scheduler
from semiseg.evaluation import EvaluationInterrupted, build_eval_loader, evaluate
from semiseg.methods import build_method, method_info
from semiseg.methods.base import StepContext
from semiseg.models.builder import build_segmentor
from semiseg.utils.errors import failure_message
from semiseg.utils.files import atomic_write_json
from semiseg.utils.modules import unwrap
from semiseg.utils.timefmt import format_duration

from . import checkpoint as ckpt
from .debug_panels import save_panels
from .distributed import DistInfo, any_rank_true, cleanup_distributed, init_distributed, resolve_device, wrap_model
from .fastpath import autocast, compile_model, matmul_precision, set_activation_checkpointing, set_channels_last
from .loaders import (
    IterationPlan,
    TrainLoaders,
    auto_workers,
    build_train_loaders,
    derive_seed,
    plan_iterations,
    seed_all,
)
from .logging_utils import (
    MeanMeter,
    attach_file_log,
    count_parameters,
    detach_log,
    log_traceback,
    plain,
    write_state,
)
from .runlock import RunLock
from .signals import clear_stop, stop_reason, stop_requested, stop_signal_handlers
from .step import train_step
from .tensorboard import TensorBoard

logger = logging.getLogger(__name__)

STREAM_STEP = 3   # seed stream of the per-iteration model RNG (0-2 are the data streams)
# config keys a resumed run may not change: its checkpoint would not fit or would mean something else
FIXED_ON_RESUME = ('model', 'model_args', 'dataset', 'nclass', 'method', 'crop_size', 'split')


class TrainingInterrupted(RuntimeError):
    """Training stopped on request (SIGTERM / SIGUSR1 / request_stop); latest.pth holds the state."""


class TrainingFailed(RuntimeError):
    """Training cannot continue (e.g. a non-finite loss); latest.pth keeps the last good state."""


@dataclass(frozen=True)
class TrainerParts:
    """The builders a run is made of. The defaults are the real ones; tests pass small stand-ins.

    Signatures: `method_info(name) -> MethodInfo`, `dataset_info(name, folder) -> DatasetInfo`,
    `build_datasets(cfg, method_info) -> TrainData`, `build_model(cfg) -> nn.Module`,
    `build_method(cfg, model)`, `build_optimizer(model, cfg)`, `build_scheduler(optimizer, cfg,
    total_iters)`, `build_eval_loader(dataset, distributed, num_workers)`,
    `evaluate(model, loader, cfg, device) -> {'miou', 'per_class_iou'}`.
    """

    method_info: Callable = method_info
    dataset_info: Callable = dataset_info
    build_datasets: Callable = build_datasets
    build_model: Callable = build_segmentor
    build_method: Callable = build_method
    build_optimizer: Callable = build_optimizer
    build_scheduler: Callable = build_scheduler
    build_eval_loader: Callable = build_eval_loader
    evaluate: Callable = evaluate


def train(cfg: dict, run_dir: Path, parts: TrainerParts | None = None) -> dict:
    """Train (or resume) the run `cfg` in `run_dir`; returns the `results.json` content."""
    return Trainer(cfg, Path(run_dir), parts).run()


class Trainer:
    """Holds the run's parts between setup, loop and finish; see `train`."""

    def __init__(self, cfg: dict, run_dir: Path, parts: TrainerParts | None = None) -> None:
        self.parts = parts or TrainerParts()
        self.cfg = plain(cfg)
        self.run_dir = Path(run_dir)
        self.seed = int(option(cfg, 'seed'))
        self.log_every = max(1, int(option(cfg, 'log_every')))
        self.ckpt_every = int(option(cfg, 'ckpt_every'))
        self.precision = option(cfg, 'precision')
        self.eval_every = int(cfg.get('eval_every_n_epochs') or 1)
        # progress, restored on resume
        self.iteration = 0                 # next iteration to run
        self.best_miou = 0.0
        self.best_per_class: dict[str, float] = {}
        self.last_eval: dict[str, Any] | None = None
        self.last_eval_epoch = -1
        self.eta_s: float | None = None
        self.saved_iteration = 0             # the iteration latest.pth holds
        self._unsaved_eval = False           # an evaluation ran since latest.pth was written
        self._unchecked: list = []           # (it, epoch, total, losses) not yet checked for NaN
        self.extra_evals: dict[str, dict] = {}  # e.g. {'ema': {'miou', 'best_miou', 'per_class_iou'}}
        self.elapsed_before = 0.0            # training seconds of earlier starts
        self.dist = DistInfo()

    # ------------------------------------------------------------------ entry point
    def run(self) -> dict:
        clear_stop()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(option(self.cfg, 'device'))
        self.dist, self.device = init_distributed(self.device)
        lock = RunLock(self.run_dir).acquire() if self.dist.is_main else None  # one writer per folder
        handler = attach_file_log(self.run_dir) if self.dist.is_main else None
        self.tb = None
        try:
            self.tb = TensorBoard(self.run_dir, enabled=self.dist.is_main)
            with stop_signal_handlers():
                self._setup()
                return self._train()
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:
            self._state('interrupted', error=f'aborted by a second Ctrl-C; latest.pth holds iteration '
                                             f'{self.saved_iteration}')
            raise
        except Exception as e:
            message = failure_message(e, self.run_dir)
            log_traceback(f'training of {self.run_dir} failed: {message}')   # train.log only
            self._state('failed', error=message)
            raise
        finally:
            if self.tb is not None:
                self.tb.close()
            if handler is not None:
                detach_log(handler)
            if lock is not None:
                lock.release()
            cleanup_distributed(self.dist)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg, parts = self.cfg, self.parts
        if self.dist.is_main:
            for stale in ckpt.remove_stale_temporaries(self.run_dir):
                logger.info('removed %s, left by an interrupted checkpoint write', stale.name)
        if self.device.type == 'cuda':
            torch.backends.cudnn.enabled = True
            torch.backends.cudnn.benchmark = True
        config_file = self.run_dir / 'config.yaml'
        if self.dist.is_main and not config_file.exists():
            config_file.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding='utf-8')
        logger.info('run %s (world size %d, device %s, precision %s)', self.run_dir.name,
                    self.dist.world_size, self.device, self.precision)
        logger.info('config:\n%s', yaml.safe_dump(cfg, sort_keys=False).rstrip())
        expected = int(cfg.get('n_gpus') or 1) * int(cfg.get('n_nodes') or 1)
        if expected != self.dist.world_size:
            logger.warning('config asks for %d process(es) (n_gpus x n_nodes) but %d run; the batch '
                           'size is per process, so the global batch differs from the config\'s',
                           expected, self.dist.world_size)

        info = parts.dataset_info(cfg['dataset'], Path(str(cfg['data_root'])).expanduser())
        self.class_names = list(info.class_names)
        self.palette = info.palette
        data = parts.build_datasets(cfg, parts.method_info(cfg['method']))

        seed_all(self.seed)   # same initial weights on every rank (DDP also broadcasts rank 0's)
        model = parts.build_model(cfg).to(self.device)
        for line in count_parameters(model):
            logger.info('%s', line)
        latest = self.run_dir / ckpt.LATEST
        resume_state = ckpt.read_training_checkpoint(latest) if latest.exists() else None
        if resume_state is not None:
            model.load_state_dict(resume_state['model'])
        self._apply_fast_path(model)
        self.model = wrap_model(model, self.dist, self.device)
        self.method = parts.build_method(cfg, self.model)
        self.optimizer = parts.build_optimizer(self.model, cfg)

        self.loaders: TrainLoaders = build_train_loaders(
            data, int(cfg['batch_size']), self.seed, self.dist.world_size, self.dist.rank,
            option(cfg, 'num_workers'), pin_memory=self.device.type == 'cuda')
        self.plan: IterationPlan = plan_iterations(cfg, self.loaders.iters_per_epoch)
        self.scheduler = parts.build_scheduler(self.optimizer, cfg, self.plan.total_iters)
        self.val_loader = parts.build_eval_loader(data.val, distributed=self.dist.distributed,
                                                  num_workers=auto_workers(option(cfg, 'num_workers'), 1))
        logger.info('%d epochs x %d iterations = %d iterations (LR schedule over %d)', self.plan.epochs,
                    self.plan.iters_per_epoch, self.plan.total_iters, self.plan.scheduler_max_iters)
        if resume_state is not None:
            self._restore(resume_state, latest)

    def _apply_fast_path(self, model: torch.nn.Module) -> None:
        """The engine options of semiseg.engine.fastpath (all off by default: the releases' numerics)."""
        cfg = self.cfg
        torch.set_float32_matmul_precision(matmul_precision(self.precision))
        if option(cfg, 'grad_checkpointing'):
            logger.info('activation checkpointing in %s', ', '.join(set_activation_checkpointing(model)) or 'nothing')
        if option(cfg, 'channels_last'):
            logger.info('channels_last: %s', ', '.join(set_channels_last(model)) or 'nothing')
        if option(cfg, 'compile'):
            compile_model(model)
            logger.info('model compiled with torch.compile')

    def _restore(self, state: dict, path: Path) -> None:
        saved_total = state.get('total_iters')
        if saved_total is not None and saved_total != self.plan.total_iters:
            raise ckpt.CheckpointError(
                f'{path} was written by a run of {saved_total} iterations but this config plans '
                f'{self.plan.total_iters}; resume with the config in {self.run_dir / "config.yaml"} or '
                f'start a new run folder')
        old_cfg = state.get('config') or {}
        changed = sorted(k for k in set(old_cfg) | set(self.cfg) if old_cfg.get(k) != self.cfg.get(k))
        fixed = [k for k in changed if k in FIXED_ON_RESUME]
        if fixed:
            was = ', '.join(f'{k}={old_cfg.get(k)!r}' for k in fixed)
            raise ckpt.CheckpointError(
                f'{path} was trained with {was}, but {self.run_dir / "config.yaml"} says otherwise; '
                f'{", ".join(fixed)} cannot change mid-run: restore them, or start a new run folder')
        if changed:
            logger.warning('config.yaml differs from the checkpoint in %s; the config file wins: %s',
                           ', '.join(changed), '; '.join(f'{k}: {old_cfg.get(k)!r} -> {self.cfg.get(k)!r}'
                                                        for k in changed))
        configured = [{k: v for k, v in g.items() if k != 'params'} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state['optimizer'])
        for group, hyper in zip(self.optimizer.param_groups, configured):
            group.update(hyper)        # lr, weight decay, ... as the config says, not as saved
        self.method.load_state_dict(state.get('method') or {})
        self.extra_evals = dict(state.get('extra_evals') or {})
        last_iter = (state.get('scheduler') or {}).get('last_iter', -1)
        if last_iter >= 0:
            self.scheduler.step(last_iter)   # the configured schedule at the saved position
        if state.get('rng') is not None:
            ckpt.restore_rng(state['rng'])
        self.iteration = int(state['iteration'])
        self.best_miou = float(state.get('best_miou') or 0.0)
        self.best_per_class = dict(state.get('best_per_class_iou') or {})
        self.last_eval = state.get('last_eval')
        self.last_eval_epoch = int(state.get('last_eval_epoch', -1))
        self.saved_iteration = self.iteration
        self.elapsed_before = float(state.get('elapsed_s') or 0.0)
        logger.info('resuming from %s at iteration %d/%d (epoch %d), best mIoU %.2f', path,
                    self.iteration, self.plan.total_iters, self.iteration // self.plan.iters_per_epoch,
                    self.best_miou)

    # ------------------------------------------------------------------ loop
    def _train(self) -> dict:
        plan = self.plan
        ipe = plan.iters_per_epoch
        start_epoch = self.iteration // ipe
        if self.iteration % ipe == 0 and start_epoch > 0 and self._eval_pending(start_epoch - 1):
            self._end_epoch(start_epoch - 1)   # stopped between the last step of an epoch and its eval
        self._state('running')
        self._t_start, self._iters_run = time.time(), 0
        bar = tqdm(total=plan.total_iters, initial=self.iteration, dynamic_ncols=True, desc='train',
                   disable=not (self.dist.is_main and sys.stderr.isatty()))
        try:
            for epoch in range(start_epoch, plan.epochs):
                self._run_epoch(epoch, bar)
                self._end_epoch(epoch)
                if epoch + 1 < plan.epochs and self._should_stop():
                    self._interrupt(epoch + 1)
        finally:
            bar.close()
        return self._finish()

    def _run_epoch(self, epoch: int, bar: tqdm) -> None:
        ipe = self.plan.iters_per_epoch
        skip = self.iteration - epoch * ipe
        logger.info('===> Epoch %d/%d, lr %.3e, previous best %.2f%s', epoch, self.plan.epochs - 1,
                    self.optimizer.param_groups[0]['lr'], self.best_miou,
                    f' (resuming at batch {skip}/{ipe})' if skip else '')
        meter = MeanMeter()
        batches = self.loaders.start_epoch(epoch, skip)
        t_last = time.time()
        for i, batch in enumerate(batches, start=skip):
            it = epoch * ipe + i
            batch = self._to_device(batch)
            seed_all(derive_seed(self.seed, STREAM_STEP, self.dist.rank, it))
            want_visuals = bool(option(self.cfg, 'debug_every_epoch')) and i == 0 and self.dist.is_main
            result, total = self._step(batch, it, epoch, want_visuals)
            self.iteration = it + 1
            iter_time = time.time() - t_last    # data loading + step; panels, logs, saves excluded
            self._iters_run += 1
            meter.update({'loss_all': total, **result.losses, **result.stats, 'iter_time': iter_time})
            bar.update(1)
            if want_visuals and result.visuals:
                self._debug_panels(result.visuals, it)
            if self.iteration % self.log_every == 0 or self.iteration == self.plan.total_iters:
                self._log_train(meter, bar)
            if self.ckpt_every > 0 and self.iteration % self.ckpt_every == 0 and self.iteration % ipe != 0:
                self._save_latest()
            if self._should_stop():
                self._interrupt(epoch)
            t_last = time.time()

    def _to_device(self, batch: dict) -> dict:
        """The batch (named by the data layer) with its tensors on the training device."""
        from .loaders import batch_to_device
        return batch_to_device(batch, self.device, self.cfg)

    def _autocast(self):
        return autocast(self.precision, self.device)

    def _step(self, batch: dict, it: int, epoch: int, want_visuals: bool):
        ctx = StepContext(iteration=it, total_iters=self.plan.total_iters, epoch=epoch,
                          want_visuals=want_visuals, max_visuals=int(option(self.cfg, 'max_debug_images')))
        result, total = train_step(self.method, self.optimizer, self.scheduler, batch, ctx, self.precision,
                                   self.device)
        # no host sync here: finiteness is checked before every log line and every checkpoint
        self._unchecked.append((it, epoch, total, result.losses))
        return result, total

    def _check_finite(self) -> None:
        """Fail at the first non-finite loss since the last check (at most `log_every` iterations
        back): one host sync per check, and never a checkpoint written after a NaN."""
        if not self._unchecked:
            return
        finite = torch.isfinite(torch.stack([t for _, _, t, _ in self._unchecked]))
        all_finite = bool(finite.all())
        bad = any_rank_true(not all_finite, self.dist, self.device)
        pending, self._unchecked = self._unchecked, []
        if bad:   # here or on another rank (then its last iteration stands for it)
            first = int((~finite).nonzero()[0]) if not all_finite else len(pending) - 1
            it, epoch, _, losses = pending[first]
            self._fail_non_finite(it, epoch, losses)

    def _fail_non_finite(self, it: int, epoch: int, losses: dict[str, torch.Tensor]) -> None:
        terms = ', '.join(f'{k}={float(v.detach()):.4g}' for k, v in losses.items())
        latest = self.run_dir / ckpt.LATEST
        kept = (f'the last good checkpoint {latest} (iteration {self.saved_iteration}) is kept'
                if latest.exists() else 'no checkpoint was written yet')
        msg = (f'non-finite loss at iteration {it} (epoch {epoch}): {terms}; training stopped, {kept}. '
               f'Lower the learning rate, use precision fp32, or check the data of this run')
        self._state('failed', error=msg)
        raise TrainingFailed(msg)

    # ------------------------------------------------------------------ logging
    def _log_train(self, meter: MeanMeter, bar: tqdm) -> None:
        self._check_finite()
        means = meter.means()
        meter.reset()
        lr = self.optimizer.param_groups[0]['lr']
        elapsed = time.time() - self._t_start
        self.eta_s = elapsed / max(self._iters_run, 1) * (self.plan.total_iters - self.iteration)
        if self.dist.is_main:
            parts = ' | '.join(f'{k} {v:.3f}' for k, v in means.items() if k != 'iter_time')
            logger.info('Iter %d/%d | %s | lr %.3e | iter_time %.3fs | eta %s', self.iteration,
                        self.plan.total_iters, parts, lr, means.get('iter_time', 0.0),
                        format_duration(self.eta_s))
            self.tb.scalars('train', {**means, 'lr': lr}, self.iteration)
            bar.set_postfix(loss=f'{means.get("loss_all", float("nan")):.3f}')
        self._state('running')

    def _debug_panels(self, visuals: dict[str, torch.Tensor], it: int) -> None:
        written = save_panels(visuals, self.run_dir / 'debug', it, self.dist.rank, self.palette,
                              int(option(self.cfg, 'max_debug_images')))
        for b, (_, image) in enumerate(written):
            self.tb.image(f'debug/panel_{b}', image, it)

    def _state(self, state: str, error: str | None = None) -> None:
        if not self.dist.is_main:
            return
        plan = getattr(self, 'plan', None)
        try:
            self._write_state(state, error, plan)
        except OSError as err:   # e.g. a full disk: the run's own error is what matters
            logger.warning('could not write state.json (%s)', err)

    def _write_state(self, state: str, error: str | None, plan) -> None:
        write_state(self.run_dir, state, iteration=self.iteration, saved_iteration=self.saved_iteration,
                    total_iters=plan.total_iters if plan else 0,
                    epoch=self.iteration // plan.iters_per_epoch if plan else 0,
                    best_miou=self.best_miou, last_miou=(self.last_eval or {}).get('miou'),
                    eta_s=self.eta_s, elapsed_s=self._elapsed(), world_size=self.dist.world_size,
                    host=socket.gethostname(), pid=os.getpid(), error=error)

    def _elapsed(self) -> float:
        """Training wall time of this run over all its starts (resumes add up)."""
        return self.elapsed_before + (time.time() - self._t_start if hasattr(self, '_t_start') else 0.0)

    # ------------------------------------------------------------------ evaluation / checkpoints
    def _should_eval(self, epoch: int) -> bool:
        """As google-research/semivl `semivl.py`: after epoch e when e % eval_every == 0 or e is the last."""
        return epoch % self.eval_every == 0 or epoch == self.plan.epochs - 1

    def _eval_pending(self, epoch: int) -> bool:
        return self._should_eval(epoch) and self.last_eval_epoch < epoch

    def _end_epoch(self, epoch: int) -> None:
        """Save latest.pth, then evaluate if due (best.pth on strict improvement): an interruption
        during evaluation loses no training; the evaluation reruns on resume."""
        if self.saved_iteration != self.iteration:
            self._save_latest()
        if self._eval_pending(epoch):
            try:
                self._evaluate(epoch)
            except EvaluationInterrupted:
                self._interrupt(epoch, during='evaluation')
        self._state('running')

    def _should_stop(self) -> bool:
        return any_rank_true(stop_requested(), self.dist, self.device)

    def _evaluate(self, epoch: int) -> None:
        t0 = time.time()
        miou, per_class = self._score(self.model)
        self.last_eval = {'miou': miou, 'per_class_iou': per_class, 'epoch': epoch}
        self.last_eval_epoch = epoch
        self._unsaved_eval = True
        improved = miou > self.best_miou
        if improved:
            self.best_miou, self.best_per_class = miou, dict(per_class)
        if self.dist.is_main:
            logger.info('***** Evaluation %s, epoch %d (%s) *****', self.cfg.get('eval_mode'), epoch,
                        self.run_dir.name)
            for i, (name, iou) in enumerate(per_class.items()):
                logger.info('***** Evaluation ***** >>>> Class [%d %s] IoU: %.2f', i, name, iou)
            logger.info('***** Evaluation %s ***** >>>> MeanIoU: %.2f (best %.2f%s) in %.1fs',
                        self.cfg.get('eval_mode'), miou, self.best_miou, ', new best' if improved else '',
                        time.time() - t0)
            self.tb.scalars('eval', {'mIoU': miou, **{f'{k}_IoU': v for k, v in per_class.items()}}, epoch)
        for name, model in self.method.eval_models().items():
            self._evaluate_extra(name, model, epoch)
        if self.dist.is_main:
            self.tb.flush()
            if improved:
                ckpt.save_checkpoint(self._checkpoint_state(), self.run_dir / ckpt.BEST)

    def _evaluate_extra(self, name: str, model: torch.nn.Module, epoch: int) -> None:
        """Evaluate a model the method keeps besides the trained one (UniMatch V2's EMA teacher).

        Its scores are logged and kept (`extra_evals`, results.json); best.pth follows the trained
        model's mIoU, as the release's does."""
        miou, per_class = self._score(model)
        previous = self.extra_evals.get(name, {})
        best = max(miou, float(previous.get('best_miou', 0.0)))
        self.extra_evals[name] = {'miou': miou, 'best_miou': best, 'per_class_iou': per_class, 'epoch': epoch,
                                  'best_epoch': epoch if miou >= best else previous.get('best_epoch', epoch)}
        if self.dist.is_main:
            logger.info('***** Evaluation %s (%s) ***** >>>> MeanIoU: %.2f (best %.2f)', self.cfg.get('eval_mode'),
                        name, miou, best)
            self.tb.scalars('eval', {f'{name}_mIoU': miou}, epoch)

    def _score(self, model: torch.nn.Module) -> tuple[float, dict[str, float]]:
        """(mIoU, {class name: IoU}) of `model` on the validation set, in the run's precision."""
        with self._autocast():
            res = self.parts.evaluate(model, self.val_loader, self.cfg, self.device, should_stop=self._should_stop)
        return float(res['miou']), {self._class_name(i): float(v) for i, v in enumerate(res['per_class_iou'])}

    def _class_name(self, i: int) -> str:
        return self.class_names[i] if i < len(self.class_names) else f'class_{i}'

    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            'model': unwrap(self.model).state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'scheduler': self.scheduler.state_dict(),
            'scaler': None,                        # bf16 autocast needs no loss scaler
            'epoch': self.iteration // self.plan.iters_per_epoch,
            'iteration': self.iteration,
            'best_miou': self.best_miou,
            'rng': ckpt.capture_rng(),
            'config': self.cfg,
            'total_iters': self.plan.total_iters,
            'last_eval_epoch': self.last_eval_epoch,
            'last_eval': self.last_eval,
            'best_per_class_iou': self.best_per_class,
            'elapsed_s': self._elapsed(),
            'method': self.method.state_dict(),
            'extra_evals': self.extra_evals,
        }

    def _save_latest(self) -> None:
        self._check_finite()
        if self.dist.is_main:
            ckpt.save_checkpoint(self._checkpoint_state(), self.run_dir / ckpt.LATEST)
            logger.debug('saved %s at iteration %d', ckpt.LATEST, self.iteration)
        self.saved_iteration = self.iteration
        self._unsaved_eval = False

    def _interrupt(self, epoch: int, during: str = 'training') -> None:
        if self.saved_iteration != self.iteration or self._unsaved_eval:
            self._save_latest()
        reason = stop_reason() or ('stop requested on another rank' if self.dist.distributed else 'stop requested')
        logger.warning('%s during %s: stopped after iteration %d/%d (epoch %d); %s holds it, the same run '
                       'resumes from it', reason, during, self.iteration, self.plan.total_iters, epoch, ckpt.LATEST)
        self._state('interrupted', error=reason)
        raise TrainingInterrupted(f'{reason}: training of {self.run_dir} stopped at iteration '
                                  f'{self.iteration}/{self.plan.total_iters}; latest.pth saved')

    def _finish(self) -> dict:
        last = self.last_eval or {'miou': 0.0, 'per_class_iou': {}}
        results = {
            'miou': last['miou'], 'best_miou': self.best_miou,
            'per_class_iou': last['per_class_iou'], 'best_per_class_iou': self.best_per_class,
            'iters': self.iteration, 'epochs': self.plan.epochs, 'finished': True,
        }
        for name, res in self.extra_evals.items():   # e.g. results['ema'] = {'miou', 'best_miou', ...}
            results[name] = {k: res[k] for k in ('miou', 'best_miou', 'per_class_iou', 'best_epoch')}
        if self.dist.is_main:
            atomic_write_json(self.run_dir / 'results.json', results)
            metrics = {'hparam/mIoU': results['miou'], 'hparam/best_mIoU': self.best_miou}
            metrics.update({f'hparam/{name}_best_mIoU': res['best_miou'] for name, res in self.extra_evals.items()})
            self.tb.hparams(self.cfg, metrics, self.iteration)
            self.eta_s = 0.0
            self._state('finished')
            logger.info('finished %d iterations: mIoU %.2f, best %.2f (%s)', self.iteration, results['miou'],
                        self.best_miou, self.run_dir)
        return results
