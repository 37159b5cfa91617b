"""Invariants of each augmentation of the release's data pipeline (google-research/semivl
`third_party/unimatch/dataset/semi.py`, `SemiDataset`, and `transform.py` beside it)."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from semiseg.data import transforms as tr
from semiseg.data.loading import reduce_zero_label

torch.set_num_threads(1)


def _pair(h, w, seed=0):
    """An RGB uint8 image and a uint8 mask as arrays (the geometry works on arrays)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 5, (h, w), dtype=np.uint8)


def _size(a):
    return a.shape[1], a.shape[0]


@pytest.mark.parametrize('h, w, scale, ratio, expected', [
    (375, 500, (2048, 512), 1.0, (512, 683)),     # VOC-like: short side 512
    (500, 375, (2048, 512), 1.0, (683, 512)),
    (375, 500, (2048, 512), 0.5, (256, 341)),     # int(1024·.5)... short edge binds: 256
    (100, 1000, (2048, 512), 1.0, (205, 2048)),   # very wide: the long edge 2048 binds
    (512, 512, (2048, 512), 1.7, (870, 870)),     # int(512·1.7) = 870
])
def test_ratio_rescale_size_formula(h, w, scale, ratio, expected):
    assert tr.ratio_rescale_size(h, w, scale, ratio) == expected


def test_ratio_rescale_draws_numpy_ratio_and_keeps_mask_values():
    img, mask = _pair(60, 80)
    np.random.seed(3)
    ratio = np.random.random_sample() * (2.0 - 0.5) + 0.5
    np.random.seed(3)
    out_img, out_mask = tr.ratio_rescale(img, mask, (160, 40), (0.5, 2.0))
    exp_h, exp_w = tr.ratio_rescale_size(60, 80, (160, 40), ratio)
    assert _size(out_img) == _size(out_mask) == (exp_w, exp_h)
    assert set(np.unique(out_mask)) <= set(np.unique(mask))


def test_long_side_rescale_range_and_rounding():
    img, mask = _pair(30, 50)
    random.seed(0)
    sizes = [_size(tr.long_side_rescale(img, mask, (0.5, 2.0))[0]) for _ in range(200)]
    longs = {s[0] for s in sizes}
    assert min(longs) >= 25 and max(longs) <= 100
    assert 25 in longs and 100 in longs            # randint bounds are inclusive
    for w, h in sizes:
        assert h == int(30 * w / 50 + 0.5)
    random.seed(1)
    expected = random.randint(25, 100)
    random.seed(1)
    out_img, out_mask = tr.long_side_rescale(img, mask, (0.5, 2.0))
    assert _size(out_img) == _size(out_mask) == (expected, int(30 * expected / 50 + 0.5))
    assert set(np.unique(out_mask)) <= set(np.unique(mask))


