"""`build_datasets(cfg)`: the run config's labeled, unlabeled and validation datasets.

Also `seed_worker`, the DataLoader `worker_init_fn` that seeds python's and numpy's global RNGs
from torch's per-worker seed, so augmentations are reproducible under the engine's seed.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from semiseg.data.datasets import dataset_info
from semiseg.data.errors import DataError
from semiseg.data.semi_dataset import AugConfig, SemiDataset
from semiseg.data.splits import missing_split_hint, read_split, split_files

logger = logging.getLogger(__name__)


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed `random` and `numpy.random` from torch's seed for this worker.

    torch already seeds each worker as base_seed + worker_id (base_seed drawn from the main
    process's torch RNG, itself seeded by the engine); derive the other two from it.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def resolve_data_root(cfg: dict) -> Path:
    """`cfg['data_root']` with `~` expanded."""
    if not cfg.get('data_root'):
        raise DataError('the run config has no data_root; set it to the dataset folder '
                        '(e.g. ~/data/voc/)')
    return Path(str(cfg['data_root'])).expanduser()


def build_datasets(cfg: dict) -> tuple[SemiDataset, SemiDataset, SemiDataset]:
    """(train_l, train_u, val) for a run config; train_l is repeated/truncated to len(train_u).

    The toy dataset is generated on first use. Raises `DataError` for missing or bad split lists,
    a class count that does not match `nclass`, or missing files among the first entries.
    """
    name = cfg['dataset']
    root = resolve_data_root(cfg)
    if name == 'toy':
        from semiseg.data.toy import ensure_toy_dataset
        ensure_toy_dataset(root)  # the dataset is fixed; the run seed only drives augmentation
    info = dataset_info(name, root)
    if 'nclass' in cfg and int(cfg['nclass']) != info.nclass:
        raise DataError(f'config says nclass={cfg["nclass"]} but dataset {name!r} has '
                        f'{info.nclass} classes; fix nclass in the config')
    aug = AugConfig.from_cfg(cfg, reduce_zero_label=info.reduce_zero_label)
    files = split_files(root, cfg['split'])
    hint = missing_split_hint(name, root)
    labeled = read_split(files['labeled'], hint)
    unlabeled = read_split(files['unlabeled'], hint)
    val = read_split(files['val'], hint)

    train_u = SemiDataset(root, unlabeled, 'train_u', aug)
    train_l = SemiDataset(root, labeled, 'train_l', aug, nsample=len(train_u))
    valset = SemiDataset(root, val, 'val', aug)
    logger.info('data %s split %s: %d labeled (repeated to %d), %d unlabeled, %d val', name,
                cfg['split'], len(labeled), len(train_l), len(train_u), len(valset))
    return train_l, train_u, valset
