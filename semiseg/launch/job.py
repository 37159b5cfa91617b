"""The callable submitit runs on a cluster node: train one run folder, requeue on preemption.

Why the signal juggling: submitit's own USR2 handler (time limit or preemption) calls
`checkpoint()`, requeues the job and exits *immediately*, in the middle of whatever the trainer
was doing. Saving a checkpoint from there could catch an optimizer step half done. Instead,
`TrainJob` puts its own USR2 handler in front of submitit's: it asks the trainer to stop
(`semiseg.engine.signals.request_stop()`), the trainer finishes the current iteration, saves
`latest.pth` and raises `TrainingInterrupted`, and only then is submitit's handler called, which
pickles `checkpoint()`'s fresh `TrainJob` (run folder and config only: the state is in
`latest.pth`), runs `scontrol requeue` and exits. The requeued job trains on in the same folder.

A job requeued without a signal (`scontrol requeue`, node failure) restarts from the original
pickle; that names the same run folder, so the engine resumes from the `latest.pth` it finds.
A run whose `results.json` says finished is never trained again.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import submitit

from semiseg.utils.run_files import ATTEMPTS_FILE, JOB_FILE, RESULTS_FILE
from semiseg.utils.safe_yaml import load_json_text, read_json
from semiseg.utils.textfiles import read_lines

from .rundir import is_finished

log = logging.getLogger(__name__)

DEFAULT_TRAIN_FN = 'semiseg.engine:train'
TERM_EXIT_CODE = 143                 # 128 + SIGTERM: stopped on request, state saved
USR2_GRACE_S = 3.0                   # a preemption sends SIGTERM, then USR2 right after


def utc_now() -> str:
    """Timestamp for the job records."""
    return datetime.now(timezone.utc).isoformat(timespec='seconds')


def read_job_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's `slurm_job.json` (None when the run was never submitted or it is unreadable)."""
    try:
        return read_json(Path(run_dir) / JOB_FILE)
    except (OSError, ValueError):
        return None


def slurm_job_id(record: dict[str, Any] | None) -> str | None:
    """The Slurm job id of a job record (None when the run was not submitted to Slurm)."""
    if record and record.get('cluster') == 'slurm' and record.get('job_id'):
        return str(record['job_id'])
    return None


def _resolve(dotted: str) -> Callable[..., Any]:
    """'package.module:function' -> the function (kept as a string so the job pickles small)."""
    module, _, name = dotted.partition(':')
    return getattr(importlib.import_module(module), name)


def _current_environment() -> submitit.JobEnvironment | None:
    """submitit's job environment, or None outside a submitit job."""
    try:
        return submitit.JobEnvironment()
    except RuntimeError:
        return None


class _StopRelay:
    """Turns USR2 (and SIGTERM) into a stop request at the next iteration boundary.

    Keeps submitit's USR2 handler so it can run it once the trainer has saved its state.
    """

    def __init__(self, usr_sig: signal.Signals, enabled: bool) -> None:
        self.usr_sig = usr_sig
        self.enabled = enabled        # False in-process (debug): the caller's handlers stay
        self.requeue_asked = False
        self.phase = 'starting'       # 'starting' -> 'training' -> 'stopping' | 'done'
        self.submitit_handler = signal.getsignal(usr_sig)
        self._previous_term = signal.getsignal(signal.SIGTERM)

    @property
    def active(self) -> bool:
        """Whether submitit installed a requeue handler (a Slurm or local submitit job)."""
        return self.enabled and callable(self.submitit_handler)

    def install(self) -> None:
        if self.active:
            signal.signal(self.usr_sig, self._on_usr)
            signal.signal(signal.SIGTERM, self._on_term)

    def restore(self) -> None:
        if self.active:
            signal.signal(self.usr_sig, self.submitit_handler)
            signal.signal(signal.SIGTERM, self._previous_term)

    def _on_usr(self, signum: int, frame: FrameType | None) -> None:
        log.warning('received %s: stopping at the end of this iteration, then requeueing',
                    signal.Signals(signum).name)
        self.requeue_asked = True
        if self.phase == 'training':
            _request_stop(f'received {signal.Signals(signum).name} (Slurm time limit or preemption)')
        elif self.phase == 'starting':  # nothing to save yet: requeue right away
            self.requeue()

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        log.warning('received SIGTERM: stopping at the end of this iteration')
        if self.phase == 'training':
            _request_stop('received SIGTERM')

    def wait_for_usr(self, grace_s: float) -> bool:
        """Give a USR2 that follows a SIGTERM (preemption) a moment to arrive."""
        deadline = time.monotonic() + grace_s
        while not self.requeue_asked and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.requeue_asked

    def requeue(self) -> None:
        """Run submitit's handler: pickle checkpoint(), `scontrol requeue`, exit (rank 0)."""
        self.submitit_handler(self.usr_sig, None)


