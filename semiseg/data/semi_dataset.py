"""`SemiDataset`: one split list read in one of three modes, with the release's transform order.

- `train_l`: (img float32 (3,S,S), mask int64 (S,S)); padding 255.
- `train_u`: (img_w, img_s1, img_s2, ignore int64 (S,S), box1 float32 (S,S), box2); padding 254,
  ignore = 255 exactly where the padding marker 254 survives the transforms.
- `val`: (img float32 (3,h,w), mask int64 (H,W) at the original size, id = image path).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from semiseg.data import transforms as tr
from semiseg.data.datasets import IGNORE_INDEX, UNLABELED_PAD
from semiseg.data.loading import load_sample
from semiseg.data.splits import SplitEntry, check_entries

MODES = ('train_l', 'train_u', 'val')


@dataclass(frozen=True)
class AugConfig:
    """Augmentation settings from the run config (spec §7)."""

    crop_size: int                               # S: square training crop
    img_scale: tuple[int, int] | None = None     # mmseg ratio resize (VOC/ADE); None: long side
    scale_ratio_range: tuple[float, float] = (0.5, 2.0)
    labeled_photometric_distortion: bool = False
    reduce_zero_label: bool = False              # ADE label shift, applied before any transform

    @classmethod
    def from_cfg(cls, cfg: dict, reduce_zero_label: bool = False) -> 'AugConfig':
        img_scale = cfg.get('img_scale')
        return cls(crop_size=int(cfg['crop_size']),
                   img_scale=tuple(int(v) for v in img_scale) if img_scale else None,
                   scale_ratio_range=tuple(float(v) for v in cfg.get('scale_ratio_range',
                                                                       (0.5, 2.0))),
                   labeled_photometric_distortion=bool(cfg.get('labeled_photometric_distortion',
                                                               False)),
                   reduce_zero_label=bool(cfg.get('reduce_zero_label', reduce_zero_label)))


class SemiDataset(Dataset):
    """Samples of one split list; `nsample` repeats and truncates the list (train_l = |U|)."""

    def __init__(self, data_root: str | Path, entries: list[SplitEntry], mode: str,
                 aug: AugConfig, nsample: int | None = None, check_first: int = 3) -> None:
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
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

    def __getitem__(self, index: int) -> tuple:
        entry = self.entries[index]
        img, mask = load_sample(self.data_root, entry, self.aug.reduce_zero_label)
        if self.mode == 'val':
            if self.aug.img_scale is not None:
                img = tr.val_resize(img, self.aug.img_scale)
            return tr.normalize(img), tr.mask_to_tensor(mask), entry.image
        return self._train_item(img, mask)

    def _train_item(self, img, mask) -> tuple:
        aug = self.aug
        if aug.img_scale is not None:
            img, mask = tr.ratio_rescale(img, mask, aug.img_scale, aug.scale_ratio_range)
        else:
            img, mask = tr.long_side_rescale(img, mask, aug.scale_ratio_range)
        pad_value = UNLABELED_PAD if self.mode == 'train_u' else IGNORE_INDEX
        img, mask = tr.pad_and_crop(img, mask, aug.crop_size, pad_value)
        img, mask = tr.hflip(img, mask, p=0.5)
        if self.mode == 'train_l':
            if aug.labeled_photometric_distortion:
                img = tr.photometric_distortion(img)
            return tr.normalize(img), tr.mask_to_tensor(mask)

        img_s1 = tr.strong_view(copy.deepcopy(img))
        box1 = tr.cutmix_box(aug.crop_size, p=0.5)
        img_s2 = tr.strong_view(copy.deepcopy(img))
        box2 = tr.cutmix_box(aug.crop_size, p=0.5)
        mask_t = tr.mask_to_tensor(mask)
        ignore = torch.zeros_like(mask_t)
        ignore[mask_t == UNLABELED_PAD] = IGNORE_INDEX
        return tr.normalize(img), tr.normalize(img_s1), tr.normalize(img_s2), ignore, box1, box2
