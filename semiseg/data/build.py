"""`build_datasets(cfg, method)`: the run's training and validation datasets, with the method's views.

Also `seed_worker`, the DataLoader `worker_init_fn` that seeds python's and numpy's global RNGs
from torch's per-worker seed, so augmentations are reproducible under the engine's seed.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from semiseg.data.datasets import dataset_info, ensure_generated
from semiseg.data.errors import DataError
from semiseg.data.semi_dataset import AugConfig, SemiDataset
from semiseg.data.splits import check_overlaps, missing_split_hint, read_split, split_files
from semiseg.methods.registry import MethodInfo

logger = logging.getLogger(__name__)


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed `random` and `numpy.random` from torch's seed for this worker.

    torch already seeds each worker as base_seed + worker_id (base_seed drawn from the main
    process's torch RNG, itself seeded by the engine); derive the other two from it.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def dataset_dir(cfg: dict) -> Path:
    """The run's dataset folder, `cfg['data_root']` with `~` expanded."""
    if not cfg.get('data_root'):
        raise DataError('the run config has no data_root; set it to the dataset folder '
                        '(e.g. ~/data/voc/)')
    return Path(str(cfg['data_root'])).expanduser()


@dataclass
class TrainData:
    """The datasets of one run. `unlabeled` / `partner` are None for methods that do not use them."""

    labeled: SemiDataset
    unlabeled: SemiDataset | None
    partner: SemiDataset | None      # the unlabeled ids again, with the partner views
    val: SemiDataset


def build_datasets(cfg: dict, method: MethodInfo) -> TrainData:
    """The datasets of a run config, each building only the views `method` reads.

    The labeled list is repeated/truncated to the unlabeled list's length (an epoch is one pass over
    the unlabeled images), except for labeled-only methods with `epoch_over: labeled` (the
    release's supervised.py), which iterate over the labeled list alone. The toy dataset is
    generated on first use. Raises `DataError` for missing or bad split lists, a class count that
    does not match `nclass`, or missing files among the first entries.
    """
    name = cfg['dataset']
    root = dataset_dir(cfg)
    ensure_generated(name, root)  # a generated dataset (toy) is fixed; the run seed only drives augmentation
    info = dataset_info(name, root)
    if 'nclass' in cfg and int(cfg['nclass']) != info.nclass:
        raise DataError(f'config says nclass={cfg["nclass"]} but dataset {name!r} has '
                        f'{info.nclass} classes; fix nclass in the config')
    aug = AugConfig.from_cfg(cfg, reduce_zero_label=info.reduce_zero_label)
    files = split_files(root, cfg['split'])
    hint = missing_split_hint(name, root)
    labeled = read_split(files['labeled'], hint)
    val_entries = read_split(files['val'], hint)
    check_overlaps(labeled, val_entries)
    val = SemiDataset(root, val_entries, 'val', aug)

    unlabeled_entries = None
    if method.uses_unlabeled or cfg.get('epoch_over', 'labeled') == 'unlabeled':
        unlabeled_entries = read_split(files['unlabeled'], hint)
        check_overlaps(labeled, [], unlabeled_entries)
    unlabeled = partner = None
    if method.uses_unlabeled:
        unlabeled = SemiDataset(root, unlabeled_entries, 'train_u', aug, views=method.unlabeled_views)
    if method.uses_partner:
        partner = SemiDataset(root, unlabeled_entries, 'train_u', aug, views=method.partner_views,
                              check_first=0)
    nsample = len(unlabeled_entries) if unlabeled_entries is not None else None
    if nsample is None and len(labeled) < int(cfg.get('labeled_samples') or 0):
        nsample = int(cfg['labeled_samples'])   # UniMatch-V2 supervised.py: short lists repeated to a fixed length
    train_l = SemiDataset(root, labeled, 'train_l', aug, nsample=nsample, views=method.labeled_views)
    logger.info('data %s split %s: %d labeled (%d per epoch), %s unlabeled, %d val', name, cfg['split'],
                len(labeled), len(train_l), len(unlabeled) if unlabeled is not None else 'no', len(val))
    return TrainData(train_l, unlabeled, partner, val)


def check_data(cfg: dict, method: MethodInfo) -> None:
    """A cheap look at a run's data before anything is written: the class list, the split lists, the
    first files of each list, and the first labeled and validation samples (readable, label ids in
    range). Raises DataError naming the file and the fix."""
    data = build_datasets(cfg, method)
    data.labeled[0]
    data.val[0]
