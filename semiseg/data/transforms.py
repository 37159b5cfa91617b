"""The release's augmentations, one function each, in the order `semi_dataset` applies them.

They draw from the process-global RNGs exactly where the release does (python `random` for
rescale / crop / flip / probabilities, numpy for the ratio resize, blur sigma and CutMix box,
torch for ColorJitter / RandomGrayscale), so seeding those three per sample makes a run
reproducible (`semiseg.engine.loaders.SeededDataset`). Geometry works on numpy arrays (RGB uint8
(H, W, 3) images, uint8 (H, W) masks): padding, cropping and flipping copy pixels, so arrays give
the release's PIL results exactly, without PIL round trips. The resize kernel is the one choice:
`fast=False` keeps the release's (PIL for UniMatch's long-side rescale), `fast=True` uses OpenCV.
"""
from __future__ import annotations

import math
import random

import cv2
import numpy as np
import torch
from PIL import Image

from semiseg.data.photometric import apply_strong_release, draw_strong_params
from semiseg.utils.imaging import IMAGENET_MEAN, IMAGENET_STD


# ----------------------------------------------------------------------------- rescale
def ratio_rescale_size(h: int, w: int, img_scale: tuple[int, int], ratio: float) -> tuple[int, int]:
    """(new_h, new_w) of mmseg's keep-ratio `Resize(img_scale, ratio_range)` for one ratio.

    The target scale is (int(long·r), int(short·r)); the factor is the largest that fits both
    edges, f = min(long'/max(h,w), short'/min(h,w)); sides round as int(dim·f + 0.5).
    """
    long_t, short_t = int(max(img_scale) * ratio), int(min(img_scale) * ratio)
    f = min(long_t / max(h, w), short_t / min(h, w))
    return int(h * f + 0.5), int(w * f + 0.5)


def ratio_rescale(img: np.ndarray, mask: np.ndarray, img_scale: tuple[int, int],
                  ratio_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """mmseg-style random ratio resize: r ~ U[lo, hi) (numpy), cv2 bilinear / nearest (both paths)."""
    lo, hi = ratio_range
    ratio = np.random.random_sample() * (hi - lo) + lo
    new_h, new_w = ratio_rescale_size(img.shape[0], img.shape[1], img_scale, ratio)
    return (cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR),
            cv2.resize(mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST))


def long_side_size(h: int, w: int, long_side: int) -> tuple[int, int]:
    """(new_h, new_w) when the long side becomes `long_side` (other side int(s·new/L + 0.5))."""
    if h > w:
        return long_side, int(1.0 * w * long_side / h + 0.5)
    return int(1.0 * h * long_side / w + 0.5), long_side


def long_side_rescale(img: np.ndarray, mask: np.ndarray, ratio_range: tuple[float, float],
                      fast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """UniMatch's rescale: long side = randint[int(lo·L), int(hi·L)] (python random, inclusive).

    `fast=False`: PIL bilinear / nearest as the release (`dataset/transform.py`, `resize`).
    `fast=True`: OpenCV, area-averaging when shrinking (PIL's bilinear widens its support to
    antialias), bilinear when enlarging, and nearest with PIL's pixel-centre rule."""
    h, w = mask.shape
    longest = max(h, w)
    long_side = random.randint(int(longest * ratio_range[0]), int(longest * ratio_range[1]))
    new_h, new_w = long_side_size(h, w, long_side)
    if fast:
        interp = cv2.INTER_AREA if new_h < h else cv2.INTER_LINEAR
        return (cv2.resize(img, (new_w, new_h), interpolation=interp),
                cv2.resize(mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST_EXACT))
    return (np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.BILINEAR)),
            np.asarray(Image.fromarray(mask).resize((new_w, new_h), Image.NEAREST)))


def val_resize_size(h: int, w: int, img_scale: tuple[int, int],
                    min_size: int = 512) -> tuple[int, int]:
    """(new_h, new_w) of the release's val `Resize(img_scale, min_size=512)` (keep ratio).

    The short side becomes max(min(img_scale), min_size) (512 for every release config), the
    aspect ratio is kept and the long side is not capped; sides round as int(dim·f + 0.5).
    """
    short = max(min(img_scale), min_size)
    f = short / min(h, w)
    return int(h * f + 0.5), int(w * f + 0.5)


