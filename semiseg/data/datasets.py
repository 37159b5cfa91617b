"""The dataset registry: every fact about a dataset in one `DatasetInfo`.

Folder, classes (display names, CLIP prompt names, class definitions), label rules, text-embedding
prefix, palette, official split names and the short name used in run names. Experiments, models,
text embeddings and split fetching all read it. `DATASETS` holds the built-in datasets;
`dataset_info(name, data_root)` also resolves a custom dataset: a folder in the same layout with a
`classes.txt` (one class name per line; the class count comes from it) and optionally a
`palette.txt` (one `r g b` line per class).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semiseg.data import class_definitions as defs
from semiseg.data.errors import DataError
from semiseg.utils.imaging import generated_palette, voc_palette
from semiseg.utils.labels import IGNORE_INDEX, MAX_CLASSES, UNLABELED_PAD
from semiseg.utils.textfiles import TextFileError, read_lines

__all__ = ['DATASETS', 'DatasetInfo', 'dataset_info', 'dataset_names', 'read_class_names']

CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32))


def cityscapes_palette() -> np.ndarray:
    """Cityscapes' official train-id colours (256x3 uint8; unused ids and 255 are black)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:len(CITYSCAPES_COLORS)] = CITYSCAPES_COLORS
    return palette


@dataclass(frozen=True)
class DatasetInfo:
    """What the pipeline, the models, the logs and the run names need to know about a dataset."""

    name: str                                # the run config's `dataset` value
    folder: str                              # folder under the data root (~/data/<folder>/)
    class_names: tuple[str, ...]             # display name per class id (logs, per-class IoU keys)
    palette: np.ndarray = field(repr=False, compare=False)  # (256, 3) uint8 colour per label id
    reduce_zero_label: bool = False          # ADE: label 0 is 'other' -> 255, ids shift down by one
    text_prefix: str = ''                    # text embeddings are `<text_prefix>_<variant>.npy`
    abbrev: str = ''                         # short name in run names (pascal -> voc)
    splits: tuple[str, ...] = ()             # official split names, in the papers' order
    prompt_names: tuple[str, ...] = ()       # CLIP prompt strings when they differ from class_names
    concepts: Mapping[int, list[list[str]]] = field(default_factory=dict, repr=False, compare=False)
    builtin: bool = True                     # False: read from a folder's classes.txt
    lr_multi: int = 10                       # non-backbone lr factor when a run sets none (UniMatch configs)
    val_size: tuple[int, int] | None = None  # (h, w) of its validation images when all share one (bench)
    generator: str = ''                      # 'module:function' making the dataset in its folder (toy)

    def __post_init__(self) -> None:
        if not self.text_prefix:
            object.__setattr__(self, 'text_prefix', self.name)
        if not self.abbrev:
            object.__setattr__(self, 'abbrev', self.name)
        if self.prompt_names and len(self.prompt_names) != len(self.class_names):
            raise ValueError(f'{self.name}: {len(self.prompt_names)} prompt names for '
                             f'{len(self.class_names)} classes')

    @property
    def nclass(self) -> int:
        """Number of classes the model predicts."""
        return len(self.class_names)

    @property
    def prompts(self) -> tuple[str, ...]:
        """The strings whose CLIP text embeddings stand for the classes."""
        return self.prompt_names or self.class_names


