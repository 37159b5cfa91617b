"""Process-group setup from the environment (torchrun / submitit) and DDP wrapping.

Single process when WORLD_SIZE is absent or 1. The frozen guidance encoder (`clip_encoder.*`) is
kept out of DDP: it never receives gradients and its parameters need no synchronisation.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)

IGNORED_PREFIX = 'clip_encoder.'


@dataclass
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False     # True when this module created the process group (and destroys it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is a clear error."""
    if requested == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if requested == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError("engine option device='cuda' but no CUDA device is available; "
                           "use device='cpu' or 'auto' (e.g. --cfg-options device=auto)")
    if requested not in ('cpu', 'cuda'):
        raise ValueError(f"engine option device must be 'auto', 'cpu' or 'cuda', got {requested!r}")
    return torch.device(requested)


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group described by RANK/WORLD_SIZE/LOCAL_RANK (nccl on CUDA, gloo on CPU).

    Returns the rank information and the per-process device (cuda:LOCAL_RANK on GPU).
    """
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if device.type == 'cuda':
        device = torch.device('cuda', local_rank)
        torch.cuda.set_device(device)
    if world_size <= 1:
        return DistInfo(), device
    owns = False
    if not dist.is_initialized():
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
        missing = [k for k in ('MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
        if missing:
            raise RuntimeError(f'WORLD_SIZE={world_size} but {", ".join(missing)} not set; '
                               f'start distributed runs with torchrun or the Slurm launcher')
        dist.init_process_group(backend=backend, init_method='env://', rank=rank, world_size=world_size)
        owns = True
    info = DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, owns_group=owns)
    logger.info('distributed: rank %d/%d, local rank %d, backend %s', info.rank, info.world_size,
                local_rank, dist.get_backend())
    return info, device


def cleanup_distributed(info: DistInfo) -> None:
    """Destroy the process group if `init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def any_rank_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when `flag` is True on at least one (used for the stop request)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """SyncBN (CUDA only: SyncBatchNorm needs a GPU) + DDP, the guidance encoder excluded.

    Single-process runs get the model back unchanged.
    """
    if not info.distributed:
        return model
    if device.type == 'cuda':
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ignored = [n for n, _ in model.named_parameters() if n.startswith(IGNORED_PREFIX)]
    ignored += [n for n, _ in model.named_buffers() if n.startswith(IGNORED_PREFIX)]
    if ignored:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)
    device_ids = [device.index] if device.type == 'cuda' else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False,
                                               find_unused_parameters=True)