@pytest.mark.parametrize('h, w', [(30, 50), (60, 40)])
def test_long_side_rescale_fast_same_sizes_and_close_pixels(h, w):
    """fast=True draws the same size; OpenCV's pixels stay close to PIL's, nearest picks PIL's pixels."""
    rng = np.random.default_rng(2)
    img = np.repeat(np.repeat(rng.integers(0, 256, (h // 5, w // 5, 3), dtype=np.uint8), 5, 0), 5, 1)
    mask = np.repeat(np.repeat(rng.integers(0, 5, (h // 5, w // 5), dtype=np.uint8), 5, 0), 5, 1)
    for seed in range(20):
        random.seed(seed)
        ref_img, ref_mask = tr.long_side_rescale(img, mask, (0.5, 2.0))
        random.seed(seed)
        fast_img, fast_mask = tr.long_side_rescale(img, mask, (0.5, 2.0), fast=True)
        assert fast_img.shape == ref_img.shape and fast_mask.shape == ref_mask.shape
        assert (fast_mask == ref_mask).mean() > 0.97
        assert np.abs(fast_img.astype(int) - ref_img.astype(int)).mean() < 12


@pytest.mark.parametrize('h, w, expected', [
    (375, 500, (512, 683)), (500, 375, (683, 512)), (1024, 2048, (512, 1024)),
    (1000, 1500, (512, 768)), (200, 3000, (512, 7680)),   # no cap on the long side
])
def test_val_resize_short_side_512(h, w, expected):
    assert tr.val_resize_size(h, w, (2048, 512)) == expected
    img, _ = _pair(h // 10, w // 10)
    out = tr.val_resize(Image.fromarray(img), (2048, 512))
    assert min(out.shape[:2]) == 512


@pytest.mark.parametrize('fill', [255, 254])
def test_pad_and_crop_pads_right_bottom(fill):
    img = np.full((30, 40, 3), 200, np.uint8)
    mask = np.full((30, 40), 3, np.uint8)
    random.seed(0)
    a, m = tr.pad_and_crop(img, mask, 64, fill)
    assert a.shape == (64, 64, 3) and m.shape == (64, 64)
    assert (a[:30, :40] == 200).all() and (a[30:] == 0).all() and (a[:, 40:] == 0).all()
    assert (m[:30, :40] == 3).all() and (m[30:] == fill).all() and (m[:, 40:] == fill).all()


def test_crop_of_large_image_is_a_window():
    base = np.arange(100 * 120, dtype=np.int64).reshape(100, 120)
    img = np.stack([base % 251] * 3, -1).astype(np.uint8)
    mask = (base % 7).astype(np.uint8)
    random.seed(5)
    x, y = random.randint(0, 120 - 64), random.randint(0, 100 - 64)
    random.seed(5)
    out_img, out_mask = tr.pad_and_crop(img, mask, 64, 255)
    assert (out_mask == (base % 7)[y:y + 64, x:x + 64]).all()
    assert (out_img[..., 0] == (base % 251)[y:y + 64, x:x + 64]).all()


def test_hflip_flips_image_and_mask_together():
    cols = np.tile(np.arange(50, dtype=np.uint8), (20, 1))
    img = np.stack([cols] * 3, -1)
    mask = cols
    random.seed(0)
    flipped = 0
    for _ in range(40):
        a, m = tr.hflip(img, mask, 0.5)
        assert (a[..., 0] == m).all()
        flipped += int(m[0, 0] == 49)
    assert 5 < flipped < 35


def test_strong_view_keeps_size_and_changes_pixels():
    img = Image.fromarray(_pair(64, 64)[0])
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    views = [tr.strong_view(img.copy()) for _ in range(10)]
    assert all(v.size == (64, 64) and v.mode == 'RGB' for v in views)
    assert any(not np.array_equal(np.array(v), np.array(img)) for v in views)


def test_cutmix_box_area_shape_and_probability():
    size = 256
    random.seed(0), np.random.seed(0)
    boxes = [tr.cutmix_box(size, p=0.5) for _ in range(100)]
    assert all(b.shape == (size, size) and b.dtype == torch.float32 for b in boxes)
    boxes = [b.numpy() for b in boxes]
    empty = [b for b in boxes if not b.any()]
    assert 25 < len(empty) < 75
    for box in boxes:
        if not box.any():
            continue
        ys, xs = np.nonzero(box.any(1))[0], np.nonzero(box.any(0))[0]
        h, w = int(ys[-1] - ys[0] + 1), int(xs[-1] - xs[0] + 1)
        assert box.sum() == h * w                       # one filled rectangle
        assert 0.017 * size ** 2 <= h * w <= 0.4 * size ** 2
        assert 0.29 <= h / w <= 1 / 0.29


def test_cutmix_mixing_takes_partner_inside_box():
    """Our boxes with the methods' CutMix: box = 1 pixels come from the partner, others stay."""
    mixing = pytest.importorskip('semiseg.methods.mixing')
    random.seed(1), np.random.seed(1)
    boxes = torch.stack([tr.cutmix_box(16, p=1.0), torch.zeros(16, 16)])
    images, partner = torch.zeros(2, 3, 16, 16), torch.ones(2, 3, 16, 16)
    mixed = mixing.cutmix(images, partner, boxes)
    inside = boxes[0] == 1
    assert inside.any()
    assert (mixed[0][:, inside] == 1).all() and (mixed[0][:, ~inside] == 0).all()
    assert (mixed[1] == 0).all()


def test_normalize_imagenet_constants():
    mean = np.array(tr.IMAGENET_MEAN) * 255
    img = Image.fromarray(np.tile(np.round(mean).astype(np.uint8), (4, 4, 1)))
    out = tr.normalize(img)
    assert out.shape == (3, 4, 4) and out.dtype == torch.float32
    assert out.abs().max() < 0.01
    white = tr.normalize(Image.fromarray(np.full((2, 2, 3), 255, np.uint8)))
    expected = (1 - np.array(tr.IMAGENET_MEAN)) / np.array(tr.IMAGENET_STD)
    assert torch.allclose(white[:, 0, 0], torch.tensor(expected, dtype=torch.float32))


def test_reduce_zero_label_mapping():
    mask = np.array([[0, 1, 2, 150, 254, 255]], np.uint8)
    assert reduce_zero_label(mask).tolist() == [[255, 0, 1, 149, 253, 255]]


def test_photometric_distortion_keeps_shape():
    img, _ = _pair(32, 48)
    np.random.seed(0)
    out = tr.photometric_distortion(img)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_ratio_rescale_matches_mmcv_imrescale():
    """Same sizes and pixels as mmcv's keep-ratio rescale, which the release's Resize calls."""
    mmcv = pytest.importorskip('mmcv')
    rng = np.random.default_rng(0)
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(20, 900, size=2))
        ratio = float(rng.uniform(0.5, 2.0))
        target = (int(2048 * ratio), int(512 * ratio))
        expected = mmcv.imrescale(np.zeros((h, w), np.uint8), target).shape
        assert tr.ratio_rescale_size(h, w, (2048, 512), ratio) == expected
    img, mask = _pair(45, 70)
    np.random.seed(4)
    ratio = np.random.random_sample() * 1.5 + 0.5
    np.random.seed(4)
    out_img, out_mask = tr.ratio_rescale(img, mask, (256, 64), (0.5, 2.0))
    target = (int(256 * ratio), int(64 * ratio))
    assert np.array_equal(np.array(out_img), mmcv.imrescale(np.array(img), target))
    assert np.array_equal(np.array(out_mask),
                          mmcv.imrescale(np.array(mask), target, interpolation='nearest'))