TOY_CLASSES = ('background', 'disk', 'square', 'triangle', 'ring')  # semiseg.data.toy draws these

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo('pascal', 'voc', tuple(defs.PASCAL_CLASS_NAMES), voc_palette(), text_prefix='voc12_wbg',
                abbrev='voc', splits=('92', '183', '366', '732', '1464', '1_16', '1_8', '1_4', '1_2',
                                      'u2pl_1_16', 'u2pl_1_8', 'u2pl_1_4'),
                concepts={4: defs.PASCAL_CONCEPTS_4}),
    DatasetInfo('cityscapes', 'cityscapes', tuple(defs.CITYSCAPES_CLASS_NAMES), cityscapes_palette(),
                abbrev='cs', splits=('1_30', '1_16', '1_8', '1_4', '1_2'),
                concepts={3: defs.CITYSCAPES_CONCEPTS_3}, lr_multi=1, val_size=(1024, 2048)),
    DatasetInfo('coco', 'coco', tuple(defs.COCO_CLASS_NAMES), generated_palette(81, 'coco'),
                splits=('1_512', '1_256', '1_128', '1_64', '1_32')),
    DatasetInfo('ade', 'ADEChallengeData2016', tuple(n.strip() for n in defs.ADE_CLASS_NAMES),
                generated_palette(150, 'ade'), reduce_zero_label=True,
                splits=('1_128', '1_64', '1_32', '1_16', '1_8'),
                prompt_names=tuple(defs.ADE_CLASS_NAMES)),   # the release's prompt keeps 'bed '
    DatasetInfo('ade20k', 'ade20k', tuple(n.strip() for n in defs.ADE_CLASS_NAMES),   # UniMatch V2's preparation:
                generated_palette(150, 'ade'), text_prefix='ade',                       # ids 0..149, no shift
                splits=('1_64', '1_32', '1_16', '1_8', '1_4', '1_2'), prompt_names=tuple(defs.ADE_CLASS_NAMES)),
    DatasetInfo('toy', 'toy', TOY_CLASSES, voc_palette(), splits=('16',),
                generator='semiseg.data.toy:ensure_toy_dataset'),
)}


def ensure_generated(name: str, root: Path | str) -> bool:
    """Make a generated dataset (its entry's `generator`) in `root` if needed; False for the others."""
    info = DATASETS.get(name)
    if info is None or not info.generator:
        return False
    import importlib
    module, function = info.generator.split(':')
    getattr(importlib.import_module(module), function)(Path(root).expanduser())
    return True


def dataset_names() -> list[str]:
    """The built-in dataset names (`experiments.py --list-datasets`)."""
    return list(DATASETS)


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """Non-empty, stripped lines with their 1-based line numbers (UTF-8, BOM optional, any line ending)."""
    try:
        lines = read_lines(path, what)
    except TextFileError as err:
        raise DataError(str(err)) from None
    return [(i, line.strip()) for i, line in enumerate(lines, 1) if line.strip()]


def read_class_names(path: Path) -> tuple[str, ...]:
    """Class names from a `classes.txt` (one per line, blank lines skipped)."""
    if not path.is_file():
        raise DataError(f'class list {path} not found: a custom dataset needs a classes.txt '
                        'in its data_root with one class name per line (class id = line order)')
    lines = _read_lines(path, 'class list')
    names = tuple(line for _, line in lines)
    if not names:
        raise DataError(f'class list {path} is empty: write one class name per line')
    seen: dict[str, int] = {}
    for lineno, name in lines:
        if name in seen:
            raise DataError(f'{path}:{lineno}: class {name!r} is listed twice (first on line {seen[name]}); '
                            'every class needs its own name, one per line')
        seen[name] = lineno
    if len(names) > MAX_CLASSES:
        raise DataError(f'class list {path} has {len(names)} classes; at most {MAX_CLASSES} are supported '
                        f'(label ids {UNLABELED_PAD} and {IGNORE_INDEX} are reserved for padding and ignore)')
    return names


def read_palette(path: Path, nclass: int) -> np.ndarray:
    """A (256, 3) palette from `palette.txt`: one `r g b` line (0-255) per class."""
    palette = generated_palette(nclass, path.parent.name)
    rows = _read_lines(path, 'palette')
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
    splits = tuple(sorted(p.parent.name for p in (root / 'splits').glob('*/labeled.txt')))
    return DatasetInfo(name, root.name, names, palette, splits=splits, builtin=False)

