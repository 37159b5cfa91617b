"""COCO 2017 -> `coco/{train2017,val2017}/*.jpg` and `coco/masks/<image stem>.png`, 81 classes.

Class ids as the releases' masks use them: 0 background, then the 80 categories contiguous in
category-id order (person 1, bicycle 2, ..., toothbrush 80). Every image of `instances_*2017.json`
gets a mask, also those without annotations (all background: the unlabeled lists name them too).
Instances are decoded with `pycocotools.mask` (polygons, RLE and the crowd regions' uncompressed RLE)
and painted largest first, so where instances overlap the smaller one (an object on another,
e.g. a cup on a table) stays visible; equal areas in annotation-id order. Crowd regions are painted
with their category like any instance (they are objects of that class, only not separable).
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from semiseg.data.prepare.common import (
    SKIPPED,
    Archive,
    ArchiveError,
    ArchiveSpec,
    RunStats,
    Task,
    archive_tasks,
    check_counts,
    copy_done,
    execute,
    png_bytes,
    png_done,
)

TRAIN = ArchiveSpec('train2017.zip', 'zip', 'the COCO 2017 train images (train2017/*.jpg)')
VAL = ArchiveSpec('val2017.zip', 'zip', 'the COCO 2017 val images (val2017/*.jpg)')
ANNOTATIONS = ArchiveSpec('annotations_trainval2017.zip', 'zip',
                          'the COCO 2017 annotations (annotations/instances_{train,val}2017.json)')
ARCHIVES = (TRAIN, VAL, ANNOTATIONS)
SPLITS = {'train2017': TRAIN, 'val2017': VAL}
OFFICIAL_COUNTS = {'train2017': 118287, 'val2017': 5000}
NCATEGORIES = 80
MASK_BYTES = 6_000   # a typical 640x480 mask, for the space estimate


def image_pattern(split: str) -> re.Pattern:
    return re.compile(rf'^{split}/([^/]+)\.jpg$')


def class_map(categories: list[dict]) -> dict[int, int]:
    """COCO category id -> class id: 1..80 in category-id order (0 is background)."""
    return {cat_id: i + 1 for i, cat_id in enumerate(sorted(c['id'] for c in categories))}


def coco_mask(payload: tuple[int, int, list[tuple[int, int, object]]]) -> bytes:
    """The class mask of one image from its annotations [(annotation id, class id, segmentation)]:
    decoded by pycocotools, painted largest first (smaller instances end on top)."""
    from pycocotools import mask as mask_utils
    height, width, anns = payload
    rles = []
    for ann_id, cls, seg in anns:
        if isinstance(seg, list):                   # polygons of one instance
            if not seg:
                continue
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        elif isinstance(seg, dict) and isinstance(seg.get('counts'), list):   # uncompressed RLE (crowd)
            rle = mask_utils.frPyObjects(seg, height, width)
        elif isinstance(seg, dict):                 # compressed RLE
            rle = dict(seg, counts=seg['counts'].encode() if isinstance(seg['counts'], str) else seg['counts'])
        else:
            raise ValueError(f'annotation {ann_id}: segmentation of type {type(seg).__name__}')
        if list(rle['size']) != [height, width]:
            raise ValueError(f'annotation {ann_id}: mask size {rle["size"]} differs from the image\'s '
                             f'{[height, width]}')
        rles.append((-float(mask_utils.area(rle)), ann_id, cls, rle))
    mask = np.zeros((height, width), dtype=np.uint8)
    for _, _, cls, rle in sorted(rles, key=lambda t: (t[0], t[1])):
        mask[mask_utils.decode(rle) > 0] = cls
    return png_bytes(mask)


class CocoConverter:
    dataset = 'coco'
    archives = ARCHIVES

    def check(self, archives: dict[str, Archive]) -> None:
        for split, spec in SPLITS.items():
            names = [n for n, _ in archives[spec.filename].listing()]
            check_counts(archives[spec.filename], names,
                         {f'{split}/*.jpg images': (image_pattern(split), OFFICIAL_COUNTS[split])})
        ann = archives[ANNOTATIONS.filename]
        names = {n for n, _ in ann.listing()}
        for split in SPLITS:
            if f'annotations/instances_{split}.json' not in names:
                ann.fail(f'annotations/instances_{split}.json is not in it')

    def estimate(self, archives: dict[str, Archive], out: Path) -> int:
        total = 0
        for split, spec in SPLITS.items():
            pattern = image_pattern(split)
            for name, size in archives[spec.filename].listing():
                if (m := pattern.match(name)) and not copy_done(out / split / f'{m[1]}.jpg', size):
                    total += size
        masks_dir = out / 'masks'
        present = sum(1 for _ in masks_dir.glob('*.png')) if masks_dir.is_dir() else 0
        return total + max(0, sum(OFFICIAL_COUNTS.values()) - present) * MASK_BYTES

    def run(self, archives: dict[str, Archive], out: Path, workers: int) -> RunStats:
        stats = RunStats()
        for split, spec in SPLITS.items():
            arch, pattern = archives[spec.filename], image_pattern(split)

            def plan(name: str, size: int, arch=arch, pattern=pattern, split=split):
                if m := pattern.match(name):
                    target = out / split / f'{m[1]}.jpg'
                    return SKIPPED if copy_done(target, size) else Task(target, None, f'{arch.name}:{name}')
                return None

            stats.add(execute(archive_tasks(arch, plan), workers, arch.name, OFFICIAL_COUNTS[split]))
        ann = archives[ANNOTATIONS.filename]
        for split in ('val2017', 'train2017'):
            member = f'annotations/instances_{split}.json'
            stats.add(execute(self._mask_tasks(ann, member, split, out), workers, f'{ann.name} {split} masks',
                              OFFICIAL_COUNTS[split]))
        return stats

    def _mask_tasks(self, ann: Archive, member: str, split: str, out: Path):
        try:
            with ann.errors(), ann.open(member) as f:
                data = json.load(f)
        except ValueError as err:   # json's errors (ArchiveError, a ValueError too, passes on)
            if isinstance(err, ArchiveError):
                raise
            ann.fail(f'{member} is not valid json ({err})')
        for key in ('images', 'annotations', 'categories'):
            if key not in data:
                ann.fail(f'{member} has no "{key}": not a COCO instances file')
        classes = class_map(data['categories'])
        if len(classes) != NCATEGORIES:
            ann.fail(f'{member} has {len(classes)} categories where COCO 2017 has {NCATEGORIES}')
        if len(data['images']) != OFFICIAL_COUNTS[split]:
            ann.fail(f'{member} lists {len(data["images"])} images where COCO 2017 {split} has '
                     f'{OFFICIAL_COUNTS[split]}: a different or incomplete release')
        per_image: dict[int, list] = defaultdict(list)
        for a in data['annotations']:
            if a['category_id'] not in classes:
                ann.fail(f'{member}: annotation {a["id"]} has category {a["category_id"]}, not one of the 80')
            per_image[a['image_id']].append((a['id'], classes[a['category_id']], a['segmentation']))
        for img in sorted(data['images'], key=lambda i: i['id']):
            target = out / 'masks' / f'{Path(img["file_name"]).stem}.png'
            if png_done(target):
                yield SKIPPED
            else:
                yield Task(target, (img['height'], img['width'], per_image.get(img['id'], [])),
                           f'{ann.name}:{member} image {img["id"]}', coco_mask)


CONVERTER = CocoConverter()
