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

from semiseg.data.errors import DataError

IGNORE_INDEX = 255      # ignored label id in ground truth (VOC boundaries, padding of train_l)
UNLABELED_PAD = 254     # padding marker of unlabeled crops; becomes ignore_mask = 255

VOC_CLASSES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
    'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
    'train', 'tvmonitor')

CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle')

COCO_CLASSES = (
    'background', 'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck',
    'boat', 'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book',
    'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')

ADE_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain',
    'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug',
    'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub',
    'railing', 'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter',
    'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs',
    'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench',
    'countertop', 'stove', 'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar',
    'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier', 'awning',
    'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track', 'apparel', 'pole',
    'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van',
    'ship', 'fountain', 'conveyer belt', 'canopy', 'washer', 'plaything', 'swimming pool',
    'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball',
    'food', 'step', 'tank', 'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake',
    'dishwasher', 'screen', 'blanket', 'sculpture', 'hood', 'sconce', 'vase', 'traffic light',
    'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate', 'monitor', 'bulletin board', 'shower',
    'radiator', 'glass', 'clock', 'flag')

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
