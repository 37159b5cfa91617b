"""ADE20K (SceneParsing, `ADEChallengeData2016.zip`) in the two layouts the releases expect.

- `ade` (SemiVL): `ADEChallengeData2016/{images,annotations}/{training,validation}/`, the annotations
  unchanged (0 = 'other', 1..150 the classes); the shift happens at load time (`reduce_zero_label`,
  semiseg.data.loading.reduce_zero_label).
- `ade20k` (UniMatch V2): `ade20k/{images,annotations}/{training,validation}/`, the annotations
  already shifted as the release's preparation did: 0 -> 255 (ignore), 1..150 -> 0..149; the loader
  does no shift (docs/data.md).
"""
from __future__ import annotations

import re
from pathlib import Path

from semiseg.data.loading import reduce_zero_label
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

ZIP = ArchiveSpec('ADEChallengeData2016.zip', 'zip',
                  'the ADE20K SceneParsing release (ADEChallengeData2016/{images,annotations}/{training,validation})')
ARCHIVES = (ZIP,)
MEMBER = re.compile(r'^ADEChallengeData2016/(images|annotations)/(training|validation)/([^/]+)\.(jpg|png)$')
OFFICIAL_COUNTS = {'training': 20210, 'validation': 2000}
NCLASS = 150


def shifted_annotation(data: bytes) -> bytes:
    """An ADE annotation (0 other, 1..150) as UniMatch V2's: 0..149, 255 ignore (mode L)."""
    mask = decode_labels(data)
    if mask.max(initial=0) > NCLASS:
        raise ValueError(f'label ids up to {int(mask.max())}, ADE20K has 0..{NCLASS}')
    return png_bytes(reduce_zero_label(mask))


def _checked_copy(data: bytes) -> bytes:
    """An ADE annotation kept as it is, after checking its ids are 0..150."""
    mask = decode_labels(data)
    if mask.max(initial=0) > NCLASS:
        raise ValueError(f'label ids up to {int(mask.max())}, ADE20K has 0..{NCLASS}')
    return data


class AdeConverter:
    archives = ARCHIVES

    def __init__(self, dataset: str, shift: bool) -> None:
        self.dataset = dataset
        self.shift = shift   # UniMatch V2: shift the ids when writing

    def check(self, archives: dict[str, Archive]) -> None:
        names = [n for n, _ in archives[ZIP.filename].listing()]
        groups = {}
        for split, count in OFFICIAL_COUNTS.items():
            for kind, ext in (('images', 'jpg'), ('annotations', 'png')):
                groups[f'{kind}/{split}/*.{ext}'] = (
                    re.compile(rf'^ADEChallengeData2016/{kind}/{split}/[^/]+\.{ext}$'), count)
        check_counts(archives[ZIP.filename], names, groups)

    def _target(self, out: Path, m: re.Match) -> Path:
        return out / m[1] / m[2] / f'{m[3]}.{m[4]}'

    def estimate(self, archives: dict[str, Archive], out: Path) -> int:
        return sum(size for name, size in archives[ZIP.filename].listing()
                   if (m := MEMBER.match(name)) and not self._target(out, m).is_file())

    def run(self, archives: dict[str, Archive], out: Path, workers: int) -> RunStats:
        arch = archives[ZIP.filename]

        def plan(name: str, size: int):
            m = MEMBER.match(name)
            if m is None or (m[1] == 'images') != (m[4] == 'jpg'):
                return None
            target, source = self._target(out, m), f'{arch.name}:{name}'
            if m[1] == 'images':
                return SKIPPED if copy_done(target, size) else Task(target, None, source)
            if self.shift:
                return SKIPPED if png_done(target) else Task(target, None, source, shifted_annotation)
            return SKIPPED if copy_done(target, size) else Task(target, None, source, _checked_copy)

        return execute(archive_tasks(arch, plan), workers, arch.name, 2 * sum(OFFICIAL_COUNTS.values()))


SEMIVL = AdeConverter('ade', shift=False)
UNIMATCH_V2 = AdeConverter('ade20k', shift=True)
