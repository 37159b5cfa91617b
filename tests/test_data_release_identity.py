"""The default ('release') augmentation path gives the release's samples bit for bit.

Two references: (1) `_Reference`, a copy of our pipeline as it was before the array rewrite (PIL
geometry, deepcopies, ColorJitter / RandomGrayscale objects, ToTensor + Normalize) — exp-0 batches
must not change; (2) the UniMatch release's own `SemiDataset` (LiheYoung/UniMatch `dataset/semi.py`),
imported from a local copy of the release when one is present (`semiseg.tools.release_pipeline`).
"""
from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from semiseg.data import transforms as tr
from semiseg.data.semi_dataset import AugConfig, SemiDataset
from semiseg.data.voc_like import make_voc_like
from semiseg.engine.loaders import derive_seed
from semiseg.utils.imaging import IMAGENET_MEAN, IMAGENET_STD

torch.set_num_threads(1)


def _seed(s: int) -> None:
    random.seed(s)
    np.random.seed(s)
    torch.random.default_generator.manual_seed(s)


class _Reference:
    """The pre-rewrite pipeline (semiseg/data/semi_dataset.py + transforms.py before issue 23)."""

    @staticmethod
    def normalize(img):
        return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)

    @staticmethod
    def geometric(img, mask, aug, pad_value):
        if aug.img_scale is not None:
            import cv2
            lo, hi = aug.scale_ratio_range
            ratio = np.random.random_sample() * (hi - lo) + lo
            new_h, new_w = tr.ratio_rescale_size(img.height, img.width, aug.img_scale, ratio)
            img = Image.fromarray(cv2.resize(np.asarray(img), (new_w, new_h), interpolation=cv2.INTER_LINEAR))
            mask = Image.fromarray(cv2.resize(np.asarray(mask), (new_w, new_h), interpolation=cv2.INTER_NEAREST))
        else:
            w, h = img.size
            long_side = random.randint(int(max(h, w) * aug.scale_ratio_range[0]),
                                       int(max(h, w) * aug.scale_ratio_range[1]))
            new_h, new_w = tr.long_side_size(h, w, long_side)
            img, mask = img.resize((new_w, new_h), Image.BILINEAR), mask.resize((new_w, new_h), Image.NEAREST)
        size = aug.crop_size
        w, h = img.size
        padw, padh = max(size - w, 0), max(size - h, 0)
        if padw or padh:
            img = ImageOps.expand(img, border=(0, 0, padw, padh), fill=0)
            mask = ImageOps.expand(mask, border=(0, 0, padw, padh), fill=pad_value)
        w, h = img.size
        x, y = random.randint(0, w - size), random.randint(0, h - size)
        img, mask = img.crop((x, y, x + size, y + size)), mask.crop((x, y, x + size, y + size))
        if random.random() < 0.5:
            img, mask = img.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)
        return img, mask

    @staticmethod
    def strong(img):
        if random.random() < 0.8:
            img = T.ColorJitter(0.5, 0.5, 0.5, 0.25)(img)
        img = T.RandomGrayscale(p=0.2)(img)
        if random.random() < 0.5:
            img = img.filter(ImageFilter.GaussianBlur(radius=np.random.uniform(0.1, 2.0)))
        return img

    @classmethod
    def item(cls, ds: SemiDataset, index: int) -> dict:
        from semiseg.data.loading import load_sample
        entry = ds.entries[index]
        img, mask = load_sample(ds.data_root, entry, False, None)
        if ds.mode == 'val':
            return {'img': cls.normalize(img), 'mask': torch.from_numpy(np.array(mask, np.int64))}
        img, mask = cls.geometric(img, mask, ds.aug, 254 if ds.mode == 'train_u' else 255)
        if ds.mode == 'train_l':
            out = {'img_x': cls.normalize(img)}
            if 'img_x_s' in ds.views:
                out['img_x_s'] = cls.normalize(cls.strong(copy.deepcopy(img)))
            out['mask_x'] = torch.from_numpy(np.array(mask, np.int64))
            return out
        out = {'img_w': cls.normalize(img)}
        for key in ('img_s1', 'box1', 'img_s2', 'box2'):
            out[key] = (cls.normalize(cls.strong(copy.deepcopy(img))) if key.startswith('img')
                        else tr.cutmix_box(ds.aug.crop_size, p=0.5))
        m = torch.from_numpy(np.array(mask, np.int64))
        out['ignore'] = torch.where(m == 254, 255, 0)
        return out


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp('voc')
    return root, make_voc_like(root, 6, size=(90, 120), seed=1)


def _same(a: dict, b: dict, keys) -> None:
    for k in keys:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), f'{k} differs'


@pytest.mark.parametrize('mode, views, img_scale', [
    ('train_u', None, None),                            # UniMatch: long-side rescale (PIL)
    ('train_u', None, (160, 48)),                       # SemiVL: mmseg ratio rescale (cv2)
    ('train_u', ('img_w', 'img_s1', 'ignore'), None),   # fewer views: the built ones unchanged
    ('train_l', ('img_x', 'img_x_s', 'mask_x'), None),  # AllSpark's labeled strong view
    ('val', None, None),
])
def test_release_path_equals_pre_rewrite_pipeline(voc, mode, views, img_scale):
    root, entries = voc
    aug = AugConfig(crop_size=96, img_scale=img_scale)
    ds = SemiDataset(root, entries, mode, aug, views=views)
    for i in range(len(entries)):
        for epoch in range(3):
            s = derive_seed(0, 1, epoch, i)
            _seed(s)
            ours = ds[i]
            _seed(s)
            ref = _Reference.item(ds, i)
            _same(ours, ref, [k for k in ours if k != 'id'])


def test_normalize_lookup_equals_to_tensor_normalize():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    arr[0, :3] = [[0, 0, 0], [255, 255, 255], [1, 128, 254]]
    assert torch.equal(tr.normalize(arr), _Reference.normalize(Image.fromarray(arr)))


def test_release_path_equals_unimatch_release(voc, tmp_path):
    """Our samples are the release's SemiDataset samples, seed for seed (skips without its source)."""
    from semiseg.tools.release_pipeline import load_release_semi, release_path
    semi = load_release_semi()
    if semi is None:
        pytest.skip(f'UniMatch release source not found at {release_path()} (set SEMISEG_UNIMATCH_RELEASE)')
    root, entries = voc
    id_path = tmp_path / 'ids.txt'
    id_path.write_text(''.join(f'{e.image} {e.mask}\n' for e in entries))
    for mode, crop in (('train_u', 96), ('train_u', 64), ('train_l', 96)):
        rel = semi.SemiDataset('pascal', str(root), mode, crop, str(id_path))
        ours = SemiDataset(root, entries, mode, AugConfig(crop_size=crop))
        keys = ('img_w', 'img_s1', 'img_s2', 'ignore', 'box1', 'box2') if mode == 'train_u' else ('img_x', 'mask_x')
        for i in range(len(entries)):
            s = derive_seed(0, 1, 0, i)
            _seed(s)
            mine = ours[i]
            _seed(s)
            theirs = dict(zip(keys, rel[i]))
            _same(mine, theirs, keys)
