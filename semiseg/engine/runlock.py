"""One writer per run folder: an exclusive `flock` on `run_dir/.lock`, held for the whole training.

The lock file records who holds it (host, pid, Slurm job, start time) so a second process can say
whom it met. The operating system releases the lock when the holder dies (also on `kill -9`), so a
folder whose state.json says 'running' but whose lock is free belongs to a process that is gone:
`--status` calls it stale. Local file systems and NFS with lock support honour it; the lock is
advisory. `OwnedLock` is the same mechanism for any file (the launcher's per-config claims,
`semiseg.launch.claim`).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from semiseg.utils.run_files import LOCK_FILE
from semiseg.utils.safe_yaml import load_json_text


class RunLocked(RuntimeError):
    """The run folder is being trained by another process."""


def slurm_job_label() -> str | None:
    """This process's Slurm job as squeue shows it ('123_4' for an array task), or None."""
    array, task = os.environ.get('SLURM_ARRAY_JOB_ID'), os.environ.get('SLURM_ARRAY_TASK_ID')
    if array and task:
        return f'{array}_{task}'
    return os.environ.get('SLURM_JOB_ID') or None


def owner_record(**extra: object) -> dict:
    """Who this process is: host, pid, Slurm job (when inside one), start time, plus `extra`."""
    record = {'host': socket.gethostname(), 'pid': os.getpid(),
              'started': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
    job = slurm_job_label()
    if job:
        record['slurm_job'] = job
    record.update(extra)
    return record


def describe_owner(owner: dict | None) -> str:
    """'pid 12 on node3 (Slurm job 45_3) since 2026-...' for a lock's owner record."""
    if not owner:
        return 'another process'
    if owner.get('pid') is None and owner.get('slurm_job'):
        return f'Slurm job {owner["slurm_job"]} ({owner.get("state", "queued or running")})'
    job = f' (Slurm job {owner["slurm_job"]})' if owner.get('slurm_job') else ''
    return f'pid {owner.get("pid")} on {owner.get("host")}{job} (since {owner.get("started")})'


_describe = describe_owner


class OwnedLock:
    """A non-blocking exclusive flock on `path` whose file says who holds it.

    `try_acquire()` returns None once held, else the holder's record (an empty dict when the holder
    has not written it yet). Released by `release()` or when the process ends.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, **extra: object) -> dict | None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            return owner
        self._fd = fd
        self.note(**extra)
        return None

    def note(self, **extra: object) -> None:
        """Rewrite the owner record (e.g. with the run folder once it exists)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(owner_record(**extra)).encode(), 0)
        os.fsync(self._fd)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class RunLock:
    """`with RunLock(run_dir): ...` or acquire()/release(); raises RunLocked when held elsewhere."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._lock = OwnedLock(self.path)

    def acquire(self) -> RunLock:
        owner = self._lock.try_acquire()
        if owner is not None:
            raise RunLocked(f'run folder {self.path.parent} is being trained by {describe_owner(owner)}; wait for '
                            'it, stop it (its latest.pth resumes later), or start a new folder (experiments.py '
                            '--force)') from None
        return self

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_owner(fd: int) -> dict:
    try:
        return load_json_text(os.pread(fd, 4096, 0).decode() or '{}')   # depth-limited (safe_yaml)
    except (OSError, ValueError):
        return {}


def file_lock_holder(path: Path) -> dict | None:
    """Who holds an `OwnedLock` on `path` ({'host', 'pid', 'started', ...}), or None when nobody does."""
    path = Path(path)
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


def lock_holder(run_dir: Path) -> dict | None:
    """Who holds the folder's lock ({'host', 'pid', 'started'}), or None when nobody does."""
    return file_lock_holder(Path(run_dir) / LOCK_FILE)
