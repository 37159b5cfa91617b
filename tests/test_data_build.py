"""build_datasets / SemiDataset: item formats (ARCHITECTURE §3), padding markers, label handling,
val resize and reproducibility under a seed."""
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from semiseg.data import AugConfig, SemiDataset, build_datasets, seed_worker
from semiseg.data.splits import read_split

torch.set_num_threads(1)


def _write(root: Path, name: str, h: int, w: int, mask: np.ndarray | None = None) -> str:
    (root / 'img').mkdir(parents=True, exist_ok=True)
    (root / 'gt').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(name) + h * w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(img).save(root / 'img' / f'{name}.png')
    if mask is None:
        mask = rng.integers(0, 3, (h, w), dtype=np.uint8)
    Image.fromarray(mask).save(root / 'gt' / f'{name}.png')
    return f'img/{name}.png gt/{name}.png'


def _cfg(root: Path, labeled: list[str], unlabeled: list[str], val: list[str], **aug) -> dict:
    (root / 'splits' / 's').mkdir(parents=True, exist_ok=True)
    (root / 'splits' / 's' / 'labeled.txt').write_text('\n'.join(labeled) + '\n')
    (root / 'splits' / 's' / 'unlabeled.txt').write_text('\n'.join(unlabeled) + '\n')
    (root / 'splits' / 'val.txt').write_text('\n'.join(val) + '\n')
    (root / 'classes.txt').write_text('a\nb\nc\n')
    cfg = dict(dataset='custom', data_root=str(root), nclass=3, split='s', img_scale=None,
               scale_ratio_range=(0.5, 2.0), crop_size=32, labeled_photometric_distortion=False)
    cfg.update(aug)
    return cfg


def test_item_formats_and_labeled_repetition(tmp_path):
    lab = [_write(tmp_path, f'l{i}', 40, 50) for i in range(3)]
    unl = [_write(tmp_path, f'u{i}', 30 + i, 60) for i in range(7)]
    train_l, train_u, val = build_datasets(_cfg(tmp_path, lab, unl, lab[:2]))
    assert len(train_u) == 7 and len(train_l) == 7 and len(val) == 2
    assert [e.image for e in train_l.entries] == ['img/l0.png', 'img/l1.png', 'img/l2.png'] * 2 \
        + ['img/l0.png']
    img, mask = train_l[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32
    assert mask.shape == (32, 32) and mask.dtype == torch.int64
    item = train_u[0]
    assert len(item) == 6
    for view in item[:3]:
        assert view.shape == (3, 32, 32) and view.dtype == torch.float32
    assert item[3].shape == (32, 32) and item[3].dtype == torch.int64
    assert set(item[3].unique().tolist()) <= {0, 255}
    for box in item[4:]:
        assert box.shape == (32, 32) and box.dtype == torch.float32
    vimg, vmask, vid = val[1]
    assert vimg.shape == (3, 40, 50) and vmask.shape == (40, 50) and vmask.dtype == torch.int64
    assert vid == 'img/l1.png'


def test_truncation_when_labeled_longer(tmp_path):
    lab = [_write(tmp_path, f'l{i}', 20, 20) for i in range(5)]
    unl = [_write(tmp_path, f'u{i}', 20, 20) for i in range(2)]
    train_l, train_u, _ = build_datasets(_cfg(tmp_path, lab, unl, lab))
    assert len(train_l) == len(train_u) == 2


def test_padding_markers_labeled_255_unlabeled_ignore(tmp_path):
    """Small images (no rescale: ratio range (1, 1)) are padded: 255 in train_l masks; the
    unlabeled ignore mask is 255 exactly on the padding, not on the GT's own 255 pixels."""
    gt = np.zeros((20, 24), np.uint8)
    gt[:, :4] = 255                               # VOC-style boundary pixels in the GT
    line = _write(tmp_path, 'small', 20, 24, gt)
    train_l, train_u, _ = build_datasets(_cfg(tmp_path, [line], [line], [line],
                                              scale_ratio_range=(1.0, 1.0)))
    for seed in range(4):
        random.seed(seed)
        _, mask = train_l[0]
        assert (mask == 255).sum() == 32 * 32 - 20 * 24 + 20 * 4
        assert (mask[20:] == 255).all()
        random.seed(seed)
        img_w, _, _, ignore, _, _ = train_u[0]
        assert (ignore == 255).sum() == 32 * 32 - 20 * 24
        assert (ignore[20:] == 255).all() and (ignore[:20][ignore[:20] != 255] == 0).all()
        # padded image pixels are 0 before normalisation
        assert torch.allclose(img_w[:, 25, 0], (-torch.tensor([0.485, 0.456, 0.406]) /
                                                 torch.tensor([0.229, 0.224, 0.225])))


def test_val_resize_image_only_with_img_scale(tmp_path):
    line = _write(tmp_path, 'v', 30, 45)
    _, _, val = build_datasets(_cfg(tmp_path, [line], [line], [line], img_scale=[2048, 512]))
    img, mask, _ = val[0]
    assert img.shape == (3, 512, 768) and mask.shape == (30, 45)


def test_ratio_resize_training_with_img_scale(tmp_path):
    line = _write(tmp_path, 't', 30, 45)
    train_l, _, _ = build_datasets(_cfg(tmp_path, [line], [line], [line],
                                        img_scale=[128, 32], crop_size=24))
    img, mask = train_l[0]
    assert img.shape == (3, 24, 24) and mask.shape == (24, 24)


def test_reduce_zero_label_applied_before_transforms(tmp_path):
    gt = np.array([[0, 1, 2, 255]], np.uint8).repeat(4, 0)
    line = _write(tmp_path, 'ade', 4, 4, gt)
    _cfg(tmp_path, [line], [line], [line])
    entries = read_split(tmp_path / 'splits' / 'val.txt')
    aug = AugConfig(crop_size=4, reduce_zero_label=True)
    _, mask, _ = SemiDataset(tmp_path, entries, 'val', aug)[0]
    assert mask[0].tolist() == [255, 0, 1, 255]
    assert AugConfig.from_cfg({'crop_size': 4}, reduce_zero_label=True).reduce_zero_label


def test_same_seed_same_augmentation(tmp_path):
    lines = [_write(tmp_path, f'u{i}', 40, 50) for i in range(2)]
    _, train_u, _ = build_datasets(_cfg(tmp_path, lines, lines, lines))

    def draw():
        random.seed(7), np.random.seed(7), torch.manual_seed(7)
        return train_u[1]
    a, b = draw(), draw()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = train_u[1]
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_seed_worker_makes_loader_reproducible(tmp_path):
    lines = [_write(tmp_path, f'u{i}', 40, 50) for i in range(4)]
    _, train_u, _ = build_datasets(_cfg(tmp_path, lines, lines, lines))

    def batches():
        loader = DataLoader(train_u, batch_size=2, num_workers=1, worker_init_fn=seed_worker,
                            generator=torch.Generator().manual_seed(3))
        return [b for b in loader]
    first, second = batches(), batches()
    for x, y in zip(first, second):
        assert all(torch.equal(u, v) for u, v in zip(x, y))
