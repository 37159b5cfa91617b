"""The release's augmentations, one function each, in the order `semi_dataset` applies them.

They draw from the process-global RNGs exactly where the release does (python `random` for
rescale / crop / flip / probabilities, numpy for the ratio resize, blur sigma and CutMix box,
torch for ColorJitter / RandomGrayscale), so seeding those three per worker makes a run
reproducible (see `semiseg.data.build.seed_worker`).
"""
from __future__ import annotations

import math
import random

import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms as T
from torchvision.transforms import functional as TF

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


def ratio_rescale(img: Image.Image, mask: Image.Image, img_scale: tuple[int, int],
                  ratio_range: tuple[float, float]) -> tuple[Image.Image, Image.Image]:
    """mmseg-style random ratio resize: r ~ U[lo, hi) (numpy), cv2 bilinear / nearest."""
    lo, hi = ratio_range
    ratio = np.random.random_sample() * (hi - lo) + lo
    new_h, new_w = ratio_rescale_size(img.height, img.width, img_scale, ratio)
    img_a = cv2.resize(np.asarray(img), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    mask_a = cv2.resize(np.asarray(mask), (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    return Image.fromarray(img_a), Image.fromarray(mask_a)


def long_side_size(h: int, w: int, long_side: int) -> tuple[int, int]:
    """(new_h, new_w) when the long side becomes `long_side` (other side int(s·new/L + 0.5))."""
    if h > w:
        return long_side, int(1.0 * w * long_side / h + 0.5)
    return int(1.0 * h * long_side / w + 0.5), long_side


def long_side_rescale(img: Image.Image, mask: Image.Image,
                      ratio_range: tuple[float, float]) -> tuple[Image.Image, Image.Image]:
    """UniMatch's rescale: long side = randint[int(lo·L), int(hi·L)] (python random, inclusive)."""
    w, h = img.size
    longest = max(h, w)
    long_side = random.randint(int(longest * ratio_range[0]), int(longest * ratio_range[1]))
    new_h, new_w = long_side_size(h, w, long_side)
    return (img.resize((new_w, new_h), Image.BILINEAR),
            mask.resize((new_w, new_h), Image.NEAREST))


def val_resize_size(h: int, w: int, img_scale: tuple[int, int],
                    min_size: int = 512) -> tuple[int, int]:
    """(new_h, new_w) of the release's val `Resize(img_scale, min_size=512)` (keep ratio).

    The short side becomes max(min(img_scale), min_size) (512 for every release config), the
    aspect ratio is kept and the long side is not capped; sides round as int(dim·f + 0.5).
    """
    short = max(min(img_scale), min_size)
    f = short / min(h, w)
    return int(h * f + 0.5), int(w * f + 0.5)


def val_resize(img: Image.Image, img_scale: tuple[int, int]) -> Image.Image:
    """Resize a validation image (never its mask) with cv2 bilinear."""
    new_h, new_w = val_resize_size(img.height, img.width, img_scale)
    return Image.fromarray(cv2.resize(np.asarray(img), (new_w, new_h),
                                      interpolation=cv2.INTER_LINEAR))


# ----------------------------------------------------------------------------- geometry
def pad_and_crop(img: Image.Image, mask: Image.Image, size: int,
                 mask_fill: int) -> tuple[Image.Image, Image.Image]:
    """Pad right/bottom to `size` (image 0, mask `mask_fill`), then a random size×size crop."""
    w, h = img.size
    padw, padh = max(size - w, 0), max(size - h, 0)
    if padw or padh:
        img = ImageOps.expand(img, border=(0, 0, padw, padh), fill=0)
        mask = ImageOps.expand(mask, border=(0, 0, padw, padh), fill=mask_fill)
    w, h = img.size
    x = random.randint(0, w - size)
    y = random.randint(0, h - size)
    box = (x, y, x + size, y + size)
    return img.crop(box), mask.crop(box)


def hflip(img: Image.Image, mask: Image.Image, p: float = 0.5) -> tuple[Image.Image, Image.Image]:
    """Flip image and mask together with probability p."""
    if random.random() < p:
        return img.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)
    return img, mask


# ----------------------------------------------------------------------------- photometric
def photometric_distortion(img: Image.Image) -> Image.Image:
    """mmseg's PhotoMetricDistortion on the BGR array, as the release applies it to train_l."""
    from mmseg.datasets.transforms import PhotoMetricDistortion  # heavy import; off by default
    bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
    out = PhotoMetricDistortion().transform({'img': bgr})['img']
    return Image.fromarray(np.ascontiguousarray(out[:, :, ::-1]))


def blur(img: Image.Image, p: float = 0.5) -> Image.Image:
    """Gaussian blur with probability p, radius sigma ~ U(0.1, 2.0)."""
    if random.random() < p:
        sigma = np.random.uniform(0.1, 2.0)
        img = img.filter(ImageFilter.GaussianBlur(radius=sigma))
    return img


def strong_view(img: Image.Image) -> Image.Image:
    """One strong photometric view: jitter (p 0.8), grayscale (p 0.2), blur (p 0.5)."""
    if random.random() < 0.8:
        img = T.ColorJitter(0.5, 0.5, 0.5, 0.25)(img)
    img = T.RandomGrayscale(p=0.2)(img)
    return blur(img, p=0.5)


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
def normalize(img: Image.Image) -> torch.Tensor:
    """ToTensor (/255) and ImageNet normalisation: float32 (3, H, W)."""
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


def mask_to_tensor(mask: Image.Image) -> torch.Tensor:
    """Label ids as int64 (H, W)."""
    return torch.from_numpy(np.array(mask, dtype=np.int64))
