"""One launcher per run config: a claim file per config, taken with `flock` before deciding.

Many launches of the same selection can start at the same moment (a sweep's array tasks, a user
who starts a command twice). Looking for a resumable folder and then taking its run lock leaves a
window in which two processes both decide to start (or resume) the same run. So a launcher first
takes the config's claim, `exp_root/.claims/exp-E/<hash>.lock` (the hash of the config as it
reads back from YAML: the same key as `rundir.same_config_dirs`), and only then looks at the run
folders, creates one, and trains; it holds the claim until the run ends. A launcher that finds the
claim held says who holds it (host, pid, Slurm job) and moves on to its next run; `--force` starts
a repeat on purpose without waiting for anyone. The kernel drops the claim when its holder dies.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from semiseg.engine.runlock import OwnedLock, describe_owner, file_lock_holder, lock_holder

from .job import read_job_record, slurm_job_id
from .rundir import find_resumable, normalized_config

CLAIM_DIR = '.claims'


def config_key(cfg: dict[str, Any]) -> str:
    """16 hex digits naming the exact config (keys in order, values as YAML reads them back)."""
    text = yaml.safe_dump(normalized_config(cfg), sort_keys=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def claim_path(cfg: dict[str, Any], exp_root: Path) -> Path:
    """The claim file of `cfg` (its folder is created on first use)."""
    return Path(exp_root) / CLAIM_DIR / f'exp-{cfg["exp"]}' / f'{config_key(cfg)}.lock'


class ConfigClaim:
    """`claim.take()` -> None when this process now owns the config, else the holder's record."""

    def __init__(self, cfg: dict[str, Any], exp_root: Path) -> None:
        self.path = claim_path(cfg, exp_root)
        self.name = cfg.get('name', '?')
        self._lock = OwnedLock(self.path)

    def take(self) -> dict | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self._lock.try_acquire(run=self.name)

    def note_folder(self, run_dir: Path) -> None:
        """Record the run folder in the claim (what a second launcher reports)."""
        self._lock.note(run=self.name, run_dir=str(run_dir))

    def release(self) -> None:
        self._lock.release()


def claim_holder(cfg: dict[str, Any], exp_root: Path) -> dict | None:
    """Who holds `cfg`'s claim right now, or None."""
    return file_lock_holder(claim_path(cfg, exp_root))


def folder_trainer(run_dir: Path) -> dict | None:
    """Who trains an unfinished folder without holding its config's claim: the holder of its run
    lock (`python -m semiseg.engine.run`, a running Slurm task), or its Slurm job while queued."""
    owner = lock_holder(run_dir)
    if owner is not None:
        return owner
    job = slurm_job_id(read_job_record(run_dir))
    if job and shutil.which('squeue'):
        from .slurm import active_jobs
        if active_jobs([run_dir]):
            return {'slurm_job': job, 'state': 'queued or running'}
    return None


def who_trains(cfg: dict[str, Any], exp_root: Path, resumable: Path | None | str = 'find',
               ) -> tuple[dict, Path | None] | None:
    """(owner record, its folder) of a live process or Slurm job that launches or trains `cfg` now,
    else None: the config's claim, else `folder_trainer` of its unfinished folder (`resumable`,
    looked up unless the caller already did)."""
    owner = claim_holder(cfg, exp_root)
    if owner is not None:
        folder = owner.get('run_dir')
        return owner, Path(folder) if folder else None
    if resumable == 'find':
        resumable = find_resumable(cfg, exp_root)
    owner = folder_trainer(resumable) if resumable is not None else None
    return (owner, resumable) if owner is not None else None


def busy_line(index: int, cfg: dict[str, Any], owner: dict, folder: Path | None) -> str:
    """'run 3 (<name>): being trained by pid 12 on vm (Slurm job 4_3) ... in <folder>; moving on ...'"""
    where = f' in {folder}' if folder else ''
    return (f'run {index} ({cfg.get("name", "?")}): is being trained by {describe_owner(owner)}{where}; '
            'moving on (--force starts a repeat on purpose)')


class SubmissionLock:
    """One Slurm submitter per experiment at a time: `exp_root/.claims/exp-E/submit.lock`.

    Taken before the run folders are looked at and held until this object is released or dropped
    (CPython closes it when the CLI's `run()` returns), so a second `--launcher slurm` of the same
    sweep waits, then finds the first one's folders queued and leaves them to their jobs.
    """

    def __init__(self, exp_root: Path, exp_id: int, timeout_s: float = 600.0) -> None:
        path = Path(exp_root) / CLAIM_DIR / f'exp-{exp_id}' / 'submit.lock'
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = OwnedLock(path)
        deadline, said = time.monotonic() + timeout_s, False
        while (owner := self._lock.try_acquire(submitting=f'exp-{exp_id}')) is not None:
            if not said:
                print(f'waiting for the Slurm submission of {describe_owner(owner)} to experiment {exp_id}')
                said = True
            if time.monotonic() > deadline:
                raise TimeoutError(f'the Slurm submission of {describe_owner(owner)} to experiment {exp_id} has '
                                   f'taken over {timeout_s:.0f} s; wait for it or stop it, then submit again')
            time.sleep(0.2)

    def release(self) -> None:
        self._lock.release()

    def __del__(self) -> None:
        self.release()
