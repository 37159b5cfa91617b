"""The procedural toy dataset of experiment 0: layout, counts, classes, idempotence, speed."""
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from semiseg.data import DataError
from semiseg.data.build import build_datasets
from semiseg.data.datasets import TOY_CLASSES
from semiseg.data.toy import (
    MARKER,
    N_LABELED,
    N_UNLABELED,
    N_VAL,
    SPLIT,
    TOY_VERSION,
    ensure_toy_dataset,
    toy_text_embedding,
)
from semiseg.methods.registry import METHODS

N_IMAGES = N_LABELED + N_UNLABELED + N_VAL


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'toy'
    start = time.process_time()
    ensure_toy_dataset(root)
    return root, time.process_time() - start


def _lines(path):
    return [ln.split() for ln in path.read_text().splitlines() if ln.strip()]


def test_layout_counts_and_speed(toy):
    root, cpu_s = toy
    assert cpu_s < 5.0
    assert (N_LABELED, N_UNLABELED, N_VAL, SPLIT) == (16, 180, 48, '16')
    assert len(_lines(root / 'splits' / SPLIT / 'labeled.txt')) == N_LABELED
    assert len(_lines(root / 'splits' / SPLIT / 'unlabeled.txt')) == N_UNLABELED
    assert len(_lines(root / 'splits' / 'val.txt')) == N_VAL
    assert len(list((root / 'JPEGImages').glob('*.jpg'))) == N_IMAGES
    assert len(list((root / 'SegmentationClass').glob('*.png'))) == N_IMAGES
    assert (root / 'classes.txt').read_text().split('\n')[:5] == list(TOY_CLASSES)
    all_lines = [tuple(x) for f in (f'{SPLIT}/labeled.txt', f'{SPLIT}/unlabeled.txt', 'val.txt')
                 for x in _lines(root / 'splits' / f)]
    assert len(set(all_lines)) == N_IMAGES                 # disjoint splits


def test_images_sizes_and_classes(toy):
    root, _ = toy
    sizes = set()
    for split in (f'{SPLIT}/labeled.txt', 'val.txt'):
        present = set()
        for img_rel, mask_rel in _lines(root / 'splits' / split):
            img, mask = Image.open(root / img_rel), np.array(Image.open(root / mask_rel))
            assert img.mode == 'RGB' and mask.shape == (img.height, img.width)
            assert 64 <= img.width <= 112 and 64 <= img.height <= 112
            sizes.add(img.size)
            present |= set(np.unique(mask).tolist())
        assert present == set(range(len(TOY_CLASSES))), split
    assert len(sizes) > 20                                  # varied sizes


def test_text_embedding(toy):
    root, _ = toy
    emb = np.load(root / 'text_embedding' / 'toy_single.npy')
    assert emb.shape == (5, 512) and emb.dtype == np.float16
    e = emb.astype(np.float32)
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=2e-3)
    cos = e @ e.T
    assert (cos[~np.eye(5, dtype=bool)] < 0.5).all()
    assert np.array_equal(emb, toy_text_embedding(0))
    assert not np.array_equal(emb, toy_text_embedding(1))


def test_idempotent_and_regenerates_outdated(tmp_path):
    root = tmp_path / 'toy'
    ensure_toy_dataset(root)
    marker = root / MARKER
    stamp = marker.stat().st_mtime_ns
    first = (root / 'JPEGImages' / 'toy_0000.jpg').read_bytes()
    ensure_toy_dataset(root)
    assert marker.stat().st_mtime_ns == stamp
    marker.write_text(json.dumps({'version': TOY_VERSION - 1, 'seed': 0}))
    (root / 'stale.txt').write_text('from an old version')
    ensure_toy_dataset(root)
    assert json.loads(marker.read_text())['version'] == TOY_VERSION
    assert not (root / 'stale.txt').exists()
    assert (root / 'JPEGImages' / 'toy_0000.jpg').read_bytes() == first     # deterministic
    assert [p.name for p in tmp_path.iterdir()] == ['toy']                  # no temp leftovers


def test_concurrent_calls(tmp_path):
    root = tmp_path / 'toy'
    errors = []

    def run():
        try:
            ensure_toy_dataset(root)
        except Exception as err:  # collected and asserted below
            errors.append(err)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(list((root / 'JPEGImages').glob('*.jpg'))) == N_IMAGES
    assert [p.name for p in tmp_path.iterdir()] == ['toy']


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / 'toy').mkdir()
    (tmp_path / 'toy' / 'precious.txt').write_text('user data')
    with pytest.raises(DataError, match='not a toy dataset'):
        ensure_toy_dataset(tmp_path / 'toy')
    assert (tmp_path / 'toy' / 'precious.txt').exists()


def test_build_datasets_on_toy(toy):
    cfg = dict(dataset='toy', data_root=str(toy[0]), nclass=5, split=SPLIT,
               img_scale=None, scale_ratio_range=(0.5, 2.0), crop_size=64)
    data = build_datasets(cfg, METHODS['unimatch'])
    assert (len(data.labeled), len(data.unlabeled), len(data.val)) == (N_UNLABELED, N_UNLABELED, N_VAL)
    img, mask = data.labeled[0]['img_x'], data.labeled[0]['mask_x']
    assert img.shape == (3, 64, 64) and int(mask.max()) <= 255


def test_other_draw_is_kept_until_a_seed_is_asked_for(tmp_path, capsys):
    from semiseg.data.toy import main
    root = tmp_path / 'toy'
    assert main([str(root), '--seed', '2']) == 0
    assert 'seed 2' in capsys.readouterr().out
    drawn = (root / 'JPEGImages' / 'toy_0000.jpg').read_bytes()
    ensure_toy_dataset(root)                      # what a run does: use the draw that is there
    assert json.loads((root / MARKER).read_text()) == {'version': TOY_VERSION, 'seed': 2}
    assert (root / 'JPEGImages' / 'toy_0000.jpg').read_bytes() == drawn
    ensure_toy_dataset(root, seed=0)              # an explicit seed replaces the draw
    assert json.loads((root / MARKER).read_text())['seed'] == 0
    assert (root / 'JPEGImages' / 'toy_0000.jpg').read_bytes() != drawn
