"""augment=fast: the release's draws applied with OpenCV / lookup kernels, equal in distribution to the
release path (same parameters, pixels within a few grey levels, same image statistics); image views
travel as uint8 and are normalised by batch_to_device to the release path's floats exactly."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from semiseg.data import photometric as ph
from semiseg.data import transforms as tr
from semiseg.data.semi_dataset import AugConfig, SemiDataset
from semiseg.data.voc_like import _image, make_voc_like
from semiseg.engine.loaders import batch_to_device, seed_sample

torch.set_num_threads(1)


def _images(n, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return [_image(rng, h, w) for _ in range(n)]


@pytest.mark.parametrize('factor', [0.5, 0.73, 1.0, 1.21, 1.5])
def test_brightness_contrast_saturation_are_pils_exactly(factor):
    for arr in _images(3):
        img = Image.fromarray(arr)
        assert np.array_equal(ph._brightness(arr, factor), np.asarray(TF.adjust_brightness(img, factor)))
        assert np.array_equal(ph._contrast(arr, factor), np.asarray(TF.adjust_contrast(img, factor)))
        assert np.array_equal(ph._saturation(arr, factor), np.asarray(TF.adjust_saturation(img, factor)))


def test_hue_lut_shift_is_torchvisions_amount():
    for hue in (-0.25, -0.1, -0.001, 0.0, 0.07, 0.25):
        expected = int(np.int32(hue * 255).astype(np.uint8))
        lut = ph.hue_lut(hue)
        assert lut.shape == (256, 1, 3) and lut.dtype == np.uint8
        assert int(lut[0, 0, 0]) == expected and (lut[:, 0, 1] == np.arange(256)).all()


def test_fixed_parameters_pixels_close_to_release():
    """Each drawn chain on the same image: mean |diff| < 2 grey levels, no bias, rare large diffs."""
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    diffs = []
    for arr in _images(40, seed=1):
        p = ph.draw_strong_params()
        ref = np.asarray(ph.apply_strong_release(Image.fromarray(arr), p)).astype(np.int16)
        fast = ph.apply_strong_fast(arr, p).astype(np.int16)
        assert fast.shape == ref.shape and fast.dtype == np.int16
        d = fast - ref
        assert np.abs(d).mean() < 2.5, p
        diffs.append(d.ravel())
    d = np.concatenate(diffs)
    assert abs(d.mean()) < 0.5 and np.abs(d).mean() < 1.0
    assert np.percentile(np.abs(d), 99) <= 8


def test_fast_dataset_same_draws_and_image_statistics(tmp_path):
    """Same crops, boxes and padding as the release path for every seed; strong views with the same
    per-channel mean and spread over many samples."""
    entries = make_voc_like(tmp_path, 8, size=(60, 80), seed=3)
    release = SemiDataset(tmp_path, entries, 'train_u', AugConfig(crop_size=64))
    fast = SemiDataset(tmp_path, entries, 'train_u', AugConfig(crop_size=64, augment='fast'))
    stats = {'release': [], 'fast': []}
    for epoch in range(12):
        for i in range(len(entries)):
            out = {}
            for name, ds in (('release', release), ('fast', fast)):
                seed_sample(0, 1, epoch, i)
                out[name] = ds[i]
            assert all(out['fast'][k].dtype == torch.uint8 for k in ('img_w', 'img_s1', 'img_s2'))
            out['fast'] = batch_to_device({k: v[None] for k, v in out['fast'].items()}, torch.device('cpu'))
            out['fast'] = {k: v[0] for k, v in out['fast'].items()}
            for name in stats:
                stats[name].append(torch.stack([out[name]['img_s1'], out[name]['img_s2']]))
            for key in ('box1', 'box2'):
                assert torch.equal(out['release'][key], out['fast'][key])
            assert (out['release']['ignore'] == out['fast']['ignore']).float().mean() > 0.97
            assert (out['release']['img_w'] - out['fast']['img_w']).abs().mean() < 0.2   # resize kernels only
    rel, fst = torch.cat(stats['release']), torch.cat(stats['fast'])
    std = torch.tensor([0.229, 0.224, 0.225])
    mean_diff = (rel.mean(dim=(0, 2, 3)) - fst.mean(dim=(0, 2, 3))) * std * 255
    spread_diff = (rel.std(dim=(0, 2, 3)) - fst.std(dim=(0, 2, 3))) * std * 255
    assert mean_diff.abs().max() < 1.0, mean_diff        # grey levels
    assert spread_diff.abs().max() < 1.0, spread_diff


def test_uint8_views_normalised_by_batch_to_device_exactly():
    arrs = _images(3, seed=4)
    batch = {'img_w': torch.stack([torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in arrs]),
             'mask_x': torch.zeros(3, 48, 64, dtype=torch.int64)}
    out = batch_to_device(batch, torch.device('cpu'))
    assert torch.equal(out['img_w'], torch.stack([tr.normalize(a) for a in arrs]))
    assert torch.equal(out['mask_x'], batch['mask_x'])
