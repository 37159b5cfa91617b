"""Training loaders in the release's arrangement, made exactly resumable.

The release zips (loader_l, loader_u, loader_u): both unlabeled iterators share one sampler, so the
partner batch holds the same image ids with independent augmentations (LiheYoung/UniMatch
`unimatch.py`; the author calls it unintended in issue #85, we keep it for parity).
Here every sample is augmented under a seed derived from (seed, stream, epoch, index) and the
sampler order depends only on (seed, epoch); a resumed run therefore skips the finished batches of
its epoch and sees exactly the batches and augmentations the uninterrupted run would have seen.
The sampler hands each worker `(epoch, index)`, so persistent workers draw the same augmentations
as in-process loading without any epoch state of their own.
"""
from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

STREAM_LABELED, STREAM_UNLABELED, STREAM_PARTNER = 0, 1, 2


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from integers, well mixed (SeedSequence), stable across runs and platforms."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def seed_sample(seed: int, stream: int, epoch: int, index: int) -> None:
    """Seed python, numpy and torch's CPU generator for sample `index` of `epoch` in `stream`."""
    s = derive_seed(seed, stream, epoch, index)
    random.seed(s)
    np.random.seed(s)
    torch.random.default_generator.manual_seed(s)


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (CPU and, via manual_seed, CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class SeededDataset(Dataset):
    """Wraps a training dataset so sample i of epoch e is augmented under a fixed seed.

    `stream` separates the labeled, unlabeled and partner views of the same ids. Items are read by
    the sampler's `(epoch, index)` keys, so workers need no epoch state of their own.
    """

    def __init__(self, dataset: Dataset, seed: int, stream: int) -> None:
        self.dataset, self.seed, self.stream = dataset, seed, stream

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        seed_sample(self.seed, self.stream, epoch, index)
        return self.dataset[index]


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffle, seed, padding) that can skip the first samples of one epoch.
    It yields `(epoch, index)` keys for SeededDataset."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in list(super().__iter__())[self.skip:]])

    def __len__(self) -> int:
        return self.num_samples - self.skip


@dataclass
class TrainLoaders:
    """The zipped training loaders and the per-epoch bookkeeping they need."""

    loader_l: DataLoader
    loader_u: DataLoader | None
    loader_p: DataLoader | None           # partner stream: same sampler as loader_u
    samplers: list[ResumableSampler]
    batch_size: int
    iters_per_epoch: int

    def start_epoch(self, epoch: int, skip_batches: int = 0) -> Iterator[dict]:
        """The epoch's batches from `skip_batches` on: one dict of the labeled, unlabeled and partner
        views (partner keys suffixed `_o`), as the datasets named them."""
        for sampler in self.samplers:
            sampler.set_epoch(epoch, skip_batches * self.batch_size)
        streams = [iter(self.loader_l)]
        streams += [iter(loader) for loader in (self.loader_u, self.loader_p) if loader is not None]
        for parts in zip(*streams):
            batch = dict(parts[0])
            if self.loader_u is not None:
                batch.update(parts[1])
            if self.loader_p is not None:
                batch.update({f'{k}_o': v for k, v in parts[2].items()})
            yield batch


def batch_to_device(batch: dict, device: torch.device, cfg: dict | None = None) -> dict:
    """The batch (named by the data layer) with its tensors on the training device.

    Float views of the default path are moved as they are. With the switches `augment=fast` or
    `photometric_device`, image views arrive as uint8 (and strong views with their drawn parameters,
    `photo_<view>`): the photometric chain and the normalisation run on `device`
    (`semiseg.data.device_photometric.finish_batch`) and the parameter keys are dropped. `cfg` is
    the run config (kept for switches that need it; the batch itself says what it holds)."""
    from semiseg.data.device_photometric import finish_batch
    return finish_batch(batch, device)


def build_eval_loader(dataset: Dataset, distributed: bool | None = None,
                      num_workers: int = 0) -> DataLoader:
    """Batch-1 val loader; distributed (default: when torch.distributed is initialised) it
    splits the dataset over ranks without duplicating any sample."""
    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    from semiseg.evaluation.sampler import DistributedEvalSampler
    sampler = DistributedEvalSampler(dataset) if distributed else None
    return make_loader(dataset, 1, num_workers, torch.cuda.is_available(), shuffle=False, sampler=sampler)


