"""Feature-level perturbations of the semi-supervised methods, shared by every segmentor.

- UniMatch's feature perturbation (`need_fp`): the head sees each feature map twice, clean and
  with whole channels dropped (`Dropout2d(p)`, survivors scaled by 1/(1-p)); LiheYoung/UniMatch
  `model/semseg/deeplabv3plus.py`, `DeepLabV3Plus.forward`.
- UniMatch V2's complementary channel dropout (`comp_drop`): for pairs (s1[i], s2[i]) of a
  batch cat(s1, s2), s1 keeps a random half of the channels (x2) and s2 the other half (x2);
  half of the pairs stay unperturbed. LiheYoung/UniMatch-V2 `model/semseg/dpt.py`, `DPT.forward`.

Masks may be given explicitly (tests replay the releases' recorded draws).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def dropout_copies(feats: Sequence[torch.Tensor], p: float,
                   keep: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """`cat(f, dropout2d(f))` for every feature map, in order (the release draws in this order).

    `keep`: optional (B, C) 0/1 masks, one per feature, replacing the random draw.
    """
    if keep is not None and len(keep) != len(feats):
        raise ValueError(f'{len(keep)} keep masks for {len(feats)} feature maps')
    out = []
    for i, f in enumerate(feats):
        if keep is None:
            dropped = F.dropout2d(f, p=p, training=True)
        else:
            k = keep[i].to(device=f.device, dtype=f.dtype)
            dropped = f * (k / (1.0 - p)).reshape(*k.shape, *([1] * (f.dim() - 2)))
        out.append(torch.cat((f, dropped)))
    return out


def complementary_masks(pairs: int, channels: int, keep_ratio: float = 0.5) -> torch.Tensor:
    """(2*pairs, channels) float masks with values 0, 1, 2, drawn as UniMatch V2 draws them.

    m1 = 2 * Bernoulli(0.5), m2 = 2 - m1; `int(pairs * keep_ratio)` pairs, chosen by
    `randperm(pairs)`, stay unperturbed (1). Drawn on the CPU from torch's global generator.
    """
    m1 = torch.distributions.Binomial(probs=0.5).sample((pairs, channels)) * 2.0
    m2 = 2.0 - m1
    kept = torch.randperm(pairs)[:int(pairs * keep_ratio)]
    m1[kept] = 1.0
    m2[kept] = 1.0
    return torch.cat((m1, m2))


def apply_channel_mask(feats: Sequence[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
    """Multiply every feature map (B, C, ...) by the same (B, C) channel mask."""
    out = []
    for f in feats:
        if f.shape[:2] != mask.shape:
            raise ValueError(f'channel mask {tuple(mask.shape)} does not fit a feature map of shape '
                             f'{tuple(f.shape)}; complementary dropout needs equal channels everywhere')
        m = mask.to(device=f.device, dtype=f.dtype)
        out.append(f * m.reshape(*m.shape, *([1] * (f.dim() - 2))))
    return out


def apply_shared_channel_mask(feats: Sequence[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
    """One (B, D) mask for feature maps of widths C <= D: each map takes the mask's first C
    channels. With equal widths this is `apply_channel_mask` (UniMatch V2: the same mask at every
    level); narrower maps keep the same draws, so their pairs stay complementary and the same
    pairs stay unperturbed."""
    out = []
    for f in feats:
        if f.shape[0] != mask.shape[0] or f.shape[1] > mask.shape[1]:
            raise ValueError(f'channel mask {tuple(mask.shape)} does not fit a feature map of shape '
                             f'{tuple(f.shape)}; draw the mask for the widest map')
        out.extend(apply_channel_mask([f], mask[:, :f.shape[1]]))
    return out
