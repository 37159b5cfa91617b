"""Tiny stand-ins for the engine tests: data, model, method and evaluation honouring the contracts
of docs/ARCHITECTURE.md §3-§6, small enough that a run of a few epochs takes a second or two.

`PARTS` is the `TrainerParts` to pass to `semiseg.engine.train`; run as a script
(`python tests/_engine_standins.py --run-dir DIR`) it calls `semiseg.engine.run.main` with them, so
the subprocess tests go through the real entry point.
Test-only config keys: `test_nan_at` (iteration whose loss is NaN), `test_sigterm_at`
(iteration after which the process of rank `test_sigterm_rank`, default 0, sends itself
SIGTERM), `test_sleep` (seconds per step).
"""
from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

NCLASS = 3
CLASS_NAMES = ('background', 'bright', 'dark')
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]] + [[7, 7, 7]] * 252 + [[224, 224, 192]], np.uint8)
SIZE = 16


def base_config(**overrides) -> dict:
    """An exp-0-like config: 24 unlabeled / 4 labeled samples, batch 4 -> 6 iterations per epoch."""
    cfg = {
        'dataset': 'standin', 'data_root': '/nonexistent', 'nclass': NCLASS, 'split': 'tiny',
        'crop_size': SIZE, 'model': 'standin', 'method': 'standin',
        'optimizer': {'type': 'AdamW', 'lr': 0.01, 'weight_decay': 0.01,
                      'paramwise_cfg': {'custom_keys': {'head': {'lr_mult': 10.0}}}},
        'warmup_iters': 0, 'warmup_ratio': 1e-6,
        'n_gpus': 1, 'n_nodes': 1, 'batch_size': 4, 'epochs': 2, 'iters': None,
        'eval_mode': 'original', 'eval_every_n_epochs': 1, 'exp': 0, 'name': 'standin', 'version': '0.1.0',
        'num_workers': 0, 'log_every': 2, 'device': 'cpu',
    }
    cfg.update(overrides)
    return cfg