def process_cpus() -> int:
    """CPUs this process may use: its affinity (Slurm binds each task to its own), shared with the
    other processes of the node when torchrun started them all under one affinity."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        cpus = os.cpu_count() or 1
    slurm_cpus = os.environ.get('SLURM_CPUS_PER_TASK', '')
    if slurm_cpus.isdigit():
        return max(1, min(cpus, int(slurm_cpus)))
    local_procs = os.environ.get('LOCAL_WORLD_SIZE', '')
    return max(1, cpus // int(local_procs)) if local_procs.isdigit() and int(local_procs) > 0 else cpus


MAX_AUTO_WORKERS = 8


def auto_workers(num_workers: int | str, loaders: int, cpus: int | None = None) -> int:
    """Workers per loader: a number as given; 'auto' shares this process's CPUs, less one for the
    training loop, among its `loaders` (at least 1 each, at most MAX_AUTO_WORKERS). The
    augmentations are seeded per sample, so the count changes speed only, never the batches."""
    if num_workers != 'auto':
        return int(num_workers)
    cpus = process_cpus() if cpus is None else cpus
    return max(1, min(MAX_AUTO_WORKERS, (cpus - 1) // max(1, loaders)))


# One idle CPU core's milliseconds per sample at crop 512, from python -m semiseg.tools.bench_data (README
# "Speed"; measured on a loaded machine and scaled to the idle figures): decode + geometry +
# collate by resize kernel, one weak image view (normalised here, or shipped as uint8), one strong view.
SAMPLE_BASE_MS = {'release': 7.0, 'fast': 5.0}
WEAK_VIEW_MS = {'release': 1.5, 'fast': 0.2, 'device': 0.2}
STRONG_VIEW_MS = {'release': 17.0, 'fast': 6.0, 'device': 0.6}


def sample_cost_ms(dataset: Dataset) -> float:
    """Estimated CPU ms per sample of a training dataset from its views and augmentation switches
    (datasets without views, e.g. test stand-ins, count as one unit)."""
    views, aug = getattr(dataset, 'views', None), getattr(dataset, 'aug', None)
    if views is None or aug is None:
        return 1.0
    geometry = getattr(aug, 'augment', 'release')
    kernel = 'device' if getattr(aug, 'photometric_device', False) else geometry
    strong = sum(v in views for v in ('img_s1', 'img_s2', 'img_x_s'))
    weak = sum(v in views for v in ('img_w', 'img_x'))
    scale = (int(getattr(aug, 'crop_size', 512)) / 512) ** 2
    return SAMPLE_BASE_MS[geometry] + scale * (weak * WEAK_VIEW_MS[kernel] + strong * STRONG_VIEW_MS[kernel])


def split_workers(num_workers: int | str, costs: list[float], cpus: int | None = None) -> list[int]:
    """Workers for each loader: a number as given, for every loader; 'auto' shares this process's CPUs,
    less one for the training loop, in proportion to the loaders' per-sample costs (every loader
    delivers one batch per step), at least 1 and at most MAX_AUTO_WORKERS each."""
    if num_workers != 'auto':
        return [int(num_workers)] * len(costs)
    cpus = process_cpus() if cpus is None else cpus
    spare, total = max(0, cpus - 1 - len(costs)), sum(costs) or 1.0
    extra = [spare * c / total for c in costs]                  # beyond the one each loader gets
    counts = [1 + int(e) for e in extra]
    for i in sorted(range(len(costs)), key=lambda i: int(extra[i]) - extra[i])[:max(0, cpus - 1 - sum(counts))]:
        counts[i] += 1                                          # largest remainders first
    return [min(MAX_AUTO_WORKERS, c) for c in counts]


def prefetch_factor(workers: int) -> int:
    """Batches each worker keeps ready: at least 4 per loader in flight, 2 per worker beyond 2 workers
    (more would only hold memory: a crop-512 unlabeled batch of 2 is ~19 MB of float views)."""
    return max(2, math.ceil(4 / workers))


def make_loader(dataset: Dataset, batch_size: int, workers: int, pin_memory: bool, **kwargs) -> DataLoader:
    """A DataLoader whose workers outlive the epoch (no restart cost per epoch or evaluation), with
    `prefetch_factor(workers)` batches each in flight."""
    extra = {'persistent_workers': True, 'prefetch_factor': prefetch_factor(workers)} if workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=pin_memory,
                      **extra, **kwargs)


def build_train_loaders(data, batch_size: int, seed: int, world_size: int, rank: int, num_workers: int | str,
                        pin_memory: bool) -> TrainLoaders:
    """Loaders as in the release: per-process batch, drop_last, DistributedSampler(seed) each;
    `num_workers` per loader, or 'auto' (split_workers: the CPUs shared by the loaders' sample costs).

    `data` is `semiseg.data.build.TrainData`; without unlabeled data the labeled loader runs alone;
    the partner stream (if any) shares the unlabeled sampler, so it holds the same image ids.
    """
    streams = [d for d in (data.labeled, data.unlabeled, data.partner) if d is not None]
    workers = iter(split_workers(num_workers, [sample_cost_ms(d) for d in streams]))   # in stream order

    def loader(ds: SeededDataset, sampler: ResumableSampler) -> DataLoader:
        return make_loader(ds, batch_size, next(workers), pin_memory, sampler=sampler, drop_last=True)

    ds_l = SeededDataset(data.labeled, seed, STREAM_LABELED)
    sampler_l = ResumableSampler(ds_l, world_size, rank, seed)
    loader_l = loader(ds_l, sampler_l)
    if data.unlabeled is None:
        ipe = len(loader_l)
        _check_nonempty(ipe, len(data.labeled), batch_size, world_size, 'labeled')
        return TrainLoaders(loader_l, None, None, [sampler_l], batch_size, ipe)
    ds_u = SeededDataset(data.unlabeled, seed, STREAM_UNLABELED)
    sampler_u = ResumableSampler(ds_u, world_size, rank, seed)
    loader_u = loader(ds_u, sampler_u)
    loader_p = None
    if data.partner is not None:   # same sampler: the partner batch holds the same ids, augmented independently
        ds_p = SeededDataset(data.partner, seed, STREAM_PARTNER)
        loader_p = loader(ds_p, sampler_u)
    ipe = min(len(loader_l), len(loader_u))
    _check_nonempty(ipe, len(data.unlabeled), batch_size, world_size, 'unlabeled')
    return TrainLoaders(loader_l, loader_u, loader_p, [sampler_l, sampler_u], batch_size, ipe)


def _check_nonempty(ipe: int, n: int, batch_size: int, world_size: int, what: str) -> None:
    if ipe <= 0:
        raise ValueError(f'the {what} training set has {n} samples: fewer than one batch of {batch_size} '
                         f'per process on {world_size} process(es); lower batch_size or add data')


@dataclass
class IterationPlan:
    """Epochs, iterations per epoch, total and LR-schedule horizon (google-research/semivl `semivl.py` rules)."""

    epochs: int
    iters_per_epoch: int
    total_iters: int
    scheduler_max_iters: int


def plan_iterations(cfg: dict, iters_per_epoch: int) -> IterationPlan:
    """epochs = ceil(iters/len(loader_u)) when `iters` is set, else cfg['epochs']."""
    if cfg.get('iters'):
        epochs = math.ceil(int(cfg['iters']) / iters_per_epoch)
    elif cfg.get('epochs'):
        epochs = int(cfg['epochs'])
    else:
        raise ValueError("the run config needs 'epochs' or 'iters' (a positive number of training steps)")
    total = iters_per_epoch * epochs
    smax = cfg.get('scheduler_max_iters') or total
    if smax < total:
        raise ValueError(f'scheduler_max_iters={smax} is smaller than the {total} training iterations '
                         f'({epochs} epochs x {iters_per_epoch}); raise it or remove it')
    return IterationPlan(epochs, iters_per_epoch, total, int(smax))
