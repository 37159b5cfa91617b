"""Data pipeline: split lists -> labeled / unlabeled / val datasets, transforms, toy data.

Public entry points: `build_datasets(cfg)`, `DataError`, `DATASETS`, `dataset_info`,
`seed_worker`, and `semiseg.data.toy.ensure_toy_dataset`.
"""
from semiseg.data.build import build_datasets, resolve_data_root, seed_worker
from semiseg.data.datasets import DATASETS, DatasetInfo, colorize, dataset_info
from semiseg.data.errors import DataError
from semiseg.data.semi_dataset import AugConfig, SemiDataset

__all__ = ['AugConfig', 'DATASETS', 'DataError', 'DatasetInfo', 'SemiDataset', 'build_datasets',
           'colorize', 'dataset_info', 'resolve_data_root', 'seed_worker']
