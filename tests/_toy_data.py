"""Shared test helper: a copy of the exp-0 toy dataset with short split lists.

The full dataset is generated once per machine into a cache and copied, which is much faster than
generating it per test; trimming the lists makes an epoch a few iterations and evaluation quick.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from semiseg.data.toy import SPLIT, ensure_toy_dataset


def trimmed_toy(dest: Path, unlabeled: int, val: int) -> Path:
    """`dest/toy` with the first `unlabeled` unlabeled and `val` val entries; returns `dest`."""
    cache = ensure_toy_dataset(Path(tempfile.gettempdir()) / 'semiseg-test-cache' / 'toy')
    toy = dest / 'toy'
    shutil.copytree(cache, toy)
    for rel, keep in ((f'splits/{SPLIT}/unlabeled.txt', unlabeled), ('splits/val.txt', val)):
        path = toy / rel
        path.write_text(''.join(path.read_text().splitlines(keepends=True)[:keep]))
    return dest
