"""FixMatch with CutMix (UniMatch's fixmatch.py): one strong view, L = (L_x + L_s) / 2."""
from __future__ import annotations

import torch

from .base import StepContext, StepResult, keep_visuals
from .consistency import ConsistencyMethod
from .mixing import cutmix, pseudo_label


class FixMatch(ConsistencyMethod):
    """Weak-to-strong consistency on img_s1 (CutMixed with the partner's img_s1_o by box1)."""

    name = 'fixmatch'

    def step(self, batch: dict, ctx: StepContext) -> StepResult:
        self.check_batch(batch)
        box = batch['box1']
        img_s = cutmix(batch['img_s1'], batch['img_s1_o'], box)
        conf_o, mask_o = self.partner_pseudo_labels(batch['img_w_o'])

        self.model.train()
        n_x = batch['img_x'].shape[0]
        preds = self.model(torch.cat((batch['img_x'], batch['img_w'])))
        pred_x, pred_w = preds[:n_x], preds[n_x:]
        pred_s = self.model(img_s)

        conf_w, mask_w = pseudo_label(pred_w)
        mask_mix = cutmix(mask_w, mask_o, box)
        conf_mix = cutmix(conf_w, conf_o, box)
        ign_mix = cutmix(batch['ignore'], batch['ignore_o'], box)

        losses = {'loss_x': self.criterion_l(pred_x, batch['mask_x']),
                  'loss_s': self.unsupervised_loss(pred_s, mask_mix, conf_mix, ign_mix)}
        weights = {'loss_x': 0.5, 'loss_s': 0.5}
        stats = {'mask_ratio': self.mask_ratio(conf_w, batch['ignore'])}
        visuals = {}
        if ctx.want_visuals:
            visuals = keep_visuals({
                'img_x': batch['img_x'], 'img_s1': img_s, 'img_w': batch['img_w'],
                'pred_x': pred_x.argmax(1), 'pred_s1': pred_s.argmax(1),
                'mask_x': batch['mask_x'], 'pl_s1': mask_mix, 'pl_fp': mask_w,
            }, ctx.max_visuals)
        return StepResult(losses, weights, stats, visuals)
