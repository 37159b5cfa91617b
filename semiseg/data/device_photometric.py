"""The strong views' photometric chain as batched tensor ops on the training device.

With `photometric_device=true` the datasets ship image views as uint8 (B,3,S,S) and each strong
view's drawn parameters as `photo_<view>` (`semiseg.data.photometric.StrongParams.to_vector`);
`finish_batch` moves them to the device, applies jitter (in each sample's drawn order), grayscale
and blur there, and normalises every image view. The arithmetic follows Pillow's kernels (blend with
truncation, the 16-bit fixed-point L conversion, the uint8 HSV round trip of `Convert.c`), so the
views match the CPU path to a grey level or two (tests/test_data_device_photometric.py); the blur
is a true separable Gaussian of the drawn sigma, as in the fast CPU path. Which samples get which
operation is decided from the parameters on the CPU, before the transfer: no host synchronisation.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from semiseg.data.photometric import SIGMA_RANGE
from semiseg.utils.imaging import IMAGENET_MEAN, IMAGENET_STD

PHOTO_PREFIX = 'photo_'
BLUR_RADIUS = math.ceil(3 * SIGMA_RANGE[1])     # taps each side for the largest sigma


def _clip_trunc(x: torch.Tensor) -> torch.Tensor:
    """Pillow's blend result: values <= 0 -> 0, >= 255 -> 255, else truncated."""
    return x.clamp_(0, 255).floor_()


