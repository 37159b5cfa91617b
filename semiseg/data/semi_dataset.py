"""`SemiDataset`: one split list read in one of three modes, with the release's transform order.

Training items are dicts holding only the views the method asked for (names in
`semiseg/methods/registry.py`):
- `train_l`: `img_x` float32 (3,S,S), `img_x_s` (the same crop with a strong photometric view,
  AllSpark), `mask_x` int64 (S,S); padding 255.
- `train_u`: `img_w`, `img_s1`, `img_s2` float32 (3,S,S), `ignore` int64 (S,S), `box1`, `box2` float32
  (S,S); padding 254 in the mask, so `ignore` = 255 exactly where the padding survives the transforms.
- `val`: `img` float32 (3,h,w), `mask` int64 (H,W) at the original size, `id` = the image path.
Views are drawn in the release's order (s1, box1, s2, box2), so asking for fewer views does not
change the ones that are built. The geometry (rescale, crop, flip) is done once, on arrays, and
shared by the weak and both strong views, as in the release.

Two switches (`AugConfig`): `augment='fast'` applies the same draws with OpenCV / lookup kernels
(`semiseg.data.photometric.apply_strong_fast`); `photometric_device=True` ships each strong view's
parameters as `photo_<view>` (float64 PARAM_DIM), for `semiseg.data.device_photometric.finish_batch`
to apply on the training device. With either switch image views travel as uint8 (3,S,S) and are
normalised on the device (`semiseg.engine.loaders.batch_to_device`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from semiseg.data import transforms as tr
from semiseg.data.loading import load_sample
from semiseg.data.photometric import apply_strong_fast, apply_strong_release, draw_strong_params
from semiseg.data.splits import SplitEntry, check_entries
from semiseg.methods.registry import LABELED_VIEWS, UNLABELED_VIEWS
from semiseg.utils.labels import IGNORE_INDEX, UNLABELED_PAD

MODES = ('train_l', 'train_u', 'val')
DEFAULT_VIEWS = {'train_l': ('img_x', 'mask_x'), 'train_u': UNLABELED_VIEWS, 'val': ('img', 'mask', 'id')}
STRONG_ORDER = ('img_s1', 'box1', 'img_s2', 'box2')   # UniMatch dataset/semi.py draw order
AUGMENT_KERNELS = ('release', 'fast')
PHOTO_PREFIX = 'photo_'     # batch key of a strong view's parameters (photometric_device)


@dataclass(frozen=True)
class AugConfig:
    """Augmentation settings from the run config, as google-research/semivl
    `third_party/unimatch/dataset/semi.py` (`SemiDataset`) reads them."""

    crop_size: int                               # S: square training crop
    img_scale: tuple[int, int] | None = None     # mmseg ratio resize (VOC/ADE); None: long side
    scale_ratio_range: tuple[float, float] = (0.5, 2.0)
    labeled_photometric_distortion: bool = False
    reduce_zero_label: bool = False              # ADE label shift, applied before any transform
    nclass: int | None = None                    # label ids must be < nclass (or 255); None: unchecked
    augment: str = 'release'                     # 'release': the release's kernels; 'fast': OpenCV / lookups
    photometric_device: bool = False             # strong views' photometric chain on the training device

    def __post_init__(self) -> None:
        if self.augment not in AUGMENT_KERNELS:
            raise ValueError(f"augment must be one of {AUGMENT_KERNELS}, got {self.augment!r}")

    @classmethod
    def from_cfg(cls, cfg: dict, reduce_zero_label: bool = False) -> AugConfig:
        img_scale = cfg.get('img_scale')
        return cls(crop_size=int(cfg['crop_size']),
                   img_scale=tuple(int(v) for v in img_scale) if img_scale else None,
                   scale_ratio_range=tuple(float(v) for v in cfg.get('scale_ratio_range',
                                                                       (0.5, 2.0))),
                   labeled_photometric_distortion=bool(cfg.get('labeled_photometric_distortion',
                                                               False)),
                   reduce_zero_label=bool(cfg.get('reduce_zero_label', reduce_zero_label)),
                   nclass=int(cfg['nclass']) if cfg.get('nclass') else None,
                   augment=str(cfg.get('augment', 'release')),
                   photometric_device=bool(cfg.get('photometric_device', False)))


class SemiDataset(Dataset):
    """Samples of one split list; `nsample` repeats and truncates the list (train_l = |U|)."""

    def __init__(self, data_root: str | Path, entries: list[SplitEntry], mode: str,
                 aug: AugConfig, nsample: int | None = None, check_first: int = 3,
                 views: tuple[str, ...] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.views = tuple(views) if views is not None else DEFAULT_VIEWS[mode]
        allowed = {'train_l': LABELED_VIEWS, 'train_u': UNLABELED_VIEWS, 'val': DEFAULT_VIEWS['val']}[mode]
        unknown = [v for v in self.views if v not in allowed]
        if unknown or not self.views:
            raise ValueError(f'{mode} views must be a non-empty subset of {allowed}, got {self.views}')
        self.data_root = Path(data_root).expanduser()
        self.mode = mode
        self.aug = aug
        if nsample is not None and nsample > len(entries):
            entries = entries * math.ceil(nsample / len(entries))
        self.entries = entries[:nsample] if nsample is not None else list(entries)
        if check_first:
            check_entries(self.data_root, self.entries, check_first)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        img, mask = self.load(index)
        if self.mode == 'val':
            if self.aug.img_scale is not None:
                img = tr.val_resize(img, self.aug.img_scale)
            return {'img': tr.normalize(img), 'mask': tr.mask_to_tensor(mask),
                    'id': self.entries[index].image}
        return self.build_views(*self.geometry(img, mask))

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode one entry: RGB uint8 (H, W, 3) and label ids uint8 (H, W)."""
        # unlabeled masks only mark padding: their ids are not checked
        nclass = self.aug.nclass if self.mode != 'train_u' else None
        img, mask = load_sample(self.data_root, self.entries[index], self.aug.reduce_zero_label, nclass)
        return np.asarray(img), np.asarray(mask)

    def geometry(self, img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rescale, pad (255 labeled / 254 unlabeled), random crop, flip; contiguous arrays."""
        aug = self.aug
        if aug.img_scale is not None:
            img, mask = tr.ratio_rescale(img, mask, aug.img_scale, aug.scale_ratio_range)
        else:
            img, mask = tr.long_side_rescale(img, mask, aug.scale_ratio_range, fast=aug.augment == 'fast')
        pad_value = UNLABELED_PAD if self.mode == 'train_u' else IGNORE_INDEX
        img, mask = tr.pad_and_crop(img, mask, aug.crop_size, pad_value)
        img, mask = tr.hflip(img, mask, p=0.5)
        return np.ascontiguousarray(img), np.ascontiguousarray(mask)

    def build_views(self, img: np.ndarray, mask: np.ndarray) -> dict:
        """The training views of one geometric crop."""
        if self.mode == 'train_l':
            return self._labeled_views(img, mask)
        return self._unlabeled_views(img, mask)

    def _finish(self, img: np.ndarray) -> torch.Tensor:
        """The release path normalises here (today's float batches); the switches ship uint8, a quarter
        of the bytes to collate and copy, normalised on the device by `batch_to_device`."""
        if self.aug.photometric_device or self.aug.augment == 'fast':
            return tr.image_to_uint8_tensor(img)
        return tr.normalize(img)

    def _strong(self, img: np.ndarray, key: str, out: dict) -> None:
        """Draw one strong view's parameters (always, for the RNG stream); build it if asked for."""
        params = draw_strong_params()
        if key not in self.views:
            return
        if self.aug.photometric_device:
            out[key] = tr.image_to_uint8_tensor(img)
            out[PHOTO_PREFIX + key] = params.to_vector()
        elif self.aug.augment == 'fast':
            out[key] = self._finish(apply_strong_fast(img, params))
        else:
            out[key] = tr.normalize(apply_strong_release(Image.fromarray(img), params))

    def _labeled_views(self, img, mask) -> dict:
        out = {}
        if 'img_x' in self.views:
            out['img_x'] = self._finish(tr.photometric_distortion(img) if self.aug.labeled_photometric_distortion
                                        else img)
        if 'img_x_s' in self.views:   # AllSpark: the strong chain on the labeled crop, no CutMix
            self._strong(img, 'img_x_s', out)
        if 'mask_x' in self.views:
            out['mask_x'] = tr.mask_to_tensor(mask)
        return self._ordered(out)

    def _unlabeled_views(self, img, mask) -> dict:
        out = {}
        if 'img_w' in self.views:
            out['img_w'] = self._finish(img)
        needed = [k for k in STRONG_ORDER if k in self.views]
        last = STRONG_ORDER.index(needed[-1]) if needed else -1
        for key in STRONG_ORDER[:last + 1]:   # earlier draws happen even when unused: same RNG stream
            if key.startswith('img'):
                self._strong(img, key, out)
            else:
                box = tr.cutmix_box(self.aug.crop_size, p=0.5)
                if key in self.views:
                    out[key] = box
        if 'ignore' in self.views:
            ignore = np.zeros(mask.shape, np.int64)
            ignore[mask == UNLABELED_PAD] = IGNORE_INDEX
            out['ignore'] = torch.from_numpy(ignore)
        return self._ordered(out)

    def _ordered(self, out: dict) -> dict:
        """The views in the order asked for, then the strong views' parameters (photometric_device)."""
        order = list(self.views) + [PHOTO_PREFIX + k for k in self.views if PHOTO_PREFIX + k in out]
        return {k: out[k] for k in order}
