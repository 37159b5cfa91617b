"""MaskCLIP consistency (MCC), written once for every method that adds it (SemiVL; UniMatch V2 in
our experiment 65): the config switches, the guidance labels of the weak views and the weights.

google-research/semivl `semivl.py`, the training loop: guidance labels at `mcc_conf_thresh`, 255
where the view is padding, CutMixed like the pseudo-labels; each term is `mcc_loss` of a strong
prediction against them; the terms' weights are lambda_t times the method's split of them.
"""
from __future__ import annotations

import torch
from torch import nn

from semiseg.utils.labels import IGNORE_INDEX
from semiseg.utils.modules import unwrap

from .losses import MCC_REDUCTIONS, mcc_enabled, mcc_lambda, mcc_loss


class MaskClipConsistency:
    """The MCC part of a method: `enabled`, `labels(images, ignore)`, `loss(pred, target, ignore)`,
    `weights(split, ctx)`."""

    def __init__(self, cfg: dict, model: nn.Module) -> None:
        self.lambda_schedule = cfg.get('maskclip_consistency_lambda', 0)   # a weight or [start, end]
        self.enabled = mcc_enabled(self.lambda_schedule)
        self.conf_thresh = float(cfg.get('mcc_conf_thresh', 0.75))
        self.reduce = cfg.get('mcc_loss_reduce', 'mean')
        if self.reduce not in MCC_REDUCTIONS:
            raise ValueError(f'unknown mcc_loss_reduce {self.reduce!r}; valid: {", ".join(MCC_REDUCTIONS)}')
        self.model = model
        if self.enabled and not getattr(unwrap(model), 'has_guidance', False):
            raise ValueError('maskclip_consistency_lambda is nonzero but the model has no MaskCLIP guidance '
                             'encoder; use a vision-language model with clip_encoder set, or lambda 0')

    @torch.no_grad()
    def labels(self, images: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
        """Guidance labels of `images` (weak views), 255 where `ignore` marks padding."""
        labels = unwrap(self.model).guidance_labels(images, self.conf_thresh)
        return labels.masked_fill(ignore == IGNORE_INDEX, IGNORE_INDEX)

    def loss(self, pred: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
        return mcc_loss(pred, target, self.reduce, ignore)

    def weights(self, split: dict[str, float], iteration: int, total_iters: int) -> tuple[dict[str, float], float]:
        """({term: lambda_t * share}, lambda_t) at `iteration`."""
        weight = mcc_lambda(self.lambda_schedule, iteration, total_iters)
        return {k: weight * w for k, w in split.items()}, weight
