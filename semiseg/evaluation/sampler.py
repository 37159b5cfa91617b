"""Distributed evaluation sampler: every sample exactly once across ranks.

torch's DistributedSampler pads the index list to a multiple of the world size, which counts
some validation images twice (3 on VOC with 4 GPUs in google-research/semivl
`third_party/unimatch/supervised.py`, `evaluate`). Here rank r takes indices r, r + W, r + 2W,
... with no padding; ranks may get one image more or less, which is fine because the metric
counts are all-reduced once at the end.
"""
from __future__ import annotations

from collections.abc import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import Sampler


class DistributedEvalSampler(Sampler[int]):
    """Strided, unpadded, unshuffled split of a dataset over ranks."""

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None):
        if num_replicas is None or rank is None:
            if not (dist.is_available() and dist.is_initialized()):
                raise RuntimeError('DistributedEvalSampler needs num_replicas and rank, or an '
                                   'initialised torch.distributed process group')
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f'rank must be in [0, {num_replicas}), got {rank}')
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))
