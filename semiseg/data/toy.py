"""The procedural toy dataset of experiment 0: textured shapes on textured backgrounds.

Classes (see `datasets.TOY_CLASSES`): background, disk, square, triangle, ring. Each shape
class has its own hue (jittered; two colours of that hue blended by a random texture: flat,
noise, stripes, gradient, checkers); backgrounds are greyish textures. Colour and shape both
carry the class, so a tiny model learns it within a CPU minute, yet it is not trivial: the
strong augmentations (colour jitter, greyscale) break the colour cue, leaving shape (rings vs
disks, small or occluded shapes cut by the crop, JPEG artefacts).

The four class hues are a quarter turn apart, the most a 4-colour code allows: the strong
colour jitter (hue ±0.25) then pushes a shape towards another class's colour as rarely as it
can. With them closer together (version 3: red and yellow 0.14 apart), SemiVL's consistency
training learned to call yellow rings red disks and fell below the supervised run.

Layout (VOC-like): `JPEGImages/*.jpg`, `SegmentationClass/*.png`, `splits/16/{labeled,
unlabeled}.txt` (16 / 180), `splits/val.txt` (48), `classes.txt` and
`text_embedding/toy_single.npy` (5×512 float16, L2-normalised rows).
"""
from __future__ import annotations

import colorsys
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from semiseg.data.datasets import TOY_CLASSES
from semiseg.data.errors import DataError
from semiseg.utils.cli import OneLineParser
from semiseg.utils.safe_yaml import read_json

logger = logging.getLogger(__name__)

TOY_VERSION = 4
MARKER = '.semiseg_toy.json'
N_LABELED, N_UNLABELED, N_VAL = 16, 180, 48
SPLIT = str(N_LABELED)
SIDE_RANGE = (64, 112)   # inclusive range of image height and width
EMBED_DIM = 512


# ----------------------------------------------------------------------------- drawing
CLASS_HUES = (None, 0.0, 0.25, 0.5, 0.75)   # red disks, lime squares, cyan triangles, violet rings


def _colours(cls: int, rng: np.random.Generator) -> np.ndarray:
    """Two RGB colours in [0, 1]: greyish for the background (cls 0), else near the class hue."""
    if cls == 0:
        hue, sat, val = rng.uniform(0, 1, 2), rng.uniform(0.0, 0.25, 2), rng.uniform(0.2, 0.9, 2)
    else:
        hue = CLASS_HUES[cls] + rng.uniform(-0.04, 0.04, 2)
        sat, val = rng.uniform(0.55, 1.0, 2), rng.uniform(0.55, 1.0, 2)
    return np.array([colorsys.hsv_to_rgb(h % 1.0, s, v) for h, s, v in zip(hue, sat, val)],
                    np.float32)


def _texture(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, cls: int) -> np.ndarray:
    """A (..., 3) float image in [0, 1]: two colours of class `cls` blended by a random pattern.

    `yy`, `xx` are the pixel coordinates (float32, any equal shapes) of the pixels to fill.
    """
    c1, c2 = _colours(cls, rng)
    kind = rng.integers(0, 4)
    theta = rng.uniform(0, np.pi)
    proj = xx * np.cos(theta) + yy * np.sin(theta)
    if kind == 0:       # flat
        t = np.zeros_like(yy)
    elif kind == 1:     # stripes
        period = rng.uniform(4, 16)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * proj / period + rng.uniform(0, 2 * np.pi))
    elif kind == 2:     # gradient
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    else:               # checker
        cell = int(rng.integers(4, 12))
        t = ((xx // cell + yy // cell) % 2).astype(np.float32)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    img += np.float32(rng.uniform(0.0, 0.08)) * rng.standard_normal(img.shape, np.float32)
    return img


def _shape_mask(cls: int, yy: np.ndarray, xx: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Boolean (h, w) region of one shape of class `cls` (1 disk, 2 square, 3 triangle, 4 ring)."""
    h, w = yy.shape
    r = rng.uniform(8, 0.38 * min(h, w))
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    dy, dx = yy - cy, xx - cx
    theta = rng.uniform(0, 2 * np.pi)
    if cls == 1:
        return dx ** 2 + dy ** 2 <= r ** 2
    if cls == 2:
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * r
    if cls == 3:  # equilateral triangle, circumradius r: three half-planes at the inradius r/2
        inside = np.ones(yy.shape, bool)
        for k in range(3):
            a = theta + 2 * np.pi * k / 3
            inside &= dx * np.cos(a) + dy * np.sin(a) <= r / 2
        return inside
    d2 = dx ** 2 + dy ** 2
    return (d2 <= r ** 2) & (d2 >= (r * rng.uniform(0.4, 0.65)) ** 2)


def _sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (uint8 RGB image, uint8 label mask) pair."""
    h, w = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, size=2))
    yy, xx = (g.astype(np.float32) for g in np.mgrid[0:h, 0:w])
    img = _texture(yy, xx, rng, 0)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        cls = int(rng.integers(1, len(TOY_CLASSES)))
        region = _shape_mask(cls, yy, xx, rng)
        if region.sum() < 30:   # mostly outside the image: skip rather than leave a sliver
            continue
        img[region] = _texture(yy[region], xx[region], rng, cls)
        mask[region] = cls
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), mask


