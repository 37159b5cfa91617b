"""UniMatch V2 (TPAMI 2025): an EMA teacher labels the weak view; two strong views with
complementary channel dropout learn from it.

LiheYoung/UniMatch-V2 `unimatch_v2.py`, one iteration:
1. teacher (EMA of the student, eval mode, no_grad) on the weak view: conf, pseudo-label;
2. CutMix inside the batch: x_s1[box1] <- x_s1.flip(0)[box1] (likewise s2 / box2), labels alike;
3. student: pred_x = model(x_l); pred_s1, pred_s2 = model(cat(s1, s2), comp_drop=True);
4. L_x = criterion(pred_x, y); L_sk = sum(CE * [conf_k >= tau] * valid_k) / #valid_k;
   L = (L_x + (L_s1 + L_s2) / 2) / 2;
5. after the optimizer step: teacher <- r * teacher + (1 - r) * student with
   r = ema_ratio = min(1 - 1 / (it + 1), ema_decay) over every parameter (float buffers likewise; integer
   buffers such as BatchNorm's step counter are copied, not averaged).
The teacher is saved in the checkpoint (`method.teacher`) and evaluated next to the student.

Our addition (experiment 65): with a vision-language model and a nonzero
`maskclip_consistency_lambda`, SemiVL's MaskCLIP guidance labels of the weak view (CutMixed like
the pseudo-labels) add lambda_t * (0.5 M_s1 + 0.5 M_s2), as SemiVL adds them to UniMatch.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from semiseg.utils.modules import unwrap

from .base import Method, StepContext, StepResult, keep_visuals
from .losses import (
    build_criterion,
    confidence_weighted_loss,
    confident_fraction,
    head_loss,
    unsupervised_ce_map,
)
from .maskclip_consistency import MaskClipConsistency
from .mixing import cutmix, pseudo_label

LOSS_WEIGHTS = {'loss_x': 0.5, 'loss_s1': 0.25, 'loss_s2': 0.25}
MCC_WEIGHTS = {'loss_mc_s1': 0.5, 'loss_mc_s2': 0.5}


def in_batch_cutmix(x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """`x` with the box region taken from the batch reversed (sample j's partner is B-1-j)."""
    return cutmix(x, x.flip(0), box)


def ema_copy(model: nn.Module) -> nn.Module:
    """The EMA teacher: a deep copy of the student that shares its frozen parameters (the VLM's
    guidance encoder, a locked backbone). The release averages those too (`unimatch_v2.py`), but
    the average of a parameter that never changes is that parameter (up to rounding), so the
    teacher holds the student's tensors instead of a copy; `after_step` skips them."""
    frozen = {id(p): p for p in model.parameters() if not p.requires_grad}
    return copy.deepcopy(model, memo=frozen).eval().requires_grad_(False)


class UniMatchV2(Method):
    """UniMatch V2's step; the EMA teacher lives here (see module docstring)."""

    name = 'unimatch_v2'

    def __init__(self, cfg: dict, model: nn.Module):
        super().__init__(cfg, model)
        self.criterion_l = build_criterion(cfg['criterion'], head_loss(model))
        self.conf_thresh = float(cfg['conf_thresh'])
        self.ema_decay = float(cfg['ema_decay'])
        self.teacher = ema_copy(unwrap(model))
        self.mcc = MaskClipConsistency(cfg, model)

    def step(self, batch: dict, ctx: StepContext) -> StepResult:
        self.check_batch(batch)
        with torch.no_grad():
            conf, mask = pseudo_label(self.teacher(batch['img_w']))
        img_s1 = in_batch_cutmix(batch['img_s1'], batch['box1'])
        img_s2 = in_batch_cutmix(batch['img_s2'], batch['box2'])

        self.model.train()
        pred_x = self.model(batch['img_x'])
        pred_s1, pred_s2 = self.model(torch.cat((img_s1, img_s2)), comp_drop=True).chunk(2)

        mixed = {}
        for k, box in (('1', batch['box1']), ('2', batch['box2'])):
            mixed[f'mask{k}'] = in_batch_cutmix(mask, box)
            mixed[f'conf{k}'] = in_batch_cutmix(conf, box)
            mixed[f'ign{k}'] = in_batch_cutmix(batch['ignore'], box)
        losses = {'loss_x': self.criterion_l(pred_x, batch['mask_x'])}
        for k, pred in (('1', pred_s1), ('2', pred_s2)):
            losses[f'loss_s{k}'] = confidence_weighted_loss(
                unsupervised_ce_map(pred, mixed[f'mask{k}']), mixed[f'conf{k}'], mixed[f'ign{k}'],
                self.conf_thresh, 'pixelwise')
        weights = dict(LOSS_WEIGHTS)
        stats = {'mask_ratio': confident_fraction(conf, batch['ignore'], self.conf_thresh).detach()}
        extra_visuals = {}
        if self.mcc.enabled:
            guidance = self.mcc.labels(batch['img_w'], batch['ignore'])
            for k, pred in (('1', pred_s1), ('2', pred_s2)):
                target = in_batch_cutmix(guidance, batch[f'box{k}'])
                losses[f'loss_mc_s{k}'] = self.mcc.loss(pred, target, mixed[f'ign{k}'])
                extra_visuals[f'mcc_s{k}'] = target
            mcc_weights, stats['mcc_lambda'] = self.mcc.weights(MCC_WEIGHTS, ctx.iteration, ctx.total_iters)
            weights.update(mcc_weights)
        visuals = {}
        if ctx.want_visuals:
            visuals = keep_visuals({
                'img_x': batch['img_x'], 'img_s1': img_s1, 'img_s2': img_s2, 'img_w': batch['img_w'],
                'pred_x': pred_x.argmax(1), 'pred_s1': pred_s1.argmax(1), 'pred_s2': pred_s2.argmax(1),
                'mask_x': batch['mask_x'], 'pl_s1': mixed['mask1'], 'pl_s2': mixed['mask2'], 'pl_fp': mask,
                **extra_visuals}, ctx.max_visuals)
        return StepResult(losses, weights, stats, visuals)

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        """EMA update with ema_ratio = min(1 - 1 / (it + 1), ema_decay) (0 at it 0: a copy of the student)."""
        ema_ratio = min(1.0 - 1.0 / (ctx.iteration + 1), self.ema_decay)
        student = unwrap(self.model)
        pairs = [(t, s) for t, s in zip(self.teacher.parameters(), student.parameters()) if t is not s]
        pairs += [(t, s) for t, s in zip(self.teacher.buffers(), student.buffers()) if t.is_floating_point()]
        teacher = [t for t, _ in pairs]
        torch._foreach_mul_(teacher, ema_ratio)           # one kernel per group of tensors, not two per tensor
        torch._foreach_add_(teacher, [s.detach() for _, s in pairs], alpha=1.0 - ema_ratio)
        for t, s in zip(self.teacher.buffers(), student.buffers()):
            if not t.is_floating_point():
                t.copy_(s)

    def eval_models(self) -> dict[str, nn.Module]:
        return {'ema': self.teacher}

    def state_dict(self) -> dict:
        return {'teacher': self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if 'teacher' not in state:
            raise KeyError('the checkpoint has no EMA teacher (method.teacher); it was not written by a '
                           'unimatch_v2 run')
        self.teacher.load_state_dict(state['teacher'])
