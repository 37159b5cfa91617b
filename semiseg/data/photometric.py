"""The strong view's photometric chain, split into drawing its parameters and applying them.

The release (LiheYoung/UniMatch `dataset/semi.py`, `SemiDataset.__getitem__`; `dataset/transform.py`,
`blur`) builds a strong view as: ColorJitter(0.5, 0.5, 0.5, 0.25) with probability 0.8,
RandomGrayscale(0.2), Gaussian blur with probability 0.5 and sigma ~ U(0.1, 2.0). `draw_strong_params`
consumes the global RNGs exactly as those transforms do (python `random` for the probabilities,
torch for the jitter order / factors and the grayscale draw, numpy for sigma), so drawing first and
applying later changes no sample. Three appliers share the parameters:

- `apply_strong_release`: torchvision's PIL kernels, bit-identical to the release;
- `apply_strong_fast`: OpenCV / uint8 lookup kernels on numpy arrays (same parameters, close pixels:
  hue through OpenCV's uint8 HSV instead of PIL's, a true separable Gaussian instead of PIL's box
  approximation of the same sigma);
- `semiseg.data.device_photometric.apply_strong_batch`: batched tensor ops on the training device.

`StrongParams.to_vector` / `from_vector` carry the parameters in a batch (float64, PARAM_DIM values).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision.transforms import ColorJitter
from torchvision.transforms import functional as TF

JITTER = (0.5, 0.5, 0.5, 0.25)           # brightness, contrast, saturation, hue of the release
P_JITTER, P_GRAY, P_BLUR = 0.8, 0.2, 0.5
SIGMA_RANGE = (0.1, 2.0)
PARAM_DIM = 12   # jitter?, order x4, brightness, contrast, saturation, hue, gray?, blur?, sigma


@dataclass(frozen=True)
class StrongParams:
    """One strong view's draws; `order` lists 0 brightness, 1 contrast, 2 saturation, 3 hue."""

    jitter: bool
    order: tuple[int, int, int, int]
    brightness: float
    contrast: float
    saturation: float
    hue: float
    gray: bool
    sigma: float | None                  # None: no blur

    def to_vector(self) -> torch.Tensor:
        return torch.tensor([float(self.jitter), *self.order, self.brightness, self.contrast,
                             self.saturation, self.hue, float(self.gray), float(self.sigma is not None),
                             self.sigma or 0.0], dtype=torch.float64)

    @classmethod
    def from_vector(cls, v) -> StrongParams:
        v = [float(x) for x in v]
        return cls(bool(v[0]), tuple(int(x) for x in v[1:5]), v[5], v[6], v[7], v[8], bool(v[9]),
                   v[11] if v[10] else None)


def draw_strong_params() -> StrongParams:
    """The release's draws for one strong view, in its order (see the module docstring)."""
    jitter = random.random() < P_JITTER
    order, b, c, s, h = (0, 1, 2, 3), 1.0, 1.0, 1.0, 0.0
    if jitter:   # ColorJitter.get_params: randperm(4), then one uniform per factor (torch)
        b_, c_, s_, h_ = JITTER
        perm, b, c, s, h = ColorJitter.get_params([1 - b_, 1 + b_], [1 - c_, 1 + c_], [1 - s_, 1 + s_], [-h_, h_])
        order = tuple(int(i) for i in perm)
    gray = bool(torch.rand(1) < P_GRAY)          # RandomGrayscale.forward
    sigma = None
    if random.random() < P_BLUR:                 # transform.py `blur`
        sigma = float(np.random.uniform(*SIGMA_RANGE))
    return StrongParams(jitter, order, b, c, s, h, gray, sigma)


# ----------------------------------------------------------------------------- release kernels
def apply_strong_release(img: Image.Image, p: StrongParams) -> Image.Image:
    """torchvision's PIL functions in the drawn order: the release's pixels exactly."""
    if p.jitter:
        for fn in p.order:
            if fn == 0:
                img = TF.adjust_brightness(img, p.brightness)
            elif fn == 1:
                img = TF.adjust_contrast(img, p.contrast)
            elif fn == 2:
                img = TF.adjust_saturation(img, p.saturation)
            else:
                img = TF.adjust_hue(img, p.hue)
    if p.gray:
        img = TF.rgb_to_grayscale(img, num_output_channels=3)
    if p.sigma is not None:
        img = img.filter(ImageFilter.GaussianBlur(radius=p.sigma))
    return img


