"""From the official archives to a dataset folder in the releases' layout: one small converter per
dataset (pascal, cityscapes, coco, ade), the shared streaming/writing machinery (common) and the
check against the split lists (verify). Entry point: `python -m semiseg.tools.prepare`.

A converter offers `dataset`, `archives` (the `ArchiveSpec`s it reads), `check(archives)` (what can be
checked before anything is written), `estimate(archives, out)` (bytes still to write) and
`run(archives, out, workers)`.
"""
from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import Any

from semiseg.data.datasets import DATASETS
from semiseg.data.errors import DataError
from semiseg.data.prepare import ade, cityscapes, coco, pascal
from semiseg.data.prepare.common import Archive, ArchiveError, RunStats, check_space, find_archives, remove_temp_files

logger = logging.getLogger(__name__)

CONVERTERS: dict[str, Any] = {c.dataset: c for c in (
    pascal.CONVERTER, cityscapes.CONVERTER, coco.CONVERTER, ade.SEMIVL, ade.UNIMATCH_V2)}

__all__ = ['CONVERTERS', 'ArchiveError', 'prepare_dataset']


def prepare_dataset(dataset: str, sources: list[str | Path], data_root: str | Path = '~/data',
                    workers: int = 1) -> tuple[Path, RunStats]:
    """Write `<data_root>/<folder>` of `dataset` from its official archives (files, or folders holding
    them); resumable. Raises `DataError` (`ArchiveError` for a bad archive) before writing anything
    where the problem can be seen up front; returns the folder and what was written / skipped."""
    if dataset not in CONVERTERS:
        raise DataError(f'no converter for {dataset!r}: the official datasets are {", ".join(CONVERTERS)}; '
                        'a custom dataset is laid out by hand and checked with --verify')
    conv = CONVERTERS[dataset]
    paths = find_archives(conv.archives, sources)
    archives = {spec.filename: Archive(paths[spec.filename], spec) for spec in conv.archives}
    conv.check(archives)
    out = Path(data_root).expanduser() / DATASETS[dataset].folder
    check_space(out, conv.estimate(archives, out), dataset)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / '.prepare.lock', 'w') as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise DataError(f'{out}: another prepare of this folder is running; wait for it to finish') from err
        removed = remove_temp_files(out)
        if removed:
            logger.info('removed %d temporary files left by an interrupted run', removed)
        stats = conv.run(archives, out, workers)
    if stats.failed:
        more = len(stats.failed) - 5
        shown = '; '.join(stats.failed[:5]) + (f'; ... and {more} more' if more > 0 else '')
        raise ArchiveError(f'{len(stats.failed)} member(s) could not be converted: {shown}')
    return out, stats