def _request_stop(reason: str) -> None:
    from semiseg.engine.signals import request_stop
    request_stop(reason)


class TrainJob(submitit.helpers.Checkpointable):
    """Train `cfg` in `run_dir` as a submitit job (Slurm task, local subprocess or debug)."""

    def __init__(self, cfg: dict[str, Any], run_dir: str | Path, train_fn: str = DEFAULT_TRAIN_FN) -> None:
        self.cfg = cfg
        self.run_dir = str(run_dir)
        self.train_fn = train_fn      # 'module:function' called as fn(cfg, run_dir)

    def __call__(self) -> dict[str, Any]:
        run_dir = Path(self.run_dir)
        _log_to_stderr()
        if is_finished(run_dir):
            log.info('run %s already finished; not training it again', run_dir)
            return read_json(run_dir / RESULTS_FILE)
        env = _current_environment()
        if env is not None:
            self._export_distributed()
            if env.global_rank == 0:
                self._record_attempt(env)
        relay = _StopRelay(submitit.JobEnvironment._usr_sig(),
                           enabled=env is not None and env.cluster in ('slurm', 'local'))
        relay.install()
        try:
            relay.phase = 'training'
            results = _resolve(self.train_fn)(self.cfg, run_dir)
            relay.phase = 'done'
            return results
        except Exception as error:
            relay.phase = 'stopping'
            if not _is_interruption(error):
                raise
            if relay.active and relay.wait_for_usr(USR2_GRACE_S):
                log.warning('state saved in %s/latest.pth; requeueing', run_dir)
                relay.requeue()          # rank 0 exits here; other ranks wait to be requeued
                time.sleep(120)
                sys.exit(-1)
            if relay.active and env is not None and env.cluster == 'slurm':
                # plain SIGTERM (scancel, scontrol requeue, preemption by Slurm): no result pickle,
                # so Slurm's requeue (if any) is not mistaken for a finished job
                log.warning('stopped by SIGTERM; state saved in %s/latest.pth', run_dir)
                sys.exit(TERM_EXIT_CODE)
            raise
        finally:
            relay.phase = 'done'
            relay.restore()

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Requeue with a fresh job object: all training state is in the run folder."""
        log.info('checkpoint: the requeued job resumes %s from latest.pth', self.run_dir)
        return submitit.helpers.DelayedSubmission(
            TrainJob(self.cfg, self.run_dir, self.train_fn))

    def _export_distributed(self) -> None:
        """RANK, WORLD_SIZE, MASTER_ADDR/PORT from the Slurm allocation (port derived from the job id).

        CUDA_VISIBLE_DEVICES is left as Slurm set it: the engine picks cuda:LOCAL_RANK itself.
        """
        dist = submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False, overwrite=True)
        log.info('distributed: rank %d of %d (local rank %d), master %s:%d',
                 dist.rank, dist.world_size, dist.local_rank, dist.master_addr, dist.master_port)
        if self.cfg.get('nccl_p2p_disable'):
            os.environ['NCCL_P2P_DISABLE'] = '1'

    def _record_attempt(self, env: submitit.JobEnvironment) -> None:
        """Append this start to `slurm_attempts.jsonl` (requeues show up as further lines)."""
        line = json.dumps({'job_id': env.job_id, 'cluster': env.cluster,
                           'host': socket.gethostname(), 'start': utc_now()})
        with open(Path(self.run_dir) / ATTEMPTS_FILE, 'a') as f:
            f.write(line + '\n')


def read_attempts(run_dir: Path) -> list[dict[str, Any]]:
    """The job starts recorded in the run folder, oldest first."""
    try:
        lines = read_lines(Path(run_dir) / ATTEMPTS_FILE)
    except (OSError, ValueError):
        return []
    out = []
    for line in lines:
        try:
            out.append(load_json_text(line))
        except ValueError:
            continue
    return out


def _is_interruption(error: BaseException) -> bool:
    """Whether `error` is the engine's TrainingInterrupted (import deferred: torch-heavy)."""
    from semiseg.engine import TrainingInterrupted
    return isinstance(error, TrainingInterrupted)


def _log_to_stderr() -> None:
    """Job processes start with no logging set up; send INFO to the job's log file."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO,
                            format='%(asctime)s %(levelname)s %(name)s: %(message)s')