def val_resize(img: Image.Image | np.ndarray, img_scale: tuple[int, int]) -> np.ndarray:
    """Resize a validation image (never its mask) with cv2 bilinear: RGB uint8 (h, w, 3)."""
    arr = np.asarray(img)
    new_h, new_w = val_resize_size(arr.shape[0], arr.shape[1], img_scale)
    return cv2.resize(arr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


# ----------------------------------------------------------------------------- geometry
def pad_and_crop(img: np.ndarray, mask: np.ndarray, size: int,
                 mask_fill: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad right/bottom to `size` (image 0, mask `mask_fill`), then a random size×size crop."""
    h, w = mask.shape
    if h < size or w < size:
        ph, pw = max(size, h), max(size, w)
        img_p = np.zeros((ph, pw, 3), np.uint8)
        mask_p = np.full((ph, pw), mask_fill, np.uint8)
        img_p[:h, :w], mask_p[:h, :w] = img, mask
        img, mask = img_p, mask_p
    h, w = mask.shape
    x = random.randint(0, w - size)
    y = random.randint(0, h - size)
    return img[y:y + size, x:x + size], mask[y:y + size, x:x + size]


def hflip(img: np.ndarray, mask: np.ndarray, p: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Flip image and mask together with probability p."""
    if random.random() < p:
        return img[:, ::-1], mask[:, ::-1]
    return img, mask


# ----------------------------------------------------------------------------- photometric
def photometric_distortion(img: np.ndarray) -> np.ndarray:
    """mmseg's PhotoMetricDistortion on the BGR array, as the release applies it to train_l."""
    from mmseg.datasets.transforms import PhotoMetricDistortion  # heavy import; off by default
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    out = PhotoMetricDistortion().transform({'img': bgr})['img']
    return np.ascontiguousarray(out[:, :, ::-1])


def strong_view(img: Image.Image) -> Image.Image:
    """One strong photometric view (PIL): jitter (p 0.8), grayscale (p 0.2), blur (p 0.5).
    Draws then applies (semiseg.data.photometric): the release's pixels and RNG use exactly."""
    return apply_strong_release(img, draw_strong_params())


def cutmix_box(size: int, p: float = 0.5, area_range: tuple[float, float] = (0.02, 0.4),
               ratio_range: tuple[float, float] = (0.3, 1 / 0.3)) -> torch.Tensor:
    """A (size, size) float mask, 1 inside a random box (probability p), else all zeros.

    area ~ U(area_range)·size²; aspect r ~ U(ratio_range), w = int(√(area/r)), h = int(√(area·r)),
    top-left x, y ~ randint[0, size); redrawn (same area) until the box fits.
    """
    box = torch.zeros(size, size)
    if random.random() > p:
        return box
    area = np.random.uniform(*area_range) * size * size
    while True:
        ratio = np.random.uniform(*ratio_range)
        bw = int(math.sqrt(area / ratio))
        bh = int(math.sqrt(area * ratio))
        x = np.random.randint(0, size)
        y = np.random.randint(0, size)
        if x + bw <= size and y + bh <= size:
            break
    box[y:y + bh, x:x + bw] = 1
    return box


# ----------------------------------------------------------------------------- tensors
def _normalize_lut() -> np.ndarray:
    """(3, 256) float32: each uint8 value through ToTensor (/255) and Normalize, with torch's own ops,
    so a lookup gives torchvision's floats bit for bit."""
    values = torch.arange(256, dtype=torch.uint8).to(torch.float32).div(255)
    mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None]
    std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32)[:, None]
    return values[None].repeat(3, 1).sub_(mean).div_(std).numpy()


_LUT = _normalize_lut()


def normalize(img: Image.Image | np.ndarray) -> torch.Tensor:
    """ToTensor (/255) and ImageNet normalisation of an RGB uint8 image: float32 (3, H, W).

    One lookup per channel straight from uint8 (no float intermediate, no permute copy); equal to
    `TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)` bit for bit."""
    arr = np.asarray(img)
    out = np.empty((3, arr.shape[0], arr.shape[1]), np.float32)
    for c in range(3):
        np.take(_LUT[c], arr[:, :, c], out=out[c])
    return torch.from_numpy(out)


def image_to_uint8_tensor(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> uint8 (3, H, W): a view normalised later, on the training device."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1)))


def mask_to_tensor(mask: Image.Image | np.ndarray) -> torch.Tensor:
    """Label ids as int64 (H, W)."""
    return torch.from_numpy(np.array(mask, dtype=np.int64))
