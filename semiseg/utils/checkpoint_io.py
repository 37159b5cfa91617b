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
import zipfile
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
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist')
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
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, AttributeError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else ''
        raise CheckpointError(_damaged(path, f'{type(err).__name__}: {first[:120]}')) from err


def _damaged(path: Path, detail: str) -> str:
    return (f'cannot read checkpoint {path} ({detail}); the file is damaged or not a torch checkpoint '
            '(e.g. a job was killed while writing or copying it)')
