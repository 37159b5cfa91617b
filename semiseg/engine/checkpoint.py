"""Training checkpoints: atomic writes, readable errors for damaged files, RNG capture.

`latest.pth` is what a resumed run restores; `best.pth` keeps the best-mIoU state. Everything in a
checkpoint is plain tensors and Python containers so it loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

LATEST = 'latest.pth'
BEST = 'best.pth'
CHECKPOINT_KEYS = ('model', 'optimizer', 'scheduler', 'scaler', 'epoch', 'iteration', 'best_miou', 'rng', 'config')


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the run."""


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` atomically: a temp file in the same folder, fsync, then os.replace.

    A crash mid-write leaves the previous file untouched.
    """
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path, map_location: str | torch.device = 'cpu') -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; damaged or foreign files raise CheckpointError."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated / foreign files
        raise CheckpointError(
            f'cannot read checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}); '
            f'the file is damaged (e.g. the job was killed while copying it). Move it away '
            f'(e.g. `mv {path} {path}.bad`) to restart this run from its previous state or from '
            f'scratch, or restore a good copy') from e
    if not isinstance(state, dict) or not {'model', 'iteration'} <= set(state):
        raise CheckpointError(f'{path} is not a semiseg training checkpoint (expected keys '
                              f'{", ".join(CHECKPOINT_KEYS)}); move it away to start the run afresh')
    return state


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
