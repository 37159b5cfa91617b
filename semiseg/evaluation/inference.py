"""Inference modes of the SemiVL release (spec §8).

`predict` returns a (B, N, H', W') score tensor whose argmax over N is the prediction:
- `original`, `center_crop`: logits of one forward (center_crop: of the central crop);
- `sliding_window`, `padded_sliding_window`: **summed softmax probabilities** of the windows
  (no count normalisation, as released);
- `zegclip_sliding_window`: **logits** averaged over the windows covering each pixel, resized
  bilinearly (align_corners=True) to `out_size` when given (the mask size).

The caller sets `model.eval()`; `predict` runs under `torch.no_grad()`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

MODES = ('original', 'center_crop', 'sliding_window', 'padded_sliding_window',
         'zegclip_sliding_window')


def _starts(size: int, stride: int) -> list[int]:
    return list(range(0, size, stride))


def _stride(crop: int, stride: float | int | None) -> int:
    if stride is None:
        return int(2 * crop / 3)
    stride = int(stride * crop) if stride < 1 else int(stride)
    if stride <= 0:
        raise ValueError(f'stride must be positive (got {stride})')
    return stride


def center_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    """The central crop at ((h - crop) // 2, (w - crop) // 2); apply the same to the mask."""
    h, w = images.shape[-2:]
    top, left = max((h - crop) // 2, 0), max((w - crop) // 2, 0)
    return images[..., top:top + crop, left:left + crop]


def sliding_window(model: Callable, images: torch.Tensor, crop: int,
                   stride: float | int | None = None, pad: bool = False) -> torch.Tensor:
    """Sum of window softmaxes; windows start at 0, s, 2s, ... < size (border ones smaller).

    With `pad`, each window is zero-padded to crop x crop and only its valid part is used.
    """
    b, _, h, w = images.shape
    s = _stride(crop, stride)
    total = None
    for top in _starts(h, s):
        for left in _starts(w, s):
            win = images[:, :, top:min(h, top + crop), left:min(w, left + crop)]
            wh, ww = win.shape[-2:]
            if pad and (wh < crop or ww < crop):
                win = F.pad(win, (0, crop - ww, 0, crop - wh))
            probs = model(win).softmax(dim=1)[:, :, :wh, :ww]
            if total is None:
                total = probs.new_zeros(b, probs.shape[1], h, w)
            total[:, :, top:top + wh, left:left + ww] += probs
    return total


def zegclip_sliding_window(model: Callable, images: torch.Tensor, crop: int, stride: int,
                           out_size: Sequence[int] | None = None) -> torch.Tensor:
    """ZegCLIP tiling: n = (size - crop + stride - 1) // stride + 1 windows per axis, the last
    shifted back to end at the border; logits averaged by window count."""
    b, _, h, w = images.shape
    stride = int(stride)
    n_h = max(h - crop + stride - 1, 0) // stride + 1
    n_w = max(w - crop + stride - 1, 0) // stride + 1
    total, count = None, images.new_zeros(1, 1, h, w)
    for i in range(n_h):
        for j in range(n_w):
            y2 = min(i * stride + crop, h)
            x2 = min(j * stride + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            logits = model(images[:, :, y1:y2, x1:x2])
            if total is None:
                total = logits.new_zeros(b, logits.shape[1], h, w)
            total[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
    total = total / count
    if out_size is not None and tuple(out_size) != (h, w):
        total = F.interpolate(total, size=tuple(out_size), mode='bilinear', align_corners=True)
    return total


@torch.no_grad()
def predict(model: Callable, images: torch.Tensor, mode: str, crop_size: int,
            stride: float | int | None = None,
            out_size: Sequence[int] | None = None) -> torch.Tensor:
    """Scores (B, N, H', W') for `images` (B, 3, H, W) in one of `MODES` (see module doc).

    `stride`: zsw (required, 426 in the release); padded_sliding_window (pixels, or a fraction
    of the crop if < 1; default 2/3 crop); sliding_window uses int(2 * crop / 3) unless given.
    `out_size`: zsw only, the size to resize the averaged logits to (the mask size).
    """
    if images.dim() != 4:
        raise ValueError(f'images must be (B, 3, H, W), got shape {tuple(images.shape)}')
    if mode == 'original':
        return model(images)
    if mode == 'center_crop':
        return model(center_crop(images, crop_size))
    if mode == 'sliding_window':
        return sliding_window(model, images, crop_size, stride)
    if mode == 'padded_sliding_window':
        return sliding_window(model, images, crop_size, stride, pad=True)
    if mode == 'zegclip_sliding_window':
        if stride is None:
            raise ValueError('zegclip_sliding_window needs a stride (the release uses 426)')
        return zegclip_sliding_window(model, images, crop_size, stride, out_size)
    raise ValueError(f'unknown eval mode {mode!r}; choose one of {", ".join(MODES)}')
