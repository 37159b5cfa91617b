"""Shared base of the weak-to-strong consistency methods (FixMatch, UniMatch, SemiVL).

It reads the unsupervised-loss settings once and offers the partner pseudo-label pass and the
confidence-weighted unsupervised loss, so each method file holds only its own step.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Method
from .losses import (
    CONF_MODES,
    build_criterion,
    confidence_weighted_loss,
    confident_fraction,
    head_loss,
    mmseg_unsupervised_loss,
    unsupervised_ce_map,
)
from .mixing import pseudo_label

CRITERIA_U = ('CELoss', 'mmseg')


class ConsistencyMethod(Method):
    """Labeled CE plus confidence-thresholded pseudo-label losses on strong views."""

    def __init__(self, cfg: dict, model: nn.Module):
        super().__init__(cfg, model)
        head = head_loss(model)
        self.criterion_l = build_criterion(cfg['criterion'], head)
        self.criterion_u = cfg['criterion_u']
        if self.criterion_u not in CRITERIA_U:
            raise ValueError(f'unknown criterion_u {self.criterion_u!r}; valid: '
                             f'{", ".join(CRITERIA_U)}')
        # 'mmseg' applies the head's loss (or CE) to the unmasked pseudo-labels, scaled by confidence.
        self.mmseg_criterion = build_criterion('mmseg', head)
        self.conf_thresh = float(cfg['conf_thresh'])
        self.conf_mode = cfg['conf_mode']
        if self.conf_mode not in CONF_MODES:
            raise ValueError(f'unknown conf_mode {self.conf_mode!r}; valid: '
                             f'{", ".join(CONF_MODES)}')
        if not cfg['pleval']:
            raise ValueError('pleval: False is not supported: the partner pseudo-labels are '
                             'predicted in eval mode, as the release asserts; set pleval: True')

    @torch.no_grad()
    def partner_pseudo_labels(self, img_w_o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(conf_o, mask_o) of the partner batch, predicted with the model in eval mode."""
        self.model.eval()
        conf_o, mask_o = pseudo_label(self.model(img_w_o))
        self.model.train()
        return conf_o, mask_o

    def unsupervised_loss(self, pred: torch.Tensor, target: torch.Tensor, conf: torch.Tensor,
                          ignore: torch.Tensor) -> torch.Tensor:
        """One strong-view / FP term against pseudo-labels, reduced as the config says."""
        if self.criterion_u == 'mmseg':
            loss, _ = mmseg_unsupervised_loss(self.mmseg_criterion, pred, target, conf, ignore,
                                              self.conf_thresh)
            return loss
        return confidence_weighted_loss(unsupervised_ce_map(pred, target), conf, ignore,
                                        self.conf_thresh, self.conf_mode)

    def mask_ratio(self, conf: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
        """Fraction of valid (non-padded) pixels whose pseudo-label is confident."""
        return confident_fraction(conf, ignore, self.conf_thresh).detach()
