"""UniMatch (google-research/semivl `semivl.py`, the training loop without MCC; LiheYoung/UniMatch
`unimatch.py`).

Dual strong views CutMixed with a partner batch, feature perturbation on the weak view.
L = (L_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp) / 2. Release quirks kept: the partner
pseudo-labels come from an eval-mode forward, the main ones from the train-mode forward shared
with the labeled images, and the labeled half of the FP output is computed and discarded.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from .base import StepContext, StepResult, keep_visuals
from .consistency import ConsistencyMethod
from .losses import mcc_enabled
from .mixing import cutmix, pseudo_label

logger = logging.getLogger(__name__)

LOSS_WEIGHTS = {'loss_x': 0.5, 'loss_s1': 0.125, 'loss_s2': 0.125, 'loss_fp': 0.25}


@dataclass
class Forward:
    """Everything one UniMatch iteration computes before its losses."""
    img_s1: torch.Tensor
    img_s2: torch.Tensor
    pred_x: torch.Tensor
    pred_w_fp: torch.Tensor
    pred_s1: torch.Tensor
    pred_s2: torch.Tensor
    conf_w: torch.Tensor
    mask_w: torch.Tensor
    conf_o: torch.Tensor
    mask_o: torch.Tensor


class UniMatch(ConsistencyMethod):
    """UniMatch step; SemiVL extends it with MaskCLIP consistency."""

    name = 'unimatch'

    def __init__(self, cfg: dict, model: nn.Module):
        super().__init__(cfg, model)
        if not cfg['use_fp']:
            raise ValueError(f"method {self.name!r} needs use_fp: True (the release asserts it); "
                             "use method 'fixmatch' for training without feature perturbation")
        if type(self) is UniMatch and mcc_enabled(cfg.get('maskclip_consistency_lambda')):
            logger.warning("method 'unimatch' ignores maskclip_consistency_lambda; use method "
                           "'semivl' for MaskCLIP consistency")

    def forward(self, batch: dict) -> Forward:
        """Steps 2–6: CutMix images, partner pseudo-labels, main/FP and strong forwards."""
        img_s1 = cutmix(batch['img_s1'], batch['img_s1_o'], batch['box1'])
        img_s2 = cutmix(batch['img_s2'], batch['img_s2_o'], batch['box2'])
        conf_o, mask_o = self.partner_pseudo_labels(batch['img_w_o'])

        self.model.train()
        n_x = batch['img_x'].shape[0]
        preds, preds_fp = self.model(torch.cat((batch['img_x'], batch['img_w'])), need_fp=True)
        pred_x, pred_w = preds[:n_x], preds[n_x:]
        pred_w_fp = preds_fp[n_x:]
        pred_s1, pred_s2 = self.model(torch.cat((img_s1, img_s2))).chunk(2)
        conf_w, mask_w = pseudo_label(pred_w)
        return Forward(img_s1, img_s2, pred_x, pred_w_fp, pred_s1, pred_s2, conf_w, mask_w,
                       conf_o, mask_o)

    def step(self, batch: dict, ctx: StepContext) -> StepResult:
        self.check_batch(batch)
        f = self.forward(batch)
        losses, mixed = self.unimatch_losses(batch, f)
        stats = {'mask_ratio': self.mask_ratio(f.conf_w, batch['ignore'])}
        visuals = self.visuals(batch, f, mixed, ctx) if ctx.want_visuals else {}
        return StepResult(losses, dict(LOSS_WEIGHTS), stats, visuals)

    def unimatch_losses(self, batch: dict, f: Forward) -> tuple[dict, dict]:
        """Steps 7–8: mix the labels with the boxes and compute the four UniMatch terms."""
        box1, box2 = batch['box1'], batch['box2']
        mixed = {
            'mask1': cutmix(f.mask_w, f.mask_o, box1), 'mask2': cutmix(f.mask_w, f.mask_o, box2),
            'conf1': cutmix(f.conf_w, f.conf_o, box1), 'conf2': cutmix(f.conf_w, f.conf_o, box2),
            'ign1': cutmix(batch['ignore'], batch['ignore_o'], box1),
            'ign2': cutmix(batch['ignore'], batch['ignore_o'], box2),
        }
        losses = {
            'loss_x': self.criterion_l(f.pred_x, batch['mask_x']),
            'loss_s1': self.unsupervised_loss(f.pred_s1, mixed['mask1'], mixed['conf1'],
                                              mixed['ign1']),
            'loss_s2': self.unsupervised_loss(f.pred_s2, mixed['mask2'], mixed['conf2'],
                                              mixed['ign2']),
            'loss_fp': self.unsupervised_loss(f.pred_w_fp, f.mask_w, f.conf_w, batch['ignore']),
        }
        return losses, mixed

    @staticmethod
    def visuals(batch: dict, f: Forward, mixed: dict, ctx: StepContext,
                extra: dict | None = None) -> dict[str, torch.Tensor]:
        """The tensors of the release's debug panel (base.VISUAL_LAYOUT), first samples, CPU."""
        tensors = {
            'img_x': batch['img_x'], 'img_s1': f.img_s1, 'img_s2': f.img_s2,
            'img_w': batch['img_w'],
            'pred_x': f.pred_x.argmax(1), 'pred_s1': f.pred_s1.argmax(1),
            'pred_s2': f.pred_s2.argmax(1), 'pred_fp': f.pred_w_fp.argmax(1),
            'mask_x': batch['mask_x'], 'pl_s1': mixed['mask1'], 'pl_s2': mixed['mask2'],
            'pl_fp': f.mask_w,
        }
        tensors.update(extra or {})
        return keep_visuals(tensors, ctx.max_visuals)
