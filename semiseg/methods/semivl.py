"""SemiVL: UniMatch plus MaskCLIP consistency (MCC) with the frozen CLIP guidance encoder.

google-research/semivl `semivl.py`, the training loop: guidance labels for cat(img_w, img_w_o)
at mcc_conf_thresh, 255 where the own ignore mask is 255, CutMixed like the pseudo-labels; MCC
terms against the strong and FP predictions;
total = UniMatch total + λ_t (0.25 M_s1 + 0.25 M_s2 + 0.5 M_fp). The MCC part is not halved
(release quirk). With maskclip_consistency_lambda 0, SemiVL is exactly UniMatch.
"""
from __future__ import annotations

import torch
from torch import nn

from semiseg.utils.labels import IGNORE_INDEX

from .base import StepContext, StepResult
from .maskclip_consistency import MaskClipConsistency
from .mixing import cutmix
from .unimatch import LOSS_WEIGHTS, UniMatch

MCC_WEIGHTS = {'loss_mc_s1': 0.25, 'loss_mc_s2': 0.25, 'loss_mc_fp': 0.5}


class SemiVL(UniMatch):
    """UniMatch step + MaskCLIP consistency when maskclip_consistency_lambda is nonzero."""

    name = 'semivl'

    def __init__(self, cfg: dict, model: nn.Module):
        super().__init__(cfg, model)
        self.mcc = MaskClipConsistency(cfg, model)

    def guidance(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Guidance labels (mclip, mclip_o) of the weak views in one call, 255 where padded."""
        labels = self.mcc.labels(torch.cat((batch['img_w'], batch['img_w_o'])),
                                 torch.cat((batch['ignore'], batch['ignore_o'])))
        return labels.chunk(2)

    def step(self, batch: dict, ctx: StepContext) -> StepResult:
        if not self.mcc.enabled:
            return super().step(batch, ctx)
        self.check_batch(batch)
        mclip, mclip_o = self.guidance(batch)
        f = self.forward(batch)
        losses, mixed = self.unimatch_losses(batch, f)
        mc1 = cutmix(mclip, mclip_o, batch['box1'])
        mc2 = cutmix(mclip, mclip_o, batch['box2'])
        losses['loss_mc_s1'] = self.mcc.loss(f.pred_s1, mc1, mixed['ign1'])
        losses['loss_mc_s2'] = self.mcc.loss(f.pred_s2, mc2, mixed['ign2'])
        losses['loss_mc_fp'] = self.mcc.loss(f.pred_w_fp, mclip, batch['ignore'])

        mcc_weights, lam = self.mcc.weights(MCC_WEIGHTS, ctx.iteration, ctx.total_iters)
        weights = {**LOSS_WEIGHTS, **mcc_weights}
        valid = batch['ignore'] != IGNORE_INDEX
        stats = {
            'mask_ratio': self.mask_ratio(f.conf_w, batch['ignore']),
            'mcc_coverage': ((mclip != IGNORE_INDEX).sum() / valid.sum().clamp_min(1)).detach(),
            'mcc_lambda': lam,
        }
        visuals = {}
        if ctx.want_visuals:
            visuals = self.visuals(batch, f, mixed, ctx,
                                   extra={'mcc_s1': mc1, 'mcc_s2': mc2, 'mcc_fp': mclip})
        return StepResult(losses, weights, stats, visuals)
