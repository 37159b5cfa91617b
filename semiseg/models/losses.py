"""SegLossPlus: ZegCLIP's mask loss for the ATM head (google-research/semivl
`third_party/zegclip/losses/atm_loss.py`, `SegLossPlus`), registered in mmseg's MODELS.

loss = loss_weight * (mask_weight * focal + dice_weight * dice), on the final prediction only:

- targets: per image and class, the binary mask ``label == c``; pixels labelled ``ignore_index``
  are negatives for every class;
- focal: sigmoid focal loss (α 0.25, γ 2) over all (image, class) maps, mean over pixels,
  summed over maps, divided by num_masks;
- dice: over the (image, present class) maps only, summed, divided by num_masks;
- num_masks: number of (image, present class) pairs, averaged over ranks, at least 1.
Predictions are resized bilinearly (ac=False) to the label size first.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from semiseg.utils.labels import IGNORE_INDEX


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float,
                       alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Rows of (maps, pixels): mean over pixels, sum over maps, / num_masks."""
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    prob = logits.sigmoid()
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Smoothed (+1) dice per row of (maps, pixels), summed, / num_masks."""
    prob = logits.sigmoid()
    num = 2 * (prob * targets).sum(-1)
    den = prob.sum(-1) + targets.sum(-1)
    return (1 - (num + 1) / (den + 1)).sum() / num_masks


def _mean_over_ranks(n: torch.Tensor) -> float:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        n = n / dist.get_world_size()
    return max(float(n), 1.0)


@MODELS.register_module()
class SegLossPlus(nn.Module):
    """Focal + dice mask loss; ``forward(pred_masks (B,N,h,w), label (B,H,W)) -> scalar``."""

    def __init__(self, num_classes: int | None = None, dec_layers: int = 3,
                 mask_weight: float = 20.0, dice_weight: float = 1.0, loss_weight: float = 1.0,
                 ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dec_layers = dec_layers  # aux outputs are never passed in the release
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index

    def components(self, pred: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted {'loss_mask', 'loss_dice'} as the release reports them."""
        if isinstance(pred, dict):
            pred = pred['pred_masks']
        if label.dim() == 4:
            label = label.squeeze(1)
        b, n = pred.shape[:2]
        if pred.shape[-2:] != label.shape[-2:]:
            pred = F.interpolate(pred, size=label.shape[-2:], mode='bilinear', align_corners=False)
        pred = pred.float()
        valid = label != self.ignore_index
        classes = torch.arange(n, device=label.device).view(1, n, 1, 1)
        target = ((label.unsqueeze(1) == classes) & valid.unsqueeze(1)).float()  # (B,N,H,W)
        present = target.flatten(2).amax(-1) > 0  # (B,N)
        num_masks = _mean_over_ranks(present.sum().float().detach().clone())
        focal = sigmoid_focal_loss(pred.flatten(2).flatten(0, 1), target.flatten(2).flatten(0, 1),
                                   num_masks)
        dice = dice_loss(pred.flatten(2)[present], target.flatten(2)[present], num_masks)
        return {'loss_mask': focal * self.mask_weight * self.loss_weight,
                'loss_dice': dice * self.dice_weight * self.loss_weight}

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return sum(self.components(pred, label).values())
