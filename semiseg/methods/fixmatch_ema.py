"""FixMatch with an EMA teacher: UniMatch V2's own baseline (LiheYoung/UniMatch-V2 `fixmatch.py`).

The same EMA teacher, optimizer, schedule and evaluation as `unimatch_v2` (this class inherits
them), with one strong view and no complementary dropout. One iteration:
1. teacher (eval mode, no_grad) on the weak view: conf, pseudo-label;
2. CutMix inside the batch: x_s1[box1] <- x_s1.flip(0)[box1], labels alike;
3. one student forward on cat(x_l, x_s1), split [B, B];
4. L = (L_x + L_s) / 2, L_s = sum(CE * [conf >= tau] * valid) / #valid;
5. after the optimizer step: the EMA update of `unimatch_v2`.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import StepContext, StepResult, keep_visuals
from .losses import confidence_weighted_loss, confident_fraction, mcc_enabled, unsupervised_ce_map
from .mixing import pseudo_label
from .unimatch_v2 import UniMatchV2, in_batch_cutmix

LOSS_WEIGHTS = {'loss_x': 0.5, 'loss_s': 0.5}


class FixMatchEMA(UniMatchV2):
    """Weak-to-strong consistency on img_s1, pseudo-labels from the EMA teacher (module docstring)."""

    name = 'fixmatch_ema'

    def __init__(self, cfg: dict, model: nn.Module):
        if mcc_enabled(cfg.get('maskclip_consistency_lambda', 0)):
            raise ValueError('method fixmatch_ema has no MaskCLIP consistency; set maskclip_consistency_lambda=0 '
                             'or use method unimatch_v2')
        super().__init__(cfg, model)

    def step(self, batch: dict, ctx: StepContext) -> StepResult:
        self.check_batch(batch)
        with torch.no_grad():
            conf, mask = pseudo_label(self.teacher(batch['img_w']))
        box = batch['box1']
        img_s = in_batch_cutmix(batch['img_s1'], box)

        self.model.train()
        n_x = batch['img_x'].shape[0]
        pred_x, pred_s = self.model(torch.cat((batch['img_x'], img_s))).split([n_x, img_s.shape[0]])

        mask_mix, conf_mix = in_batch_cutmix(mask, box), in_batch_cutmix(conf, box)
        ign_mix = in_batch_cutmix(batch['ignore'], box)
        losses = {'loss_x': self.criterion_l(pred_x, batch['mask_x']),
                  'loss_s': confidence_weighted_loss(unsupervised_ce_map(pred_s, mask_mix), conf_mix, ign_mix,
                                                     self.conf_thresh, 'pixelwise')}
        stats = {'mask_ratio': confident_fraction(conf, batch['ignore'], self.conf_thresh).detach()}
        visuals = {}
        if ctx.want_visuals:
            visuals = keep_visuals({
                'img_x': batch['img_x'], 'img_s1': img_s, 'img_w': batch['img_w'],
                'pred_x': pred_x.argmax(1), 'pred_s1': pred_s.argmax(1),
                'mask_x': batch['mask_x'], 'pl_s1': mask_mix, 'pl_fp': mask}, ctx.max_visuals)
        return StepResult(losses, dict(LOSS_WEIGHTS), stats, visuals)
