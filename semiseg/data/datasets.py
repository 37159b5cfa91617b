"""Static facts about each dataset: folder, classes, label handling, text-embedding prefix, palette.

`DATASETS` holds the built-in datasets; `dataset_info(name, data_root)` also resolves custom
datasets, whose class names come from `{data_root}/classes.txt` (one name per line) and whose
optional palette comes from `{data_root}/palette.txt` (one `r g b` line per class).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semiseg.data.class_definitions import (ADE_CLASS_NAMES, CITYSCAPES_CLASS_NAMES,
                                            COCO_CLASS_NAMES, PASCAL_CLASS_NAMES)
from semiseg.data.errors import DataError

IGNORE_INDEX = 255      # ignored label id in ground truth (VOC boundaries, padding of train_l)
UNLABELED_PAD = 254     # padding marker of unlabeled crops; becomes ignore_mask = 255

VOC_CLASSES = tuple(PASCAL_CLASS_NAMES)

CITYSCAPES_CLASSES = tuple(CITYSCAPES_CLASS_NAMES)

COCO_CLASSES = tuple(COCO_CLASS_NAMES)

ADE_CLASSES = tuple(name.strip() for name in ADE_CLASS_NAMES)  # the prompt keeps 'bed '

# The procedural demo dataset of experiment 0 (semiseg.data.toy draws these shapes).
TOY_CLASSES = ('background', 'disk', 'square', 'triangle', 'ring')

CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32))

IGNORE_COLOR = (224, 224, 192)  # VOC's colour for label 255, used for every generated palette


def voc_palette() -> np.ndarray:
    """The standard PASCAL VOC colour map (256×3 uint8; 255 -> (224, 224, 192))."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        c, r, g, b = label, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[label] = (r, g, b)
    return palette


def cityscapes_palette() -> np.ndarray:
    """Cityscapes' official train-id colours (256×3 uint8; unused ids and 255 are black)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:len(CITYSCAPES_COLORS)] = CITYSCAPES_COLORS
    return palette


def generated_palette(nclass: int, key: str) -> np.ndarray:
    """A deterministic palette of distinct-looking random colours for `nclass` classes.

    Seeded from a hash of `key` so a dataset always gets the same colours on every machine.
    """
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], 'little')
    rng = np.random.default_rng(seed)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:min(nclass, 255)] = rng.integers(0, 256, size=(min(nclass, 255), 3))
    palette[IGNORE_INDEX] = IGNORE_COLOR
    return palette


def colorize(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map an (H, W) label map to an (H, W, 3) uint8 RGB image with a 256-entry palette."""
    return palette[np.asarray(mask).astype(np.int64) & 255]


@dataclass(frozen=True)
class DatasetInfo:
    """What the pipeline and the logs need to know about one dataset."""

    folder: str                   # folder under the data directory: data_root = ~/data/<folder>/
    nclass: int                   # number of classes the model predicts
    class_names: tuple[str, ...]  # one name per class id (logs, per-class IoU keys)
    reduce_zero_label: bool       # ADE: label 0 is 'other' -> 255, ids shift down by one
    text_prefix: str              # text embeddings are `<text_prefix>_<variant>.npy`
    palette: np.ndarray = field(repr=False, compare=False)  # (256, 3) uint8 colour per label id

    def __post_init__(self) -> None:
        if len(self.class_names) != self.nclass:
            raise ValueError(f'{self.folder}: {len(self.class_names)} class names for '
                             f'nclass={self.nclass}')


DATASETS: dict[str, DatasetInfo] = {
    'pascal': DatasetInfo('voc', 21, VOC_CLASSES, False, 'voc12_wbg', voc_palette()),
    'cityscapes': DatasetInfo('cityscapes', 19, CITYSCAPES_CLASSES, False, 'cityscapes',
                              cityscapes_palette()),
    'coco': DatasetInfo('coco', 81, COCO_CLASSES, False, 'coco',
                        generated_palette(81, 'coco')),
    'ade': DatasetInfo('ADEChallengeData2016', 150, ADE_CLASSES, True, 'ade',
                       generated_palette(150, 'ade')),
    'toy': DatasetInfo('toy', len(TOY_CLASSES), TOY_CLASSES, False, 'toy', voc_palette()),
}


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty, stripped lines with their 1-based line numbers."""
    try:
        text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError as err:
        raise DataError(f'{path} is not UTF-8 text ({err}); save it as UTF-8') from err
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_class_names(path: Path) -> tuple[str, ...]:
    """Class names from a `classes.txt` (one per line, blank lines skipped)."""
    if not path.is_file():
        raise DataError(f'class list {path} not found: a custom dataset needs a classes.txt '
                        'in its data_root with one class name per line (class id = line order)')
    names = tuple(line for _, line in _read_lines(path))
    if not names:
        raise DataError(f'class list {path} is empty: write one class name per line')
    if len(names) > 255:
        raise DataError(f'class list {path} has {len(names)} classes; at most 254 are supported '
                        '(label ids 254 and 255 are reserved for padding and ignore)')
    return names


def read_palette(path: Path, nclass: int) -> np.ndarray:
    """A (256, 3) palette from `palette.txt`: one `r g b` line (0-255) per class."""
    palette = generated_palette(nclass, path.parent.name)
    rows = _read_lines(path)
    if len(rows) != nclass:
        raise DataError(f'{path} has {len(rows)} colours for {nclass} classes; write one '
                        '"r g b" line per class in classes.txt order')
    for label, (lineno, line) in enumerate(rows):
        parts = line.replace(',', ' ').split()
        try:
            rgb = [int(p) for p in parts]
        except ValueError:
            rgb = []
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise DataError(f'{path}:{lineno}: expected "r g b" with three integers in 0..255, '
                            f'got {line!r}')
        palette[label] = rgb
    return palette


def dataset_info(name: str, data_root: str | Path | None = None) -> DatasetInfo:
    """The `DatasetInfo` of a built-in dataset, or of a custom one read from `data_root`."""
    if name in DATASETS:
        return DATASETS[name]
    if data_root is None:
        raise DataError(f'unknown dataset {name!r}: built-in datasets are '
                        f'{", ".join(DATASETS)}; a custom dataset needs a data_root with a '
                        'classes.txt')
    root = Path(data_root).expanduser()
    names = read_class_names(root / 'classes.txt')
    palette_file = root / 'palette.txt'
    palette = (read_palette(palette_file, len(names)) if palette_file.is_file()
               else generated_palette(len(names), name))
    return DatasetInfo(root.name, len(names), names, False, name, palette)
