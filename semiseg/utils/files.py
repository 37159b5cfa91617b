"""Atomic file writes: a temporary file in the same folder, fsync, then os.replace.

Readers never see half a file, and a crash mid-write leaves the previous version intact.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None], fsync: bool = True) -> Path:
    """Call `write(f)` on a temporary binary file next to `path`, then rename it into place.

    `fsync=False` skips the flush to disk (still atomic for readers and process crashes; for many
    small files whose writer checks them on the next run, e.g. semiseg.data.prepare)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    return atomic_write(path, lambda f: f.write(data), fsync)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + '\n')


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch
    return atomic_write(path, lambda f: torch.save(obj, f))


def is_temp_file(name: str) -> bool:
    """Whether a file name is one of `atomic_write`'s temporaries (left over by a crash)."""
    return name.startswith('.') and name.endswith('.tmp')
