"""Pseudo-labels and CutMix, shared by the consistency methods (google-research/semivl `semivl.py`,
the training loop; `utils/train_utils.py`, `cutmix_img_` and `cutmix_mask`)."""
from __future__ import annotations

import torch


def pseudo_label(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, label): softmax max and argmax over classes of detached logits (B,N,H,W)."""
    conf, label = logits.detach().softmax(dim=1).max(dim=1)
    return conf, label


def cutmix(main: torch.Tensor, partner: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """`main` with the partner's values where box == 1.

    `box` is (B,H,W); images (B,C,H,W) are mixed on every channel, maps (B,H,W) directly.
    Returns a new tensor (the release mixes in place; a copy keeps the batch reusable).
    """
    if main.shape != partner.shape:
        raise ValueError(f'cutmix: main {tuple(main.shape)} and partner {tuple(partner.shape)} '
                         'differ; the partner batch must have the same shape')
    where = box == 1
    if main.dim() == 4:
        where = where.unsqueeze(1)
    return torch.where(where, partner, main)
