"""Image normalisation constants, palettes and label colouring."""
from __future__ import annotations

import hashlib

import numpy as np

from .labels import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IGNORE_COLOR = (224, 224, 192)  # VOC's colour for label 255, used for every generated palette


def voc_palette() -> np.ndarray:
    """The standard PASCAL VOC colour map (256x3 uint8; 255 -> (224, 224, 192))."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        c, r, g, b = label, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[label] = (r, g, b)
    return palette


def generated_palette(nclass: int, key: str) -> np.ndarray:
    """Deterministic random colours for `nclass` classes, seeded by a hash of `key`."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], 'little')
    rng = np.random.default_rng(seed)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:min(nclass, 255)] = rng.integers(0, 256, size=(min(nclass, 255), 3))
    palette[IGNORE_INDEX] = IGNORE_COLOR
    return palette


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) label ids -> (H, W, 3) uint8 RGB through a palette of up to 256 rows.

    Ids beyond a short palette are drawn white.
    """
    table = np.full((256, 3), 255, dtype=np.uint8)
    rows = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
    table[:len(rows)] = rows
    return table[np.clip(np.asarray(labels), 0, 255).astype(np.int64)]


def denormalize(img: np.ndarray) -> np.ndarray:
    """(3, H, W) ImageNet-normalised -> (H, W, 3) float in [0, 1]."""
    out = img.transpose(1, 2, 0) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
    return np.clip(out, 0.0, 1.0)


def center_crop_box(h: int, w: int, crop: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the central `crop` x `crop` region of an h x w image, at offsets
    ((h - crop) // 2, (w - crop) // 2); sides shorter than `crop` are kept whole."""
    top, left = max((h - crop) // 2, 0), max((w - crop) // 2, 0)
    return top, left, min(crop, h), min(crop, w)


def center_crop(x, crop: int):
    """The central region (center_crop_box) of a (..., H, W) tensor or array."""
    top, left, height, width = center_crop_box(*x.shape[-2:], crop)
    return x[..., top:top + height, left:left + width]
