"""build_datasets / SemiDataset: item formats (docs/ARCHITECTURE.md §3), padding markers, label handling,
val resize and reproducibility under a seed."""
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from semiseg.data import AugConfig, SemiDataset, seed_worker
from semiseg.data.build import build_datasets as build_data
from semiseg.data.splits import read_split
from semiseg.methods.registry import METHODS

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


def build_datasets(cfg: dict, method: str = 'unimatch'):
    """(labeled, unlabeled, val) with the views of `method`."""
    data = build_data(cfg, METHODS[method])
    return data.labeled, data.unlabeled, data.val


def _val_copies(root: Path, val: list[str], labeled: list[str]) -> list[str]:
    """Val lines that are also labeled, pointed at copies under val/ (labeled and val may not share images)."""
    out = []
    for line in val:
        if line in labeled:
            line = ' '.join(f'val/{rel}' for rel in line.split())
            for rel in line.split():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / rel[len('val/'):], root / rel)
        out.append(line)
    return out


def _cfg(root: Path, labeled: list[str], unlabeled: list[str], val: list[str], **aug) -> dict:
    val = _val_copies(root, val, labeled)
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
    val_lines = [_write(tmp_path, f'v{i}', 40, 50) for i in range(2)]
    train_l, train_u, val = build_datasets(_cfg(tmp_path, lab, unl, val_lines))
    assert len(train_u) == 7 and len(train_l) == 7 and len(val) == 2
    assert [e.image for e in train_l.entries] == ['img/l0.png', 'img/l1.png', 'img/l2.png'] * 2 \
        + ['img/l0.png']
    item = train_l[0]
    assert list(item) == ['img_x', 'mask_x']
    assert item['img_x'].shape == (3, 32, 32) and item['img_x'].dtype == torch.float32
    assert item['mask_x'].shape == (32, 32) and item['mask_x'].dtype == torch.int64
    item = train_u[0]
    assert list(item) == ['img_w', 'img_s1', 'img_s2', 'ignore', 'box1', 'box2']
    for view in ('img_w', 'img_s1', 'img_s2'):
        assert item[view].shape == (3, 32, 32) and item[view].dtype == torch.float32
    assert item['ignore'].shape == (32, 32) and item['ignore'].dtype == torch.int64
    assert set(item['ignore'].unique().tolist()) <= {0, 255}
    for box in ('box1', 'box2'):
        assert item[box].shape == (32, 32) and item[box].dtype == torch.float32
    vimg, vmask, vid = val[1].values()
    assert vimg.shape == (3, 40, 50) and vmask.shape == (40, 50) and vmask.dtype == torch.int64
    assert vid == 'img/v1.png'


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
        mask = train_l[0]['mask_x']
        assert (mask == 255).sum() == 32 * 32 - 20 * 24 + 20 * 4
        assert (mask[20:] == 255).all()
        random.seed(seed)
        img_w, ignore = train_u[0]['img_w'], train_u[0]['ignore']
        assert (ignore == 255).sum() == 32 * 32 - 20 * 24
        assert (ignore[20:] == 255).all() and (ignore[:20][ignore[:20] != 255] == 0).all()
        # padded image pixels are 0 before normalisation
        assert torch.allclose(img_w[:, 25, 0], (-torch.tensor([0.485, 0.456, 0.406]) /
                                                 torch.tensor([0.229, 0.224, 0.225])))


def test_val_resize_image_only_with_img_scale(tmp_path):
    line = _write(tmp_path, 'v', 30, 45)
    _, _, val = build_datasets(_cfg(tmp_path, [line], [line], [line], img_scale=[2048, 512]))
    img, mask = val[0]['img'], val[0]['mask']
    assert img.shape == (3, 512, 768) and mask.shape == (30, 45)


def test_ratio_resize_training_with_img_scale(tmp_path):
    line = _write(tmp_path, 't', 30, 45)
    train_l, _, _ = build_datasets(_cfg(tmp_path, [line], [line], [line],
                                        img_scale=[128, 32], crop_size=24))
    img, mask = train_l[0]['img_x'], train_l[0]['mask_x']
    assert img.shape == (3, 24, 24) and mask.shape == (24, 24)


def test_reduce_zero_label_applied_before_transforms(tmp_path):
    gt = np.array([[0, 1, 2, 255]], np.uint8).repeat(4, 0)
    line = _write(tmp_path, 'ade', 4, 4, gt)
    _cfg(tmp_path, [line], [line], [line])
    entries = read_split(tmp_path / 'splits' / 'val.txt')
    aug = AugConfig(crop_size=4, reduce_zero_label=True)
    mask = SemiDataset(tmp_path, entries, 'val', aug)[0]['mask']
    assert mask[0].tolist() == [255, 0, 1, 255]
    assert AugConfig.from_cfg({'crop_size': 4}, reduce_zero_label=True).reduce_zero_label


def test_same_seed_same_augmentation(tmp_path):
    lines = [_write(tmp_path, f'u{i}', 40, 50) for i in range(2)]
    _, train_u, _ = build_datasets(_cfg(tmp_path, lines, lines, lines))

    def draw():
        random.seed(7), np.random.seed(7), torch.manual_seed(7)
        return train_u[1]
    a, b = draw(), draw()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train_u[1]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_seed_worker_makes_loader_reproducible(tmp_path):
    lines = [_write(tmp_path, f'u{i}', 40, 50) for i in range(4)]
    _, train_u, _ = build_datasets(_cfg(tmp_path, lines, lines, lines))

    def batches():
        loader = DataLoader(train_u, batch_size=2, num_workers=1, worker_init_fn=seed_worker,
                            generator=torch.Generator().manual_seed(3))
        return [b for b in loader]
    first, second = batches(), batches()
    for x, y in zip(first, second):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_only_the_views_a_method_needs_are_built_in_the_release_draw_order(tmp_path):
    lines = [_write(tmp_path, f'u{i}', 40, 50) for i in range(2)]
    cfg = _cfg(tmp_path, lines, lines, lines)

    def draw(method):
        train_l, train_u, _ = build_datasets(cfg, method)
        random.seed(3), np.random.seed(3), torch.manual_seed(3)
        return train_u[0] if train_u is not None else train_l[0]
    full, fixmatch = draw('unimatch'), draw('fixmatch')
    assert list(fixmatch) == ['img_w', 'img_s1', 'ignore', 'box1']
    assert all(torch.equal(fixmatch[k], full[k]) for k in fixmatch)   # same draws, fewer views
    sup_l, sup_u, _ = build_datasets(cfg, 'supervised')
    assert sup_u is None and list(sup_l[0]) == ['img_x', 'mask_x'] and len(sup_l) == len(lines)
    strong = SemiDataset(tmp_path, read_split(tmp_path / 'splits' / 'val.txt'), 'train_l', AugConfig(32),
                         views=('img_x', 'img_x_s', 'mask_x'))[0]
    assert strong['img_x'].shape == strong['img_x_s'].shape == (3, 32, 32)
