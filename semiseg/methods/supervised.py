"""Supervised baseline: labeled cross-entropy only (UniMatch's supervised.py)."""
from __future__ import annotations

from torch import nn

from .base import Method, StepContext, StepResult, keep_visuals
from .losses import build_criterion, head_loss


class Supervised(Method):
    """L = CE(model(img_x), mask_x), weight 1."""

    name = 'supervised'

    def __init__(self, cfg: dict, model: nn.Module):
        super().__init__(cfg, model)
        self.criterion_l = build_criterion(cfg['criterion'], head_loss(model))

    def step(self, batch: dict, ctx: StepContext) -> StepResult:
        self.check_batch(batch)
        self.model.train()
        pred_x = self.model(batch['img_x'])
        loss_x = self.criterion_l(pred_x, batch['mask_x'])
        visuals = {}
        if ctx.want_visuals:
            visuals = keep_visuals({'img_x': batch['img_x'], 'pred_x': pred_x.argmax(1),
                                    'mask_x': batch['mask_x']}, ctx.max_visuals)
        return StepResult(losses={'loss_x': loss_x}, weights={'loss_x': 1.0}, visuals=visuals)
