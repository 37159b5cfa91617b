"""Pascal VOC 2012 + SBD -> `voc/JPEGImages/*.jpg` and `voc/SegmentationClass/*.png`, the train_aug masks.

The releases (UniMatch, AllSpark, SemiVL) use a preprocessed `SegmentationClass` holding a mask for all
10582 train_aug images and the 1449 val images (docs/data.md): the union of VOC 2012's 2913
`SegmentationClass` masks and SBD's 11355 `cls/*.mat` masks. Where both exist VOC's own mask is kept,
with its 255 object boundaries; SBD's masks (no boundaries) fill in the rest. Masks are palette PNGs
with the VOC colour map, indices = class ids.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import scipy.io

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
from semiseg.utils.imaging import voc_palette
from semiseg.utils.labels import IGNORE_INDEX

VOC = ArchiveSpec('VOCtrainval_11-May-2012.tar', 'tar',
                  'the PASCAL VOC 2012 trainval tar (VOCdevkit/VOC2012/JPEGImages, SegmentationClass)')
SBD = ArchiveSpec('benchmark.tgz', 'tar', 'the SBD release (benchmark_RELEASE/dataset/cls/*.mat)')
ARCHIVES = (VOC, SBD)

JPEG = re.compile(r'^VOCdevkit/VOC2012/JPEGImages/([^/]+)\.jpg$')
VOC_MASK = re.compile(r'^VOCdevkit/VOC2012/SegmentationClass/([^/]+)\.png$')
SBD_MAT = re.compile(r'^benchmark_RELEASE/dataset/cls/([^/]+)\.mat$')
# member counts of the official releases
OFFICIAL_COUNTS = {'JPEGImages': 17125, 'SegmentationClass': 2913, 'cls': 11355}
NCLASS = 21
MASK_BYTES = 4_000   # a typical palette mask, for the space estimate


def voc_mask(data: bytes) -> bytes:
    """VOC's own mask (palette indices 0..20, 255 on object boundaries), re-encoded unchanged."""
    mask = decode_labels(data)
    _check_ids(mask, allow_ignore=True)
    return png_bytes(mask, voc_palette())


def sbd_mask(data: bytes) -> bytes:
    """SBD's class mask: `GTcls.Segmentation` of the .mat (uint8 class ids 0..20, no boundaries)."""
    mat = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)
    if 'GTcls' not in mat or not hasattr(mat['GTcls'], 'Segmentation'):
        raise ValueError('no GTcls.Segmentation in the .mat (not an SBD cls file)')
    mask = np.asarray(mat['GTcls'].Segmentation)
    if mask.ndim != 2:
        raise ValueError(f'GTcls.Segmentation has shape {mask.shape}, expected a 2-D class map')
    _check_ids(mask, allow_ignore=False)
    return png_bytes(mask.astype(np.uint8), voc_palette())


def _check_ids(mask: np.ndarray, allow_ignore: bool) -> None:
    bad = np.setdiff1d(np.unique(mask), np.arange(NCLASS))
    if allow_ignore:
        bad = bad[bad != IGNORE_INDEX]
    if bad.size:
        raise ValueError(f'label ids {bad[:8].tolist()} outside 0..{NCLASS - 1}'
                         + (' and 255' if allow_ignore else ''))


class PascalConverter:
    dataset = 'pascal'
    archives = ARCHIVES

    def check(self, archives: dict[str, Archive]) -> None:
        names = archives[VOC.filename].listing()
        if names is not None:
            check_counts(archives[VOC.filename], (n for n, _ in names), self._voc_groups())

    @staticmethod
    def _voc_groups() -> dict:
        return {'VOC2012 JPEGImages/*.jpg': (JPEG, OFFICIAL_COUNTS['JPEGImages']),
                'VOC2012 SegmentationClass/*.png masks': (VOC_MASK, OFFICIAL_COUNTS['SegmentationClass'])}

    def estimate(self, archives: dict[str, Archive], out: Path) -> int:
        names = archives[VOC.filename].listing() or []
        images = sum(size for name, size in names
                     if (m := JPEG.match(name)) and not copy_done(out / 'JPEGImages' / f'{m[1]}.jpg', size))
        masks_dir = out / 'SegmentationClass'
        present = sum(1 for _ in masks_dir.glob('*.png')) if masks_dir.is_dir() else 0
        union = OFFICIAL_COUNTS['cls'] + OFFICIAL_COUNTS['SegmentationClass']   # an upper bound
        return images + max(0, union - present) * MASK_BYTES

    def run(self, archives: dict[str, Archive], out: Path, workers: int) -> RunStats:
        voc, sbd = archives[VOC.filename], archives[SBD.filename]
        voc_ids: set[str] = set()
        seen: list[str] = []
        stats = execute(self._voc_tasks(voc, out, voc_ids, seen), workers, voc.name,
                        total=OFFICIAL_COUNTS['JPEGImages'] + OFFICIAL_COUNTS['SegmentationClass'])
        if voc.listing() is None:   # a compressed copy of the tar: counted while streaming
            check_counts(voc, seen, self._voc_groups())
        sbd_seen: list[str] = []
        stats.add(execute(self._sbd_tasks(sbd, out, voc_ids, sbd_seen), workers, sbd.name))
        check_counts(sbd, sbd_seen, {'SBD cls/*.mat masks': (SBD_MAT, OFFICIAL_COUNTS['cls'])})
        return stats

    def _voc_tasks(self, voc: Archive, out: Path, voc_ids: set[str], seen: list[str]):
        def plan(name: str, size: int):
            if m := JPEG.match(name):
                target = out / 'JPEGImages' / f'{m[1]}.jpg'
                return SKIPPED if copy_done(target, size) else Task(target, None, f'{voc.name}:{name}')
            if m := VOC_MASK.match(name):
                voc_ids.add(m[1])
                target = out / 'SegmentationClass' / f'{m[1]}.png'
                return SKIPPED if png_done(target) else Task(target, None, f'{voc.name}:{name}', voc_mask)
            return None
        return archive_tasks(voc, plan, seen)

    def _sbd_tasks(self, sbd: Archive, out: Path, voc_ids: set[str], seen: list[str]):
        def plan(name: str, size: int):
            m = SBD_MAT.match(name)
            if m is None or m[1] in voc_ids:   # VOC's own mask takes precedence
                return None
            target = out / 'SegmentationClass' / f'{m[1]}.png'
            return SKIPPED if png_done(target) else Task(target, None, f'{sbd.name}:{name}', sbd_mask)
        return archive_tasks(sbd, plan, seen)


CONVERTER = PascalConverter()
