"""Data pipeline: the dataset registry, split lists, transforms, datasets with named views, toy data.

Light names (`DATASETS`, `DatasetInfo`, `dataset_info`, `DataError`) import without torch; the
dataset builders load on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from semiseg.data.datasets import DATASETS, DatasetInfo, dataset_info, dataset_names
from semiseg.data.errors import DataError

_LAZY = {'build_datasets': 'build', 'dataset_dir': 'build', 'seed_worker': 'build',
         'AugConfig': 'semi_dataset', 'SemiDataset': 'semi_dataset'}
__all__ = ['DATASETS', 'DataError', 'DatasetInfo', 'dataset_info', 'dataset_names', *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f'{__name__}.{_LAZY[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
