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
from semiseg.utils.modules import unwrap

from .base import StepContext, StepResult
from .losses import MCC_REDUCTIONS, mcc_enabled, mcc_lambda, mcc_loss
from .mixing import cutmix
from .unimatch import LOSS_WEIGHTS, UniMatch

MCC_WEIGHTS = {'loss_mc_s1': 0.25, 'loss_mc_s2': 0.25, 'loss_mc_fp': 0.5}


class SemiVL(UniMatch):
    """UniMatch step + MaskCLIP consistency when maskclip_consistency_lambda is nonzero."""

    name = 'semivl'

    def __init__(self, cfg: dict, model: nn.Module):
        super().__init__(cfg, model)
        self.lam = cfg['maskclip_consistency_lambda']
        self.use_mcc = mcc_enabled(self.lam)
        self.mcc_conf_thresh = float(cfg['mcc_conf_thresh'])
        self.mcc_reduce = cfg['mcc_loss_reduce']
        if self.mcc_reduce not in MCC_REDUCTIONS:
            raise ValueError(f'unknown mcc_loss_reduce {self.mcc_reduce!r}; valid: '
                             f'{", ".join(MCC_REDUCTIONS)}')
        if self.use_mcc and not getattr(unwrap(model), 'has_guidance', False):
            raise ValueError('maskclip_consistency_lambda is nonzero but the model has no MaskCLIP '
                             'guidance encoder; set clip_encoder in the config or lambda to 0')

    @torch.no_grad()
    def guidance(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Guidance labels (mclip, mclip_o) of the weak views, 255 where padded."""
        n = batch['img_w'].shape[0]
        labels = unwrap(self.model).guidance_labels(
            torch.cat((batch['img_w'], batch['img_w_o'])), self.mcc_conf_thresh)
        mclip, mclip_o = labels[:n], labels[n:]
        mclip = mclip.masked_fill(batch['ignore'] == IGNORE_INDEX, IGNORE_INDEX)
        mclip_o = mclip_o.masked_fill(batch['ignore_o'] == IGNORE_INDEX, IGNORE_INDEX)
        return mclip, mclip_o

    def step(self, batch: dict, ctx: StepContext) -> StepResult:
        if not self.use_mcc:
            return super().step(batch, ctx)
        self.check_batch(batch)
        mclip, mclip_o = self.guidance(batch)
        f = self.forward(batch)
        losses, mixed = self.unimatch_losses(batch, f)
        mc1 = cutmix(mclip, mclip_o, batch['box1'])
        mc2 = cutmix(mclip, mclip_o, batch['box2'])
        losses['loss_mc_s1'] = mcc_loss(f.pred_s1, mc1, self.mcc_reduce, mixed['ign1'])
        losses['loss_mc_s2'] = mcc_loss(f.pred_s2, mc2, self.mcc_reduce, mixed['ign2'])
        losses['loss_mc_fp'] = mcc_loss(f.pred_w_fp, mclip, self.mcc_reduce, batch['ignore'])

        lam = mcc_lambda(self.lam, ctx.iteration, ctx.total_iters)
        weights = dict(LOSS_WEIGHTS)
        weights.update({k: lam * w for k, w in MCC_WEIGHTS.items()})
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
