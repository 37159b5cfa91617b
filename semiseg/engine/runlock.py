"""One writer per run folder: an exclusive `flock` on `run_dir/.lock`, held for the whole training.

The lock file records who holds it (host, pid, start time) so a second process can say whom it met.
The operating system releases the lock when the holder dies (also on `kill -9`), so a folder whose
state.json says 'running' but whose lock is free belongs to a process that is gone: `--status`
calls it stale. Local file systems and NFS with lock support honour it; the lock is advisory.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = '.lock'


class RunLocked(RuntimeError):
    """The run folder is being trained by another process."""


def _describe(owner: dict) -> str:
    if not owner:
        return 'another process'
    return f'pid {owner.get("pid")} on {owner.get("host")} (since {owner.get("started")})'


class RunLock:
    """`with RunLock(run_dir): ...` or acquire()/release(); raises RunLocked when held elsewhere."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise RunLocked(f'run folder {self.path.parent} is being trained by {_describe(owner)}; wait for it, '
                            'stop it (its latest.pth resumes later), or start a new folder (experiments.py '
                            'without --resume, or --force)') from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({'host': socket.gethostname(), 'pid': os.getpid(),
                                 'started': time.strftime('%Y-%m-%dT%H:%M:%S%z')}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_owner(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        from semiseg.utils.safe_yaml import load_json_text
        return load_json_text(os.read(fd, 4096).decode() or '{}')
    except (OSError, ValueError):
        return {}


def lock_holder(run_dir: Path) -> dict | None:
    """Who holds the folder's lock ({'host', 'pid', 'started'}), or None when nobody does."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(fd)
        os.close(fd)
        return owner or {'host': '?', 'pid': '?', 'started': '?'}
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return None
