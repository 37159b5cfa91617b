"""Inference modes of the SemiVL release (google-research/semivl `third_party/unimatch/supervised.py`,
`predict`).

`predict` returns a (B, N, H', W') score tensor whose argmax over N is the prediction:
- `original`, `center_crop`: logits of one forward (center_crop: of the central crop);
- `sliding_window`, `padded_sliding_window`: **summed softmax probabilities** of the windows
  (no count normalisation, as released);
- `zegclip_sliding_window`: **logits** averaged over the windows covering each pixel, resized
  bilinearly (align_corners=True) to `out_size` when given (the mask size).

UniMatch V2's two protocols (LiheYoung/UniMatch-V2 `supervised.py`, `evaluate`):
- `original` with `size_multiple=m` (14 for DINOv2): the image is resized bilinearly
  (align_corners=True) to `(int(H / m + 0.5) * m, int(W / m + 0.5) * m)` (at least m), the
  logits are resized back to (H, W) the same way; pascal, ade20k and coco;
- `shifted_sliding_window`: crop x crop windows at 0, s, 2s, ... with the last one shifted back
  to end at the border (H - crop / W - crop), s = int(2 * crop / 3) by default; **summed softmax
  probabilities**, in a canvas with the model's class count (the release hard-codes 19); for
  1024x2048 and crop 798: rows {0, 226}, cols {0, 532, 1064, 1250}. A side shorter than the
  crop gets one window covering it (the release's negative start index is not reproduced;
  its configs never hit that case). cityscapes.

Windows can run batched: consecutive windows of one size (with all images of the batch) share
a forward, up to `max_batch` windows per forward. Window order, and so the order in which window
outputs are summed, stays that of one window at a time, so the scores equal the one-window
evaluation up to the float error of a larger matmul batch. By default (`max_batch=None`) a model
that declares `eval_batch_independent = True` (its eval-mode output for an image does not depend
on the other images of the batch: VLMSegmentor) gets as many windows per forward as fit
`DEFAULT_WINDOW_PIXELS` (window area x images); any other callable sees one window at a time, as
in the releases (AllSpark's eval-mode attention mixes the images of a batch).

The caller sets `model.eval()`; `predict` runs under `torch.no_grad()`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.utils.imaging import center_crop
from semiseg.utils.modules import unwrap

MODES = ('original', 'center_crop', 'sliding_window', 'padded_sliding_window',
         'zegclip_sliding_window', 'shifted_sliding_window')


# pixels (window area x images) one batched window forward may hold: 8 windows of 512 x 512
DEFAULT_WINDOW_PIXELS = 8 * 512 * 512

Box = tuple[int, int, int, int]   # top, left, height, width of a window


def eval_batch_independent(model: Callable) -> bool:
    """Whether `model` (or the module behind DDP / compile) declares per-image eval outputs."""
    return isinstance(model, nn.Module) and bool(getattr(unwrap(model), 'eval_batch_independent', False))


def windows_per_forward(model: Callable, images: torch.Tensor, crop: int,
                        max_batch: int | None = None) -> int:
    """How many windows (each with all images of the batch) one forward takes; see module doc."""
    if max_batch is not None:
        if int(max_batch) < 1:
            raise ValueError(f'max_batch must be at least 1, got {max_batch}')
        return int(max_batch)
    if not eval_batch_independent(model):
        return 1
    return max(1, DEFAULT_WINDOW_PIXELS // (images.shape[0] * crop * crop))


def _window_outputs(model: Callable, images: torch.Tensor, boxes: Sequence[Box], per_forward: int,
                    pad_to: int | None = None) -> Iterator[tuple[Box, torch.Tensor]]:
    """(box, model output for the window) in the order of `boxes`; up to `per_forward`
    consecutive windows of one size go through one forward. With `pad_to`, windows are
    zero-padded (right / bottom) to pad_to x pad_to first."""
    b = images.shape[0]
    i = 0
    while i < len(boxes):
        size = boxes[i][2:]
        j = i + 1
        while j < len(boxes) and j - i < per_forward and boxes[j][2:] == size:
            j += 1
        chunk = boxes[i:j]
        wins = [images[:, :, t:t + h, x:x + w] for t, x, h, w in chunk]
        if pad_to is not None and (size[0] < pad_to or size[1] < pad_to):
            wins = [F.pad(win, (0, pad_to - size[1], 0, pad_to - size[0])) for win in wins]
        out = model(wins[0] if len(wins) == 1 else torch.cat(wins))
        yield from zip(chunk, out.split(b) if len(chunk) > 1 else (out,))
        i = j


def _starts(size: int, stride: int) -> list[int]:
    return list(range(0, size, stride))


def _stride(crop: int, stride: float | int | None) -> int:
    if stride is None:
        return int(2 * crop / 3)
    stride = int(stride * crop) if stride < 1 else int(stride)
    if stride <= 0:
        raise ValueError(f'stride must be positive (got {stride})')
    return stride


def sliding_window(model: Callable, images: torch.Tensor, crop: int,
                   stride: float | int | None = None, pad: bool = False,
                   max_batch: int | None = None) -> torch.Tensor:
    """Sum of window softmaxes; windows start at 0, s, 2s, ... < size (border ones smaller).

    With `pad`, each window is zero-padded to crop x crop and only its valid part is used.
    """
    h, w = images.shape[-2:]
    s = _stride(crop, stride)
    boxes = [(top, left, min(h, top + crop) - top, min(w, left + crop) - left)
             for top in _starts(h, s) for left in _starts(w, s)]
    return _summed_softmax(model, images, boxes, windows_per_forward(model, images, crop, max_batch),
                           crop if pad else None)


def _summed_softmax(model: Callable, images: torch.Tensor, boxes: list[tuple[int, int, int, int]],
                    per_forward: int, pad_to: int | None = None) -> torch.Tensor:
    """Sum over `boxes` (top, left, height, width) of each window's softmax, placed where it was cut."""
    b, _, h, w = images.shape
    total = None
    for (top, left, wh, ww), out in _window_outputs(model, images, boxes, per_forward, pad_to):
        probs = out.softmax(dim=1)[:, :, :wh, :ww]
        if total is None:
            total = probs.new_zeros(b, probs.shape[1], h, w)
        total[:, :, top:top + wh, left:left + ww] += probs
    return total


