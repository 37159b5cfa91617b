"""Position-embedding resampling for ViT backbones (one function, one argument order)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_pos_embed(pos_embed: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int],
                     mode: str = 'bicubic', num_prefix: int = 1) -> torch.Tensor:
    """Resize a (1, num_prefix + h*w, C) embedding from grid `src_hw` to `dst_hw`.

    The prefix rows (cls token) are kept in front; interpolation uses align_corners=False and
    runs in float32. Returns the input unchanged when the grids are equal.
    """
    if tuple(src_hw) == tuple(dst_hw):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    channels = grid.shape[-1]
    if grid.shape[1] != src_hw[0] * src_hw[1]:
        raise ValueError(f'pos_embed has {grid.shape[1]} grid rows, not {src_hw[0]}x{src_hw[1]}')
    grid = grid.reshape(1, src_hw[0], src_hw[1], channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(dst_hw), mode=mode, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, dst_hw[0] * dst_hw[1], channels).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)