def _image(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(index)
    img = torch.rand(3, SIZE, SIZE, generator=g)
    mean = img.mean(0)
    mask = torch.zeros(SIZE, SIZE, dtype=torch.int64)
    mask[mean > 0.6] = 1
    mask[mean < 0.4] = 2
    return (img - 0.45) / 0.225, mask


def _augment(img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip (python random) + noise (torch RNG): the seeding of the engine matters."""
    if random.random() < 0.5:
        img, mask = img.flip(-1), mask.flip(-1)
    return img + 0.05 * torch.randn_like(img), mask


class LabeledSet(Dataset):
    def __init__(self, n: int, nsample: int) -> None:
        self.n, self.nsample = n, nsample

    def __len__(self) -> int:
        return self.nsample

    def __getitem__(self, i: int):
        img, mask = _augment(*_image(i % self.n))
        return {'img_x': img, 'mask_x': mask}


class UnlabeledSet(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        img, mask = _augment(*_image(1000 + i))
        s1 = img + 0.2 * torch.randn_like(img)
        s2 = img + 0.2 * torch.randn_like(img)
        ignore = torch.zeros(SIZE, SIZE, dtype=torch.int64)
        box1 = (torch.rand(SIZE, SIZE) > 0.5).float()
        box2 = (torch.rand(SIZE, SIZE) > 0.5).float()
        return {'img_w': img, 'img_s1': s1, 'img_s2': s2, 'ignore': ignore, 'box1': box1, 'box2': box2}


class ValSet(Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int):
        img, mask = _image(5000 + i)
        return {'img': img, 'mask': mask, 'id': f'val_{i}'}


def build_datasets(cfg: dict, method_info):
    from semiseg.data.build import TrainData
    train_u = UnlabeledSet(24)
    return TrainData(LabeledSet(4, len(train_u)), train_u, UnlabeledSet(24), ValSet())


class Info:
    class_names = CLASS_NAMES
    palette = PALETTE


class TinySegmentor(nn.Module):
    """backbone + decode_head + a frozen clip_encoder, like the VLM segmentor's parts."""

    def __init__(self, nclass: int) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.decode_head = nn.Conv2d(8, nclass, 1)
        self.clip_encoder = nn.Conv2d(3, 4, 1)
        self.clip_encoder.requires_grad_(False)
        self.num_classes = nclass

    def forward(self, x: torch.Tensor, need_fp: bool = False):
        f = self.backbone(x)
        if need_fp:
            return self.decode_head(f), self.decode_head(F.dropout2d(f, 0.5, training=True))
        return self.decode_head(f)


def build_model(cfg: dict) -> nn.Module:
    model = TinySegmentor(cfg['nclass'])
    if cfg.get('test_ckpt_kb'):   # a bigger checkpoint (the full-disk test)
        model.register_buffer('ballast', torch.zeros(cfg['test_ckpt_kb'] * 256))
    return model


class StandinMethod:
    """Labeled CE + weak-to-strong consistency on the unlabeled and partner views."""

    def __init__(self, cfg: dict, model: nn.Module) -> None:
        self.cfg, self.model = cfg, model

    def step(self, batch: dict, ctx):
        from semiseg.methods import StepResult

        if self.cfg.get('test_sleep'):
            time.sleep(self.cfg['test_sleep'])
        self.model.train()
        img_s1 = torch.where(batch['box1'].unsqueeze(1) > 0, batch['img_s1_o'], batch['img_s1'])
        preds, preds_fp = self.model(torch.cat([batch['img_x'], batch['img_w']]), need_fp=True)
        pred_x, pred_w = preds.chunk(2)
        pred_s1 = self.model(img_s1)
        pl = pred_w.detach().argmax(1)
        losses = {'loss_x': F.cross_entropy(pred_x, batch['mask_x']),
                  'loss_s1': F.cross_entropy(pred_s1, pl),
                  'loss_fp': F.cross_entropy(preds_fp.chunk(2)[1], pl)}
        if self.cfg.get('test_nan_at') == ctx.iteration:
            losses['loss_s1'] = losses['loss_s1'] * float('nan')
        if self.cfg.get('test_sigterm_at') == ctx.iteration and \
                self.cfg.get('test_sigterm_rank', 0) == int(os.environ.get('RANK', '0')):
            os.kill(os.getpid(), signal.SIGTERM)
        visuals = {}
        if ctx.want_visuals:
            n = ctx.max_visuals
            visuals = {'img_x': batch['img_x'][:n], 'img_s1': img_s1[:n], 'img_w': batch['img_w'][:n],
                       'pred_x': pred_x[:n].detach(), 'pred_s1': pred_s1[:n].argmax(1), 'mask_x': batch['mask_x'][:n],
                       'pl_s1': pl[:n], 'mcc_s1': torch.full_like(pl[:n], 255)}
        return StepResult(losses=losses, weights={'loss_x': 0.5, 'loss_s1': 0.25, 'loss_fp': 0.25},
                          stats={'mask_ratio': torch.tensor(0.5)}, visuals=visuals)

    # the rest of the Method contract (semiseg/methods/base.py): nothing to add
    def after_step(self, ctx) -> None:
        return None

    def eval_models(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def build_method(cfg: dict, model: nn.Module):
    return StandinMethod(cfg, model)


@torch.no_grad()
def evaluate(model, loader, cfg, device=None, should_stop=None) -> dict:
    """Whole-image argmax mIoU in percent (absent classes count 0, as in the release)."""
    model = model.module if hasattr(model, 'module') else model
    was = model.training
    model.eval()
    inter = torch.zeros(cfg['nclass'])
    union = torch.zeros(cfg['nclass'])
    for item in loader:
        if should_stop is not None and should_stop():
            from semiseg.evaluation import EvaluationInterrupted
            raise EvaluationInterrupted('stop requested')
        if cfg.get('test_eval_marker'):
            Path(cfg['test_eval_marker']).touch()
        if cfg.get('test_eval_sleep'):
            time.sleep(cfg['test_eval_sleep'])
        img, mask = item['img'], item['mask']
        pred = model(img.to(device)).argmax(1).cpu()
        for c in range(cfg['nclass']):
            inter[c] += ((pred == c) & (mask == c)).sum()
            union[c] += ((pred == c) | (mask == c)).sum()
    model.train(was)
    iou = (inter / union.clamp(min=1) * 100).tolist()
    return {'miou': sum(iou) / len(iou), 'per_class_iou': iou}


def method_info(name: str):
    """Registry entry of the stand-in method: every unlabeled and partner view."""
    from semiseg.methods.registry import UNLABELED_VIEWS, MethodInfo
    return MethodInfo('standin', 'si', 'tests._engine_standins:StandinMethod', 'stand-in',
                      unlabeled_views=UNLABELED_VIEWS, partner_views=UNLABELED_VIEWS)


def parts():
    """The TrainerParts of the stand-ins (optimizer and schedule are the real ones)."""
    from semiseg.engine.trainer import TrainerParts
    return TrainerParts(method_info=method_info, dataset_info=lambda name, root=None: Info(),
                        build_datasets=build_datasets, build_model=build_model, build_method=build_method,
                        evaluate=evaluate)


if __name__ == '__main__':
    torch.set_num_threads(1)
    from semiseg.engine.run import main
    sys.exit(main(sys.argv[1:], parts=parts()))