# ----------------------------------------------------------------------------- fast kernels
_VALUES = np.arange(256, dtype=np.float32)


def blend_lut(degenerate: float, factor: float) -> np.ndarray:
    """uint8 lookup of PIL's `Image.blend(constant, img, factor)` (Pillow `Blend.c`): float32
    arithmetic, truncation, clipped to 0..255 when extrapolating."""
    f = np.float32(factor)
    out = np.float32(degenerate) + f * (_VALUES - np.float32(degenerate))
    return np.clip(out, 0, 255).astype(np.uint8)


def pil_gray(arr: np.ndarray) -> np.ndarray:
    """PIL's RGB -> L conversion (ITU-R 601-2 in 16-bit fixed point), as uint8 (H, W)."""
    return np.asarray(Image.fromarray(arr).convert('L'))


def _brightness(arr: np.ndarray, factor: float) -> np.ndarray:
    return cv2.LUT(arr, blend_lut(0.0, factor))


def _contrast(arr: np.ndarray, factor: float) -> np.ndarray:
    """PIL's ImageEnhance.Contrast: blend with the rounded mean of the L image."""
    gray = pil_gray(arr)
    mean = int(float(np.bincount(gray.ravel(), minlength=256) @ np.arange(256)) / gray.size + 0.5)
    return cv2.LUT(arr, blend_lut(float(mean), factor))


def _saturation(arr: np.ndarray, factor: float) -> np.ndarray:
    """PIL's ImageEnhance.Color itself: its uint8 loop beats any float detour through numpy."""
    return np.asarray(TF.adjust_saturation(Image.fromarray(arr), factor))


def hue_lut(hue: float) -> np.ndarray:
    """The (256, 1, 3) lookup that shifts the H channel of a uint8 HSV image by the release's amount,
    `int(hue * 255)` modulo 256 (torchvision `_functional_pil.adjust_hue`), leaving S and V."""
    shift = int(np.int32(hue * 255).astype(np.uint8))
    ident = np.arange(256, dtype=np.uint8)
    return np.stack([(ident.astype(np.int32) + shift).astype(np.uint8), ident, ident], -1)[:, None, :]


def _hue(arr: np.ndarray, hue: float) -> np.ndarray:
    """Hue rotation through OpenCV's full-range uint8 HSV (H in 0..255, as PIL's HSV mode)."""
    hsv = cv2.cvtColor(arr, cv2.COLOR_RGB2HSV_FULL)
    return cv2.cvtColor(cv2.LUT(hsv, hue_lut(hue)), cv2.COLOR_HSV2RGB_FULL)


def gaussian_blur(arr: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian of std `sigma` (radius ceil(3 sigma)), edges replicated as PIL's box blur."""
    radius = int(np.ceil(3 * sigma))
    return cv2.GaussianBlur(arr, (2 * radius + 1, 2 * radius + 1), sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REPLICATE)


def apply_strong_fast(arr: np.ndarray, p: StrongParams) -> np.ndarray:
    """The same parameters with OpenCV / lookup kernels on an RGB uint8 (H, W, 3) array.

    Brightness, contrast, saturation and grayscale reproduce PIL's arithmetic; hue and blur differ
    from PIL by a few grey levels (tests/test_data_fast_path.py bounds them)."""
    if p.jitter:
        for fn in p.order:
            if fn == 0:
                arr = _brightness(arr, p.brightness)
            elif fn == 1:
                arr = _contrast(arr, p.contrast)
            elif fn == 2:
                arr = _saturation(arr, p.saturation)
            else:
                arr = _hue(arr, p.hue)
    if p.gray:
        arr = np.repeat(pil_gray(arr)[..., None], 3, axis=2)
    if p.sigma is not None:
        arr = gaussian_blur(arr, p.sigma)
    return arr
