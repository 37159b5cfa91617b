"""Local launch: one process in-process (1 GPU or the CPU), or torchrun over several GPUs.

Several runs given together train one after another. The engine is imported lazily so that
configs can be written and inspected without importing torch-heavy code. The CLI launches through
`launch_claimed`: each run under its config's claim, so that launches started together train each
run once (see `claim.py`).
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semiseg.engine.options import option
from semiseg.engine.signals import StopBeforeTraining, mark_interrupted, wait_forwarding_stops
from semiseg.utils.cli import EXIT_INTERRUPTED
from semiseg.utils.errors import failure_message
from semiseg.utils.run_files import LOG_FILE

from .claim import ConfigClaim, busy_line, folder_trainer
from .rundir import create_run_dir, find_finished, find_resumable

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


class LaunchError(RuntimeError):
    """The requested local launch is impossible on this machine (message says how to fix it)."""


@dataclass(frozen=True)
class LocalPlan:
    """How one run is started locally."""

    mode: str     # 'in-process' or 'torchrun'
    nprocs: int   # processes (= GPUs) for torchrun; 1 in-process


def cuda_device_count() -> int:
    """Visible CUDA devices (0 without CUDA)."""
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def visible_gpus(cfgs: list[dict[str, Any]]) -> int:
    """`cuda_device_count()`, or 0 without importing torch when every run of `cfgs` trains on the
    CPU (16 launchers started together with little to train stay light)."""
    if all(option(cfg, 'device') == 'cpu' for cfg in cfgs):
        return 0
    return cuda_device_count()


def check_local_hardware(cfg: dict[str, Any], wanted: int, cuda_count: int) -> None:
    """LaunchError, before anything is written, when this machine cannot train `cfg` as its config
    records it: device=cuda without CUDA, or several processes (n_gpus x n_nodes, which set the global
    batch and the run name) where one would run (the CPU, one node). Every recorded number is then
    what actually runs."""
    name, device = cfg.get('name'), option(cfg, 'device')
    if device == 'cuda' and cuda_count == 0:
        raise LaunchError(f'run {name} asks for device=cuda but no CUDA device is visible on this machine; '
                          f'use --cfg-options device=auto (or cpu) to train on the CPU, or a GPU machine')
    nodes = int(cfg.get('n_nodes') or 1)
    if nodes > 1:
        raise LaunchError(f'run {name} is configured for {nodes} nodes but a local launch uses this machine '
                          f'only; pass --nodes 1 (the global batch and the name follow) or --launcher slurm')
    if wanted > 1 and (device == 'cpu' or cuda_count == 0):
        where = 'it trains on the CPU (device=cpu)' if device == 'cpu' else 'no CUDA device is visible here'
        raise LaunchError(f'run {name} wants {wanted} GPUs but {where}: one process would train while the '
                          f'config and the name record {wanted}; pass --ngpus 1 or --ngpus auto (the global '
                          f'batch and the name follow) or launch on a GPU machine')


def plan_local(cfg: dict[str, Any], ngpus: int | None, cuda_count: int) -> LocalPlan:
    """Decide in-process vs torchrun for `cfg` given `--ngpus` and the visible GPUs."""
    wanted = ngpus or int(cfg.get('n_gpus', 1))
    if wanted < 1:
        raise LaunchError(f'--ngpus must be at least 1, got {wanted}')
    check_local_hardware(cfg, wanted, cuda_count)
    if option(cfg, 'device') == 'cpu' or wanted == 1:
        return LocalPlan('in-process', 1)
    if wanted > cuda_count:
        raise LaunchError(f'run {cfg.get("name")} wants {wanted} GPUs but only {cuda_count} are visible; '
                          f'pass --ngpus {cuda_count} (or fewer, or --ngpus auto)')
    return LocalPlan('torchrun', wanted)


def free_port() -> int:
    """A TCP port that is free right now (the OS picks it: bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def build_torchrun_command(run_dir: Path, ngpus: int, port: int) -> list[str]:
    """The torchrun command line for a single-node run of `ngpus` processes.

    `python -m torch.distributed.run` is torchrun run by this very interpreter.
    """
    return [sys.executable, '-m', 'torch.distributed.run',
            '--nproc_per_node', str(ngpus), '--master_addr', '127.0.0.1', '--master_port', str(port),
            '-m', 'semiseg.engine.run', '--run-dir', str(run_dir)]


def in_process_command(run_dir: Path) -> list[str]:
    """The stand-alone equivalent of the in-process launch (what a dry run shows)."""
    return [sys.executable, '-m', 'semiseg.engine.run', '--run-dir', str(run_dir)]


def describe(plan: LocalPlan, run_dir: Path, port: int | None = None) -> str:
    """One line saying how the run would start, with the exact command."""
    if plan.mode == 'torchrun':
        return 'torchrun: ' + shlex.join(build_torchrun_command(run_dir, plan.nprocs, port or free_port()))
    return 'in-process (semiseg.engine.train), equivalent to: ' + shlex.join(in_process_command(run_dir))


def _subprocess_env() -> dict[str, str]:
    """Environment for child processes: this checkout importable as `semiseg`."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get('PYTHONPATH')) if p)
    return env


def run_in_process(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train `cfg` in this process; returns the engine's results."""
    from semiseg.engine import train
    return train(cfg, Path(run_dir))


def run_torchrun(run_dir: Path, ngpus: int) -> int:
    """Train the run in `run_dir` with torchrun over `ngpus` local GPUs; returns the exit code."""
    cmd = build_torchrun_command(run_dir, ngpus, free_port())
    log.info('launching %s', shlex.join(cmd))
    return wait_forwarding_stops(subprocess.Popen(cmd, env=_subprocess_env()))   # a stop reaches torchrun


def _train_one(cfg: dict[str, Any], run_dir: Path, plan: LocalPlan) -> str:
    """Train one run: 'finished', 'failed' (one line said why) or 'interrupted'."""
    log.info('run %s: %s', cfg['name'], describe(plan, run_dir))
    if plan.mode == 'torchrun':
        code = run_torchrun(run_dir, plan.nprocs)
        if code == EXIT_INTERRUPTED:
            return 'interrupted'
        if code != 0:
            print(f'experiments.py: error: run {cfg["name"]} failed (torchrun exit code {code}); see '
                  f'{run_dir / LOG_FILE}', file=sys.stderr)
            return 'failed'
        return 'finished'
    from semiseg.engine import TrainingInterrupted
    try:
        results = run_in_process(cfg, run_dir)
    except TrainingInterrupted as e:
        print(f'experiments.py: interrupted: {e}; the same command resumes it', file=sys.stderr)
        return 'interrupted'
    except StopBeforeTraining as stop:   # a stop while the trainer started or wound down
        mark_interrupted(run_dir, str(stop))
        print(f'experiments.py: interrupted ({stop}) while run {cfg["name"]} started; the same command '
              f'resumes it', file=sys.stderr)
        return 'interrupted'
    except Exception as e:  # noqa: BLE001 - every failure of a run is reported in one line
        print(f'experiments.py: error: run {cfg["name"]}: {failure_message(e, run_dir)}', file=sys.stderr)
        return 'failed'
    log.info('run %s finished: mIoU %.2f (best %.2f)', cfg['name'], results['miou'], results['best_miou'])
    return 'finished'


def _exit_code(failed: list[str], total: int) -> int:
    if failed:
        log.error('%d of %d runs failed: %s', len(failed), total, ', '.join(failed))
        return 1
    return 0


def launch_local(runs: list[tuple[dict[str, Any], Path]], ngpus: int | None = None,
                 cuda_count: int | None = None) -> int:
    """Train `runs` one after another; returns 0 if all finished, 1 if one failed, 3 if interrupted.

    A failed run gets one line (its cause and fix; the traceback is in its train.log) and the next
    run starts; an interruption (SIGTERM, SIGUSR1, Ctrl-C) stops the sequence: latest.pth is saved
    and the same command resumes.
    """
    if cuda_count is None:
        cuda_count = visible_gpus([cfg for cfg, _ in runs])
    plans = [plan_local(cfg, ngpus, cuda_count) for cfg, _ in runs]  # fail before starting any
    failed = []
    for (cfg, run_dir), plan in zip(runs, plans):
        outcome = _train_one(cfg, run_dir, plan)
        if outcome == 'interrupted':
            return EXIT_INTERRUPTED
        if outcome == 'failed':
            failed.append(cfg['name'])
    return _exit_code(failed, len(runs))


def _claimed_folder(index: int, cfg: dict[str, Any], exp_root: Path, force: bool,
                    claim: ConfigClaim) -> Path | None:
    """Under the config's claim: the folder to train (resumed or new), or None to move on."""
    if not force:
        finished = find_finished(cfg, exp_root)
        if finished is not None:
            print(f'run {index} ({cfg["name"]}) finished meanwhile in {finished}; not training it again')
            return None
        resumable = find_resumable(cfg, exp_root)
        if resumable is not None:
            owner = folder_trainer(resumable)
            if owner is not None:       # a trainer that took only the run lock (engine.run), a Slurm job
                print(busy_line(index, cfg, owner, resumable))
                return None
            print(f'run {index}: resuming {resumable}')
            claim.note_folder(resumable)
            return resumable
    run_dir = create_run_dir(cfg, exp_root)
    claim.note_folder(run_dir)
    print(f'run {index}: new run folder {run_dir}')
    return run_dir


def launch_claimed(selected: list[Any], exp_root: Path, ngpus: int | None = None,
                   cuda_count: int | None = None, force: bool = False,
                   prepare: Callable[[list[dict[str, Any]]], None] | None = None) -> int:
    """Train the selected runs one after another, each under its config's claim (`claim.py`).

    `selected` holds objects with `index` (run id) and `cfg`. For each run this process takes the
    claim first; when another live launcher holds it, one line says who and the next run follows.
    With the claim held it decides afresh: finished meanwhile (skip), unfinished folder (resume,
    unless a trainer holds its run lock), else a new folder. `force` always starts a new folder, and
    does not wait for a claim held elsewhere (a repeat on purpose). `prepare(cfgs)` (the data
    checks) runs once, with the first claim held and before the first folder is made or resumed, so
    a launcher left with nothing to train never pays for it. Exit codes as `launch_local`; a folder
    that cannot be created is an OSError (the CLI reports it).
    """
    if cuda_count is None:
        cuda_count = visible_gpus([item.cfg for item in selected])
    plans = [plan_local(item.cfg, ngpus, cuda_count) for item in selected]  # fail before starting any
    failed = []
    for item, plan in zip(selected, plans):
        claim = ConfigClaim(item.cfg, exp_root)
        owner = claim.take()
        if owner is not None and not force:
            folder = owner.get('run_dir')
            print(busy_line(item.index, item.cfg, owner, Path(folder) if folder else None))
            continue
        try:
            if prepare is not None:
                prepare([other.cfg for other in selected])
                prepare = None
            run_dir = _claimed_folder(item.index, item.cfg, exp_root, force, claim)
            if run_dir is None:
                continue
            outcome = _train_one(item.cfg, run_dir, plan)
        finally:
            claim.release()
        if outcome == 'interrupted':
            return EXIT_INTERRUPTED
        if outcome == 'failed':
            failed.append(item.cfg['name'])
    return _exit_code(failed, len(selected))
