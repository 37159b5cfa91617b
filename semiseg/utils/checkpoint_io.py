"""Reading checkpoint files without executing code from them.

Every checkpoint we read (our own, the releases', ImageNet weights) goes through
`read_checkpoint`: `torch.load(weights_only=True)`, which only rebuilds tensors and plain
containers. The releases' files also hold numpy scalars (e.g. UniMatch's `previous_best` is an
`np.float64`), so those few numpy types are allowed too. A file that needs full unpickling is
refused with one line; `trust=True` (`--trust-checkpoint`) is the explicit way out for a file the
user vouches for.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError


def _numpy_safe_globals() -> list:
    """The numpy objects a pickled numpy scalar or array refers to."""
    core = getattr(np, '_core', None) or np.core
    types = [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype]
    types += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    return types


SAFE_GLOBALS = _numpy_safe_globals()


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = 'cpu',
                    trust: bool = False) -> Any:
    """Load a checkpoint file; raises CheckpointError for a missing, damaged or unsafe file.

    `trust=True` unpickles without restrictions (may execute code from the file): only for files
    from a source the user trusts.
    """
    path = Path(path).expanduser()
    check_checkpoint_file(path)
    if trust:
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        match = re.search(r'unsupported GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)', text)
        if match:
            name = match.group(1) or match.group(2)
            raise CheckpointError(
                f'refusing to load {path}: it refers to the Python object {name}, and unpickling it '
                'could run code from the file; pass --trust-checkpoint (trust=True) only if you '
                'trust where the file comes from') from None
        raise CheckpointError(_damaged(path, 'not a torch checkpoint')) from None
    except Exception as err:   # noqa: BLE001 - torch.load fails on odd bytes in many ways (KeyError, IndexError, ...)
        first = str(err).splitlines()[0] if str(err) else ''
        raise CheckpointError(_damaged(path, f'{type(err).__name__}: {first[:120]}')) from err


# the first bytes of files people pass by mistake -> what they are
KNOWN_KINDS = ((b'\x89PNG', 'a PNG image'), (b'\xff\xd8\xff', 'a JPEG image'), (b'\x93NUMPY', 'a numpy .npy array'),
               (b'\x1f\x8b', 'a gzip archive'), (b'GIF8', 'a GIF image'), (b'%PDF', 'a PDF document'),
               (b'\x89HDF', 'an HDF5 file (e.g. Keras weights)'), (b'ustar', 'a tar archive'))
ZIP_MAGIC = b'PK\x03\x04'          # torch.save's format since torch 1.6
PICKLE_PREFIX = b'\x80'              # the legacy torch format and plain pickles start with PROTO


def check_checkpoint_file(path: Path) -> None:
    """CheckpointError saying what `path` is when it cannot be a torch checkpoint (missing, a folder,
    empty, an image, text, ...), before torch.load turns it into KeyError / IndexError."""
    if path.is_dir():
        inside = sorted(p.name for p in path.glob('*.pth'))[:3]
        hint = f' (it holds {", ".join(inside)})' if inside else ''
        raise CheckpointError(f'checkpoint {path} is a folder{hint}; pass the .pth file itself, e.g. {path}/best.pth')
    if not path.exists():
        raise CheckpointError(f'checkpoint {path} does not exist')
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} is not a regular file (a device, pipe or socket); pass a .pth file')
    with open(path, 'rb') as f:
        head = f.read(512)
    if not head:
        raise CheckpointError(f'checkpoint {path} is empty (0 bytes); a copy or a save did not finish')
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PREFIX):
        return
    if head[8:10] == b'{"':
        raise CheckpointError(f'checkpoint {path} is a safetensors file; load it with safetensors and save the '
                              f'state dict with torch.save to use it here')
    for magic, kind in KNOWN_KINDS:
        if head.startswith(magic) or (magic == b'ustar' and head[257:262] == magic):
            raise CheckpointError(f'checkpoint {path} is {kind}, not a torch checkpoint (.pth written by torch.save)')
    try:
        head.decode('utf-8')
        text = b'\x00' not in head
    except UnicodeDecodeError as err:   # a multi-byte character cut at the end of the sample is still text
        text = len(head) == 512 and err.start > len(head) - 4 and b'\x00' not in head
    if text:
        raise CheckpointError(f'checkpoint {path} is a text file, not a torch checkpoint (.pth written by '
                              f'torch.save); was a config or a log passed by mistake?')


def _damaged(path: Path, detail: str) -> str:
    return (f'cannot read checkpoint {path} ({detail}); the file is damaged or not a torch checkpoint '
            '(e.g. a job was killed while writing or copying it)')
