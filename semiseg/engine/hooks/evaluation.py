"""Evaluation hook: after epoch e when e % eval_every_n_epochs == 0 or e is the last
(google-research/semivl `semivl.py`), the trained model and every model the method keeps besides
it (`method.eval_models()`, e.g. UniMatch V2's EMA teacher) are scored by one path, `evaluate_model`.

Each model has one record {'miou', 'per_class_iou', 'epoch', 'best_miou', 'best_epoch',
'best_per_class_iou'}; `best.pth` follows the trained model's mIoU (strict improvement), as the
releases' does. The records are saved in checkpoints and become `results.json`.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import torch

from semiseg.engine.fastpath import autocast
from semiseg.evaluation import EvaluationInterrupted
from semiseg.utils.files import atomic_write_json
from semiseg.utils.run_files import RESULTS_FILE

from .base import HookBase

logger = logging.getLogger('semiseg.engine.trainer')

MODEL = ''                 # the record name of the trained model; other names are the method's (e.g. 'ema')
RESULT_KEYS = ('miou', 'best_miou', 'per_class_iou', 'best_epoch')   # results.json keeps these of extra models


class EvaluationHook(HookBase):
    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.unsaved = False          # an evaluation ran since latest.pth was written

    # ------------------------------------------------------------------ schedule
    def due(self, epoch: int) -> bool:
        every = int(self.trainer.cfg.get('eval_every_n_epochs') or 1)
        return epoch % every == 0 or epoch == self.trainer.plan.epochs - 1

    def pending(self, epoch: int) -> bool:
        return self.due(epoch) and self.last_epoch < epoch

    def after_epoch(self, epoch: int) -> None:
        if not self.pending(epoch):
            return
        try:
            self.evaluate(epoch)
        except EvaluationInterrupted:
            self.trainer.interrupt(epoch, during='evaluation')

    def evaluate(self, epoch: int) -> None:
        t = self.trainer
        improved = self.evaluate_model(MODEL, t.model, epoch)
        self.unsaved = True           # a stop during the next models' evaluations keeps this one
        for name, model in t.method.eval_models().items():
            self.evaluate_model(name, model, epoch)
        if t.dist.is_main:
            t.tb.flush()
            if improved:
                t.checkpoints.save_best()

    def evaluate_model(self, name: str, model: torch.nn.Module, epoch: int) -> bool:
        """Score `model`, update its record, log it; True when its best mIoU strictly improved."""
        t = self.trainer
        t0 = time.time()
        with autocast(t.precision, t.device):
            res = t.parts.evaluate(model, t.val_loader, t.cfg, t.device, should_stop=t.should_stop)
        miou = float(res['miou'])
        per_class = {self._class_name(i): float(v) for i, v in enumerate(res['per_class_iou'])}
        rec = self.records.setdefault(name, {'best_miou': 0.0, 'best_per_class_iou': {}})
        improved = miou > float(rec['best_miou'])
        rec.update(miou=miou, per_class_iou=per_class, epoch=epoch)
        if improved:
            rec.update(best_miou=miou, best_per_class_iou=dict(per_class))
        if miou >= rec['best_miou']:
            rec['best_epoch'] = epoch
        if t.dist.is_main:
            self._report(name, rec, improved, time.time() - t0)
        return improved

    def _report(self, name: str, rec: dict, improved: bool, seconds: float) -> None:
        t = self.trainer
        mode, epoch = t.cfg.get('eval_mode'), rec['epoch']
        if name != MODEL:
            logger.info('***** Evaluation %s (%s) ***** >>>> MeanIoU: %.2f (best %.2f)', mode, name, rec['miou'],
                        rec['best_miou'])
            t.tb.scalars('eval', {f'{name}_mIoU': rec['miou']}, epoch)
            return
        logger.info('***** Evaluation %s, epoch %d (%s) *****', mode, epoch, t.run_dir.name)
        for i, (cls, iou) in enumerate(rec['per_class_iou'].items()):
            logger.info('***** Evaluation ***** >>>> Class [%d %s] IoU: %.2f', i, cls, iou)
        logger.info('***** Evaluation %s ***** >>>> MeanIoU: %.2f (best %.2f%s) in %.1fs', mode, rec['miou'],
                    rec['best_miou'], ', new best' if improved else '', seconds)
        t.tb.scalars('eval', {'mIoU': rec['miou'], **{f'{k}_IoU': v for k, v in rec['per_class_iou'].items()}},
                     epoch)

    def _class_name(self, i: int) -> str:
        names = self.trainer.class_names
        return names[i] if i < len(names) else f'class_{i}'

    # ------------------------------------------------------------------ records
    @property
    def best_miou(self) -> float:
        return float(self.records.get(MODEL, {}).get('best_miou', 0.0))

    @property
    def last_miou(self) -> float | None:
        return self.records.get(MODEL, {}).get('miou')

    @property
    def last_epoch(self) -> int:
        return int(self.records.get(MODEL, {}).get('epoch', -1))

    def extra_records(self) -> dict[str, dict]:
        return {k: v for k, v in self.records.items() if k != MODEL}

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint keys of the evaluation records (semiseg.engine.checkpoint.CHECKPOINT_KEYS)."""
        rec = self.records.get(MODEL)
        return {'best_miou': self.best_miou, 'last_eval_epoch': self.last_epoch,
                'last_eval': {k: rec[k] for k in ('miou', 'per_class_iou', 'epoch')} if rec else None,
                'best_per_class_iou': dict(rec['best_per_class_iou']) if rec else {},
                'extra_evals': self.extra_records()}

    def load_state_dict(self, state: dict) -> None:
        self.records = {k: dict(v) for k, v in (state.get('extra_evals') or {}).items()}
        last, best = state.get('last_eval'), float(state.get('best_miou') or 0.0)
        if last is not None or best:
            rec = {'best_miou': best, 'best_per_class_iou': dict(state.get('best_per_class_iou') or {})}
            if last is not None:
                rec.update(last, epoch=int(state.get('last_eval_epoch', last.get('epoch', -1))))
            self.records[MODEL] = rec

    def after_train(self) -> None:
        """results.json: the trained model's last and best evaluation, and those of the method's models."""
        t = self.trainer
        rec = self.records.get(MODEL, {})
        results = {
            'miou': rec.get('miou', 0.0), 'best_miou': self.best_miou,
            'per_class_iou': rec.get('per_class_iou', {}), 'best_per_class_iou': rec.get('best_per_class_iou', {}),
            'iters': t.iteration, 'epochs': t.plan.epochs, 'finished': True,
        }
        for name, extra in self.extra_records().items():   # e.g. results['ema'] = {'miou', 'best_miou', ...}
            results[name] = {k: extra[k] for k in RESULT_KEYS}
        t.results = results
        if t.dist.is_main:
            atomic_write_json(t.run_dir / RESULTS_FILE, results)
