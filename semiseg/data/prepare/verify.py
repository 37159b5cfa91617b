"""Check a prepared dataset folder against its split lists.

Every image and mask named by every list under `<folder>/splits/` must exist and be readable, each mask
must have its image's size and hold only valid label ids (class ids and 255; ADE's `ade` layout keeps
its raw 0..150), and each official list must have the official number of lines. The report names
every problem; `verify_dataset` returns it, the CLI exits non-zero when it is not empty.
"""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from semiseg.data.datasets import DatasetInfo
from semiseg.data.errors import DataError
from semiseg.data.splits import read_split
from semiseg.utils.labels import IGNORE_INDEX


@dataclass
class ListReport:
    """One split list: its entries, those complete on disk, the official line count (if known)."""

    path: str
    entries: int
    present: int = 0
    official: int | None = None


@dataclass
class VerifyReport:
    folder: Path
    lists: list[ListReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)   # problems per kind, for the summary line

    def add(self, kind: str, text: str) -> None:
        self.kinds[kind] += 1
        self.problems.append(text)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self, limit: int = 50) -> list[str]:
        """The report as text lines: one per list, then the problems (at most `limit`)."""
        out = []
        for r in self.lists:
            official = '' if r.official is None else f' (official {r.official})'
            out.append(f'{r.path}: {r.present}/{r.entries} entries complete{official}')
        out += [f'  {p}' for p in self.problems[:limit]]
        if len(self.problems) > limit:
            out.append(f'  ... and {len(self.problems) - limit} more problems')
        summary = ', '.join(f'{n} {kind}' for kind, n in self.kinds.most_common())
        out.append(f'{self.folder}: ' + ('OK' if self.ok else f'{len(self.problems)} problem(s): {summary}'))
        return out


def valid_ids(info: DatasetInfo) -> np.ndarray:
    """Label ids a mask file of `info` may hold: class ids and 255; raw ADE (reduce_zero_label) 0..nclass."""
    ids = np.zeros(256, dtype=bool)
    ids[:info.nclass + (1 if info.reduce_zero_label else 0)] = True
    ids[IGNORE_INDEX] = True
    return ids


def check_pair(args: tuple[Path, str, str | None, np.ndarray]) -> list[tuple[str, str]]:
    """The (kind, text) problems of one (image, mask) pair: missing, unreadable, sizes differ, invalid ids."""
    root, image, mask, valid = args
    problems = []
    size = None
    try:
        with Image.open(root / image) as img:
            size = img.size
    except FileNotFoundError:
        problems.append(('missing images', f'missing image {image}'))
    except (OSError, ValueError, SyntaxError) as err:
        problems.append(('unreadable images', f'unreadable image {image}: {err}'))
    if mask is None:
        return problems
    try:
        with Image.open(root / mask) as m:
            if m.mode not in ('L', 'P'):
                problems.append(('masks not single-channel',
                                 f'mask {mask} has mode {m.mode}, not a single-channel label PNG'))
                return problems
            labels = np.array(m)
    except FileNotFoundError:
        return problems + [('missing masks', f'missing mask {mask}')]
    except (OSError, ValueError, SyntaxError) as err:
        return problems + [('unreadable masks', f'unreadable mask {mask}: {err}')]
    if size is not None and labels.shape != (size[1], size[0]):
        problems.append(('masks of another size', f'mask {mask} is {labels.shape[1]}x{labels.shape[0]}, '
                         f'its image {image} {size[0]}x{size[1]}'))
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    bad = present[~valid[present]]
    if bad.size:
        problems.append(('masks with invalid ids', f'mask {mask} holds invalid label ids {bad[:8].tolist()}'))
    return problems


def official_line_counts(dataset: str) -> dict[str, int]:
    """{relative list path: line count} of the official lists with a recorded checksum."""
    from third_party import splits as official
    if dataset not in official.OFFICIAL_DATASETS:
        return {}
    return {rel: e['lines'] for rel, e in official.load_checksums().get(dataset, {}).items()}


def verify_dataset(info: DatasetInfo, folder: Path, workers: int = 1) -> VerifyReport:
    """Check every entry of every split list under `folder/splits` (each distinct pair once)."""
    report = VerifyReport(folder)
    split_dir = folder / 'splits'
    lists = sorted(split_dir.rglob('*.txt')) if split_dir.is_dir() else []
    if not lists:
        raise DataError(f'no split lists under {split_dir}; fetch them first: python -m '
                        f'semiseg.tools.fetch_splits {info.name} --data-root {folder.parent}')
    official = official_line_counts(info.name) if info.builtin else {}
    entries_of: dict[str, list[tuple[str, str | None]]] = {}
    for path in lists:
        rel = path.relative_to(split_dir).as_posix()
        entries = [(e.image, None if e.mask == 'None' else e.mask) for e in read_split(path)]
        entries_of[rel] = entries
        report.lists.append(ListReport(f'splits/{rel}', len(entries), official=official.get(rel)))
        if rel in official and official[rel] != len(entries):
            report.add('lists of another length', f'splits/{rel} has {len(entries)} entries, the official '
                       f'list {official[rel]}: re-fetch it with semiseg.tools.fetch_splits')
    pairs = sorted({p for entries in entries_of.values() for p in entries}, key=lambda p: (p[0], p[1] or ''))
    valid = valid_ids(info)
    jobs = [(folder, image, mask, valid) for image, mask in pairs]
    bar = tqdm(total=len(jobs), desc=f'verify {info.name}', unit='pair', dynamic_ncols=True, disable=None)
    bad_pairs: dict[tuple[str, str | None], list] = {}
    try:
        if workers <= 1:
            results = map(check_pair, jobs)
        else:
            pool = ProcessPoolExecutor(max_workers=workers)
            results = pool.map(check_pair, jobs, chunksize=64)
        for pair, problems in zip(pairs, results):
            if problems:
                bad_pairs[pair] = problems
                for kind, text in problems:
                    report.add(kind, text)
            bar.update()
    finally:
        bar.close()
        if workers > 1:
            pool.shutdown()
    for r in report.lists:
        r.present = sum(1 for p in entries_of[r.path.removeprefix('splits/')] if p not in bad_pairs)
    return report
