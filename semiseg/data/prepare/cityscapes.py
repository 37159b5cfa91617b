"""Cityscapes -> `cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png` and
`cityscapes/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png`.

Train ids come from the official `labelIds` masks through the dataset's own table,
`cityscapesscripts.helpers.labels` (id -> trainId; trainIds 255 and -1 become 255, ignore). This equals
cityscapesscripts' `json2labelImg(..., 'trainIds')`: both draw the same polygons, one with ids, the
other with train ids. The test split (no labels) is not copied.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from semiseg.data.prepare.common import (
    SKIPPED,
    Archive,
    ArchiveSpec,
    RunStats,
    Task,
    archive_tasks,
    check_counts,
    copy_done,
    decode_labels,
    execute,
    png_bytes,
    png_done,
)
from semiseg.utils.labels import IGNORE_INDEX

IMAGES = ArchiveSpec('leftImg8bit_trainvaltest.zip', 'zip',
                     'the Cityscapes images (leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png)')
LABELS = ArchiveSpec('gtFine_trainvaltest.zip', 'zip',
                     'the Cityscapes fine annotations (gtFine/{train,val,test}/<city>/*_gtFine_labelIds.png)')
ARCHIVES = (IMAGES, LABELS)

IMAGE = re.compile(r'^leftImg8bit/(train|val)/([^/]+)/([^/]+)_leftImg8bit\.png$')
LABEL_IDS = re.compile(r'^gtFine/(train|val)/([^/]+)/([^/]+)_gtFine_labelIds\.png$')
OFFICIAL_COUNTS = {'train': 2975, 'val': 500}
MASK_BYTES = 40_000   # a typical 2048x1024 train-id PNG, for the space estimate


@functools.lru_cache(maxsize=1)
def train_id_table() -> np.ndarray:
    """256-entry lookup label id -> train id from cityscapesscripts (ids without a train id: 255;
    values that are no Cityscapes label id: -1)."""
    try:
        from cityscapesscripts.helpers.labels import labels  # the dataset's own table
    except ImportError as err:
        raise ImportError('cityscapesscripts is needed for the train ids: pip install cityscapesscripts') from err
    lut = np.full(256, IGNORE_INDEX, dtype=np.int16)
    known = np.zeros(256, dtype=bool)
    for label in labels:
        if 0 <= label.id < 256:
            known[label.id] = True
            lut[label.id] = label.trainId if 0 <= label.trainId < IGNORE_INDEX else IGNORE_INDEX
    lut[~known] = -1   # not a Cityscapes label id: refused
    return lut


def train_ids(data: bytes) -> bytes:
    """A `*_gtFine_labelIds.png` as the train-id mask (mode L, 255 ignore)."""
    ids = decode_labels(data)
    mapped = train_id_table()[ids]
    if (mapped < 0).any():
        bad = np.unique(ids[mapped < 0])
        raise ValueError(f'label ids {bad[:8].tolist()} are not Cityscapes label ids')
    return png_bytes(mapped.astype(np.uint8))


class CityscapesConverter:
    dataset = 'cityscapes'
    archives = ARCHIVES

    def check(self, archives: dict[str, Archive]) -> None:
        for spec, pattern, what in ((IMAGES, IMAGE, 'images'), (LABELS, LABEL_IDS, 'labelIds masks')):
            names = [n for n, _ in archives[spec.filename].listing()]
            check_counts(archives[spec.filename], names,
                         {f'{split} {what}': (re.compile(pattern.pattern.replace('(train|val)', split)), count)
                          for split, count in OFFICIAL_COUNTS.items()})

    def estimate(self, archives: dict[str, Archive], out: Path) -> int:
        total = 0
        for name, size in archives[IMAGES.filename].listing():
            if (m := IMAGE.match(name)) and not copy_done(self._image_out(out, m), size):
                total += size
        for name, _ in archives[LABELS.filename].listing():
            if (m := LABEL_IDS.match(name)) and not self._label_out(out, m).is_file():
                total += MASK_BYTES
        return total

    @staticmethod
    def _image_out(out: Path, m: re.Match) -> Path:
        return out / 'leftImg8bit' / m[1] / m[2] / f'{m[3]}_leftImg8bit.png'

    @staticmethod
    def _label_out(out: Path, m: re.Match) -> Path:
        return out / 'gtFine' / m[1] / m[2] / f'{m[3]}_gtFine_labelTrainIds.png'

    def run(self, archives: dict[str, Archive], out: Path, workers: int) -> RunStats:
        images, labels = archives[IMAGES.filename], archives[LABELS.filename]
        total = sum(OFFICIAL_COUNTS.values())

        def plan_image(name: str, size: int):
            if m := IMAGE.match(name):
                target = self._image_out(out, m)
                return SKIPPED if copy_done(target, size) else Task(target, None, f'{images.name}:{name}')
            return None

        def plan_label(name: str, size: int):
            if m := LABEL_IDS.match(name):
                target = self._label_out(out, m)
                return SKIPPED if png_done(target) else Task(target, None, f'{labels.name}:{name}', train_ids)
            return None

        stats = execute(archive_tasks(images, plan_image), workers, images.name, total)
        stats.add(execute(archive_tasks(labels, plan_label), workers, labels.name, total))
        return stats


CONVERTER = CityscapesConverter()
