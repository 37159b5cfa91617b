"""VOC-sized generated samples (JPEG images, palette PNG masks) for timing and testing the pipeline.

Smooth colour fields with edges and texture compress like photographs (a 500x375 file is tens of
kB), so decoding costs what it costs on Pascal VOC; the masks hold a few classes and 255 borders.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from semiseg.data.splits import SplitEntry
from semiseg.utils.imaging import voc_palette

VOC_SIZE = (375, 500)      # (H, W) of most Pascal VOC images


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    coarse = rng.integers(0, 256, (max(2, h // 40), max(2, w // 40), 3), dtype=np.uint8)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-12, 13, (h, w, 3), dtype=np.int16)            # sensor-like texture
    return np.clip(img, 0, 255).astype(np.uint8)


def _mask(rng: np.random.Generator, h: int, w: int, nclass: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    for _ in range(3):
        cls = int(rng.integers(1, nclass))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        axes = (int(rng.integers(w // 10, w // 3)), int(rng.integers(h // 10, h // 3)))
        cv2.ellipse(mask, (cx, cy), axes, 0, 0, 360, cls, -1)
        cv2.ellipse(mask, (cx, cy), axes, 0, 0, 360, 255, 3)        # VOC's ignore border
    return mask


def make_voc_like(root: str | Path, n: int, size: tuple[int, int] = VOC_SIZE, nclass: int = 21,
                  seed: int = 0) -> list[SplitEntry]:
    """Write `n` samples under `root` (JPEGImages/, SegmentationClass/, list.txt); return the entries."""
    root = Path(root)
    (root / 'JPEGImages').mkdir(parents=True, exist_ok=True)
    (root / 'SegmentationClass').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = voc_palette().ravel().tolist()
    entries, lines = [], []
    for i in range(n):
        h, w = size if i % 4 else size[::-1]          # a quarter in portrait, as in VOC
        img_rel, mask_rel = f'JPEGImages/{i:06d}.jpg', f'SegmentationClass/{i:06d}.png'
        Image.fromarray(_image(rng, h, w)).save(root / img_rel, quality=90)
        mask = Image.fromarray(_mask(rng, h, w, nclass))
        mask.putpalette(palette)          # mode P, indices kept: the VOC mask format
        mask.save(root / mask_rel)
        entries.append(SplitEntry(img_rel, mask_rel, root / 'list.txt', i + 1))
        lines.append(f'{img_rel} {mask_rel}\n')
    (root / 'list.txt').write_text(''.join(lines))
    return entries
