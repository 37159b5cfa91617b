"""Training checkpoints: atomic writes, readable errors for damaged files, RNG capture.

`latest.pth` is what a resumed run restores; `best.pth` keeps the best-mIoU state. Everything in a
checkpoint is plain tensors and Python containers so it loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import errno
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semiseg.utils.checkpoint_io import CheckpointError, read_checkpoint
from semiseg.utils.files import atomic_torch_save, is_temp_file
from semiseg.utils.run_files import BEST_CHECKPOINT, LATEST_CHECKPOINT

__all__ = ['BEST', 'CHECKPOINT_KEYS', 'LATEST', 'CheckpointError', 'capture_rng', 'read_training_checkpoint',
           'remove_stale_temporaries', 'restore_rng', 'save_checkpoint']

logger = logging.getLogger(__name__)

LATEST = LATEST_CHECKPOINT
BEST = BEST_CHECKPOINT
MIN_FREE_BYTES = 1 << 20   # below this, a failed write is taken for a full disk
# every key of a training checkpoint, in the order written (semiseg.engine.hooks.checkpoint builds them;
# checkpoints of earlier versions may also hold 'scaler': None, which nothing reads)
CHECKPOINT_KEYS = ('model', 'optimizer', 'scheduler', 'epoch', 'iteration', 'rng', 'config', 'total_iters',
                   'best_miou', 'last_eval_epoch', 'last_eval', 'best_per_class_iou', 'extra_evals', 'elapsed_s',
                   'method')


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` atomically; a crash mid-write leaves the previous file untouched.

    A full disk raises OSError(ENOSPC) saying so (torch reports it as an obscure 'enforce fail')."""
    path = Path(path)
    try:
        atomic_torch_save(state, path)
    except (OSError, RuntimeError) as err:
        if getattr(err, 'errno', None) == errno.ENOSPC or shutil.disk_usage(path.parent).free < MIN_FREE_BYTES:
            raise OSError(errno.ENOSPC, f'disk full in {path.parent} while writing {path.name}; the previous '
                                        f'{path.name} is intact') from err
        raise


def read_training_checkpoint(path: Path, map_location: str | torch.device = 'cpu') -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; damaged or foreign files raise CheckpointError."""
    path = Path(path)
    try:
        state = read_checkpoint(path, map_location)
    except CheckpointError as e:
        raise CheckpointError(
            f'{e}. Move it away (e.g. `mv {path} {path}.bad`) to restart this run from its previous '
            f'state or from scratch, or restore a good copy') from None
    if not isinstance(state, dict) or not {'model', 'iteration'} <= set(state):
        raise CheckpointError(f'{path} is not a semiseg training checkpoint (expected keys '
                              f'{", ".join(CHECKPOINT_KEYS)}); move it away to start the run afresh')
    return state


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete temporary files an interrupted atomic write left in `run_dir`; returns them."""
    stale = [p for p in Path(run_dir).iterdir() if p.is_file() and is_temp_file(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy, torch CPU and CUDA, as weights_only-loadable objects."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        'python': random.getstate(),
        'numpy': {'name': name, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                  'has_gauss': int(has_gauss), 'gauss': float(gauss)},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng` (CUDA states only when the device count matches)."""
    if 'python' in state:
        version, internal, gauss = state['python']
        random.setstate((version, tuple(internal), gauss))
    if 'numpy' in state:
        s = state['numpy']
        np.random.set_state((s['name'], s['keys'].numpy().astype(np.uint32), s['pos'], s['has_gauss'], s['gauss']))
    if 'torch' in state:
        torch.set_rng_state(state['torch'])
    cuda = state.get('cuda')
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