def luma(x: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L: (19595 R + 38470 G + 7471 B + 0x8000) >> 16, (N,1,H,W), exact in float32."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.floor((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536)


def brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _clip_trunc(x * f.view(-1, 1, 1, 1))


def contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with the rounded mean of the L image (Pillow `ImageEnhance.Contrast`)."""
    total = luma(x).to(torch.float64).sum(dim=(1, 2, 3))
    mean = torch.floor(total / (x.shape[2] * x.shape[3]) + 0.5).to(x.dtype).view(-1, 1, 1, 1)
    return _clip_trunc(mean + f.view(-1, 1, 1, 1) * (x - mean))


def saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with the L image, per pixel (Pillow `ImageEnhance.Color`)."""
    gray = luma(x)
    return _clip_trunc(gray + f.view(-1, 1, 1, 1) * (x - gray))


def hue(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """torchvision's PIL `adjust_hue`: to uint8 HSV (Pillow `rgb2hsv`), H += int(h * 255) mod 256,
    back (Pillow `hsv2rgb`)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, minc = torch.maximum(torch.maximum(r, g), b), torch.minimum(torch.minimum(r, g), b)
    cr = maxc - minc
    safe = torch.where(cr > 0, cr, torch.ones_like(cr))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hh = torch.where(r == maxc, bc - gc, torch.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    hh = torch.remainder(hh / 6.0 + 1.0, 1.0)
    uh = torch.where(cr > 0, torch.floor(hh * 255.0), torch.zeros_like(hh))
    us = torch.where(cr > 0, torch.floor(cr / torch.where(maxc > 0, maxc, torch.ones_like(maxc)) * 255.0),
                     torch.zeros_like(hh))
    shift = torch.fmod(torch.trunc(h * 255), 256).view(-1, 1, 1)        # np.int32(h*255) as uint8
    uh = torch.remainder(uh + shift, 256)
    v = maxc
    i = torch.floor(uh * 6.0 / 255.0)
    f = uh * 6.0 / 255.0 - i
    fs = us / 255.0
    p = torch.floor(v * (1.0 - fs) + 0.5).clamp_(0, 255)
    q = torch.floor(v * (1.0 - fs * f) + 0.5).clamp_(0, 255)
    t = torch.floor(v * (1.0 - fs * (1.0 - f)) + 0.5).clamp_(0, 255)
    i = torch.remainder(i, 6)
    sector = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [torch.zeros_like(v) for _ in range(3)]
    for k, rgb in enumerate(sector):
        sel = i == k
        for c in range(3):
            out[c] = torch.where(sel, rgb[c], out[c])
    res = torch.stack(out, 1)
    return torch.where((us == 0).unsqueeze(1), v.unsqueeze(1).expand_as(res), res)


def gaussian_kernels(sigma: torch.Tensor, radius: int = BLUR_RADIUS) -> torch.Tensor:
    """(N, 2·radius+1) normalised 1-D Gaussians, one per sigma."""
    taps = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
    return k / k.sum(1, keepdim=True)


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian per sample (edges replicated), rounded to uint8 levels. Shifted weighted sums
    rather than a grouped convolution: no kernel set-up per batch shape on the CPU."""
    k = gaussian_kernels(sigma).to(x.dtype)                         # (n, taps)
    taps = k.shape[1]
    r = (taps - 1) // 2
    h, w = x.shape[2], x.shape[3]
    y = F.pad(x, (r, r, 0, 0), mode='replicate')
    x = sum(k[:, t].view(-1, 1, 1, 1) * y[..., t:t + w] for t in range(taps))
    y = F.pad(x, (0, 0, r, r), mode='replicate')
    x = sum(k[:, t].view(-1, 1, 1, 1) * y[..., t:t + h, :] for t in range(taps))
    return torch.floor(x + 0.5).clamp_(0, 255)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device` without a host synchronisation (pinned, non-blocking on CUDA)."""
    if device.type != 'cuda':
        return t.to(device)
    return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)


def _apply(x: torch.Tensor, idx: torch.Tensor, fn, *args) -> torch.Tensor:
    """x with fn applied to the samples `idx` (a CPU index tensor: chosen on the CPU, no sync)."""
    if idx.numel() == 0:
        return x
    if idx.numel() == x.shape[0]:
        return fn(x, *args)
    index = _to_device(idx, x.device)
    return x.index_copy(0, index, fn(x.index_select(0, index), *(a.index_select(0, index) for a in args)))


def apply_strong_batch(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """The photometric chain on uint8-valued float images (N,3,H,W) in 0..255; `params` (N, PARAM_DIM),
    a CPU tensor (the schedule is read from it on the CPU). Returns 0..255 floats."""
    p = params.to('cpu', torch.float64).numpy()
    on_dev = _to_device(params, x.device).to(x.dtype)
    dev = {name: on_dev[:, col] for name, col in (('b', 5), ('c', 6), ('s', 7), ('h', 8), ('sigma', 11))}

    def where(sel) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero(sel))

    jitter = p[:, 0] > 0
    ops = ((brightness, 'b'), (contrast, 'c'), (saturation, 's'), (hue, 'h'))
    for pos in range(4):
        for op_id, (fn, key) in enumerate(ops):
            x = _apply(x, where(jitter & (p[:, 1 + pos] == op_id)), fn, dev[key])
    x = _apply(x, where(p[:, 9] > 0), lambda t: luma(t).expand(-1, 3, -1, -1).contiguous())
    return _apply(x, where(p[:, 10] > 0), blur, dev['sigma'])


def normalize_batch(x: torch.Tensor) -> torch.Tensor:
    """0..255 values -> ImageNet-normalised float32, as ToTensor + Normalize."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (x.to(torch.float32) / 255 - mean) / std


def finish_batch(batch: dict, device: torch.device) -> dict:
    """The batch on `device`: uint8 image views normalised there, strong views (those with
    `photo_<key>` parameters) through `apply_strong_batch` first; the parameter keys are dropped."""
    nb = device.type == 'cuda'
    out = {}
    for key, value in batch.items():
        if key.startswith(PHOTO_PREFIX):
            continue
        if not torch.is_tensor(value):
            out[key] = value
            continue
        moved = value.to(device, non_blocking=nb)
        if value.dtype == torch.uint8 and value.dim() == 4:
            x = moved.to(torch.float32)
            params = batch.get(PHOTO_PREFIX + key)
            if params is not None:
                x = apply_strong_batch(x, params)
            moved = normalize_batch(x)
        out[key] = moved
    return out