def zegclip_sliding_window(model: Callable, images: torch.Tensor, crop: int, stride: int,
                           out_size: Sequence[int] | None = None,
                           max_batch: int | None = None) -> torch.Tensor:
    """ZegCLIP tiling: n = (size - crop + stride - 1) // stride + 1 windows per axis, the last
    shifted back to end at the border; logits averaged by window count."""
    b, _, h, w = images.shape
    stride = int(stride)
    n_h = max(h - crop + stride - 1, 0) // stride + 1
    n_w = max(w - crop + stride - 1, 0) // stride + 1
    boxes = []
    for i in range(n_h):
        for j in range(n_w):
            y2 = min(i * stride + crop, h)
            x2 = min(j * stride + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            boxes.append((y1, x1, y2 - y1, x2 - x1))
    per_forward = windows_per_forward(model, images, crop, max_batch)
    total, count = None, images.new_zeros(1, 1, h, w)
    for (y1, x1, wh, ww), logits in _window_outputs(model, images, boxes, per_forward):
        if total is None:
            total = logits.new_zeros(b, logits.shape[1], h, w)
        total[:, :, y1:y1 + wh, x1:x1 + ww] += logits
        count[:, :, y1:y1 + wh, x1:x1 + ww] += 1
    total = total / count
    if out_size is not None and tuple(out_size) != (h, w):
        total = F.interpolate(total, size=tuple(out_size), mode='bilinear', align_corners=True)
    return total


def resized_to_multiple(model: Callable, images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Logits at the input size of a forward at the nearest multiple of `multiple` (UniMatch V2's
    'original': the ViT needs sides divisible by its patch size)."""
    h, w = images.shape[-2:]
    new_h = max(int(h / multiple + 0.5), 1) * multiple
    new_w = max(int(w / multiple + 0.5), 1) * multiple
    resized = F.interpolate(images, size=(new_h, new_w), mode='bilinear', align_corners=True)
    return F.interpolate(model(resized), size=(h, w), mode='bilinear', align_corners=True)


def shifted_window_starts(size: int, crop: int, stride: int) -> list[int]:
    """0, s, 2s, ... below size - crop, then size - crop (one window if size <= crop)."""
    if size <= crop:
        return [0]
    return list(range(0, size - crop, stride)) + [size - crop]


def shifted_sliding_window(model: Callable, images: torch.Tensor, crop: int,
                           stride: float | int | None = None,
                           max_batch: int | None = None) -> torch.Tensor:
    """Sum of window softmaxes over crop x crop windows kept inside the image."""
    h, w = images.shape[-2:]
    s = _stride(crop, stride)
    boxes = [(top, left, min(crop, h - top), min(crop, w - left))
             for top in shifted_window_starts(h, crop, s) for left in shifted_window_starts(w, crop, s)]
    return _summed_softmax(model, images, boxes, windows_per_forward(model, images, crop, max_batch))


@torch.no_grad()
def predict(model: Callable, images: torch.Tensor, mode: str, crop_size: int,
            stride: float | int | None = None,
            out_size: Sequence[int] | None = None,
            size_multiple: int | None = None,
            max_batch: int | None = None) -> torch.Tensor:
    """Scores (B, N, H', W') for `images` (B, 3, H, W) in one of `MODES` (see module doc).

    `stride`: zsw (required, 426 in the release); padded_sliding_window (pixels, or a fraction
    of the crop if < 1; default 2/3 crop); sliding_window uses int(2 * crop / 3) unless given.
    `out_size`: zsw only, the size to resize the averaged logits to (the mask size).
    `size_multiple`: original only; forward at the nearest multiple of it, logits back at (H, W)
    (UniMatch V2: 14). shifted_sliding_window takes `stride` like sliding_window.
    `max_batch`: windowed modes, windows per forward (None: as many as `DEFAULT_WINDOW_PIXELS`
    allows for models declaring `eval_batch_independent`, else 1; 1: one window at a time, as
    released).
    """
    if images.dim() != 4:
        raise ValueError(f'images must be (B, 3, H, W), got shape {tuple(images.shape)}')
    if mode == 'original':
        if size_multiple:
            return resized_to_multiple(model, images, int(size_multiple))
        return model(images)
    if mode == 'center_crop':
        return model(center_crop(images, crop_size))
    if mode == 'sliding_window':
        return sliding_window(model, images, crop_size, stride, max_batch=max_batch)
    if mode == 'padded_sliding_window':
        return sliding_window(model, images, crop_size, stride, pad=True, max_batch=max_batch)
    if mode == 'zegclip_sliding_window':
        if stride is None:
            raise ValueError('zegclip_sliding_window needs a stride (the release uses 426)')
        return zegclip_sliding_window(model, images, crop_size, stride, out_size, max_batch)
    if mode == 'shifted_sliding_window':
        return shifted_sliding_window(model, images, crop_size, stride, max_batch)
    raise ValueError(f'unknown eval mode {mode!r}; choose one of {", ".join(MODES)}')