def toy_text_embedding(seed: int = 0) -> np.ndarray:
    """(5, 512) float16 L2-normalised rows: a shared direction plus a class-specific one.

    Mimics CLIP text embeddings (pairwise cosine ≈ 0.2) while keeping rows clearly distinct.
    """
    rng = np.random.default_rng([seed, 1])
    rows = rng.normal(size=(len(TOY_CLASSES), EMBED_DIM))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    shared = rng.normal(size=EMBED_DIM)
    rows += 0.5 * shared / np.linalg.norm(shared)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float16)


def _write_dataset(out: Path, seed: int) -> None:
    rng = np.random.default_rng([seed, 0])
    (out / 'JPEGImages').mkdir(parents=True)
    (out / 'SegmentationClass').mkdir()
    lines = []
    for i in range(N_LABELED + N_UNLABELED + N_VAL):
        img, mask = _sample(rng)
        name = f'toy_{i:04d}'
        Image.fromarray(img).save(out / 'JPEGImages' / f'{name}.jpg', quality=90)
        Image.fromarray(mask).save(out / 'SegmentationClass' / f'{name}.png')
        lines.append(f'JPEGImages/{name}.jpg SegmentationClass/{name}.png\n')
    (out / 'splits' / SPLIT).mkdir(parents=True)
    n_train = N_LABELED + N_UNLABELED
    (out / 'splits' / SPLIT / 'labeled.txt').write_text(''.join(lines[:N_LABELED]))
    (out / 'splits' / SPLIT / 'unlabeled.txt').write_text(''.join(lines[N_LABELED:n_train]))
    (out / 'splits' / 'val.txt').write_text(''.join(lines[n_train:]))
    (out / 'classes.txt').write_text(''.join(f'{c}\n' for c in TOY_CLASSES))
    (out / 'text_embedding').mkdir()
    np.save(out / 'text_embedding' / 'toy_single.npy', toy_text_embedding(seed))
    # the marker goes last: a folder without it was never finished
    (out / MARKER).write_text(json.dumps({'version': TOY_VERSION, 'seed': seed}))


# ----------------------------------------------------------------------------- install
def _marker(root: Path) -> dict | None:
    try:
        return read_json(root / MARKER)
    except (OSError, ValueError):
        return None


def _is_current(root: Path, seed: int | None) -> bool:
    """The folder holds this toy version, drawn with `seed` (any seed when `seed` is None)."""
    marker = _marker(root)
    if not isinstance(marker, dict) or marker.get('version') != TOY_VERSION:
        return False
    return seed is None or marker.get('seed') == seed


def ensure_toy_dataset(root: str | Path, seed: int | None = None) -> Path:
    """Generate the toy dataset in `root` unless an up-to-date copy is already there.

    `seed` None accepts whichever draw the folder holds (seed 0 when it has to generate one),
    so a draw made with `python -m semiseg.data.toy ROOT --seed N` is what runs then train on;
    an explicit seed replaces a different draw.

    Idempotent and safe under concurrency: the data is written to a temporary sibling folder
    and renamed into place; an older toy version is replaced, but a non-empty folder that is
    not a toy dataset is never touched (DataError).
    """
    root = Path(root).expanduser().absolute()
    if _is_current(root, seed):
        return root
    seed = 0 if seed is None else seed
    if root.exists() and any(root.iterdir()) and _marker(root) is None:
        raise DataError(f'{root} exists and is not a toy dataset (no {MARKER}); point data_root '
                        'at an empty or new folder for the toy dataset')
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f'.{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}'
    try:
        _write_dataset(tmp, seed)
        _install(tmp, root, seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info('toy dataset ready in %s (version %d, seed %d)', root, TOY_VERSION, seed)
    return root


def _install(tmp: Path, root: Path, seed: int) -> None:
    """Rename `tmp` to `root`, replacing an outdated toy dataset; tolerate a concurrent winner."""
    try:
        os.rename(tmp, root)        # succeeds when root is absent or an empty folder
        return
    except OSError:
        pass
    if _is_current(root, seed):     # another process finished first
        return
    old = root.parent / f'.{root.name}.old-{uuid.uuid4().hex[:8]}'
    try:
        os.rename(root, old)        # outdated toy version: move it aside
    except FileNotFoundError:
        pass
    try:
        os.rename(tmp, root)
    except OSError as err:
        if not _is_current(root, seed):
            raise DataError(f'could not install the toy dataset into {root}: {err}') from err
    finally:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m semiseg.data.toy ROOT [--seed N]`: (re)generate one draw of the toy dataset."""
    parser = OneLineParser(
        prog='python -m semiseg.data.toy', description=main.__doc__.split(': ', 1)[1])
    parser.add_argument('root', help='dataset folder, e.g. ~/data/toy (the toy data_root of exp 0)')
    parser.add_argument('--seed', type=int, default=0, help='which draw (default: 0, the demo data)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    try:
        root = ensure_toy_dataset(args.root, args.seed)
    except DataError as err:
        parser.exit(2, f'error: {err}\n')
    print(f'toy dataset (version {TOY_VERSION}, seed {args.seed}) in {root}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
