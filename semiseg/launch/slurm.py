"""Submit runs through submitit: one Slurm job per run, or one job array for several runs.

Each run becomes a `TrainJob` (see `job.py`) bound to its run folder. Runs that need the same
resources share one array (`--array=0-N%P`); each array task trains one run with one process
per GPU, and torch.distributed is set up from the Slurm allocation inside the task. Everything a
cluster could reject (no sbatch, unknown partition, more GPUs or CPUs than a node has) is
checked with `sinfo` before anything is submitted.

`cluster='debug'` runs the same callable in this process (submitit's DebugExecutor: pdb on
error); `cluster='local'` runs it in a local subprocess with submitit's signal handling.
"""
from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import submitit

from semiseg.engine.options import option
from semiseg.utils.files import atomic_write_json

from .job import DEFAULT_TRAIN_FN, JOB_FILE, TrainJob, read_job_record, utc_now
from .options import SlurmOptions
from .rundir import is_finished

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ('slurm', 'debug', 'local')
LOG_FOLDER = 'slurm-logs'          # under exp/exp-E/: submitit pickles and job logs, per job id
SIGNAL_DELAY_S = 120               # USR2 this long before the time limit: finish the step, save
MAX_TIMEOUT_REQUEUES = 50          # time-limit requeues per run (preemptions do not count)
ACTIVE_STATES = ('PENDING', 'RUNNING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'CONFIGURING',
                 'COMPLETING', 'RESIZING', 'SUSPENDED', 'STOPPED')

Runner = Callable[[list[str]], str]


class SlurmError(RuntimeError):
    """A submission that cannot work; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Resources:
    """What one run asks of the cluster; runs with equal resources share a job array."""

    nodes: int
    tasks_per_node: int     # one task (process) per GPU; 1 for CPU runs
    gpus_per_node: int      # 0: a CPU run, no gres requested
    cpus_per_task: int


def run_resources(cfg: dict[str, Any], opts: SlurmOptions) -> Resources:
    """Nodes and GPUs from the run config (`n_nodes`, `n_gpus`), overridden by the options.

    A run whose `device` option is 'cpu' asks for no GPU and runs a single task.
    """
    nodes = opts.nodes if opts.nodes != 1 else int(cfg.get('n_nodes', 1) or 1)
    if option(cfg, 'device') == 'cpu':
        return Resources(nodes=1, tasks_per_node=1, gpus_per_node=0, cpus_per_task=opts.cpus_per_task)
    gpus = opts.gpus_per_node or int(cfg.get('n_gpus', 1) or 1)
    return Resources(nodes=nodes, tasks_per_node=gpus, gpus_per_node=gpus, cpus_per_task=opts.cpus_per_task)


def parse_extra_sbatch(items: list[str]) -> dict[str, Any]:
    """'key=value' / '--key=value' / 'flag' strings -> submitit's additional_parameters."""
    extra: dict[str, Any] = {}
    for item in items:
        text = item.strip()
        key, sep, value = text.lstrip('-').partition('=')
        if not key or (sep and not value) or ' ' in key:
            raise SlurmError(f'cannot read extra sbatch option {item!r}; write it as key=value '
                             f'(e.g. mail-type=END) or as a bare flag (e.g. exclusive)')
        extra[key] = value if sep else True
    return extra


def sbatch_parameters(res: Resources, opts: SlurmOptions, job_name: str) -> dict[str, Any]:
    """Parameters for `submitit.SlurmExecutor.update_parameters` (native sbatch names)."""
    params: dict[str, Any] = {
        'job_name': job_name,
        'time': opts.time_min,
        'nodes': res.nodes,
        'ntasks_per_node': res.tasks_per_node,
        'cpus_per_task': res.cpus_per_task,
        'signal_delay_s': SIGNAL_DELAY_S,
        'array_parallelism': opts.array_parallelism,
        'setup': [
            # the job imports this checkout's semiseg, wherever sbatch was called from
            f'export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}',
            # torch would start one thread per core of the whole node: keep to the allocation
            'export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}',
        ],
    }
    if res.gpus_per_node:
        params['gpus_per_node'] = res.gpus_per_node
    for key in ('partition', 'account', 'qos', 'constraint'):
        if getattr(opts, key):
            params[key] = getattr(opts, key)
    if opts.mem_gb:
        params['mem'] = f'{opts.mem_gb}GB'
    if opts.extra_sbatch:
        params['additional_parameters'] = parse_extra_sbatch(opts.extra_sbatch)
    return params


def job_name(cfgs: list[dict[str, Any]]) -> str:
    """'semiseg-e40' for a job (array) of experiment 40."""
    exps = sorted({str(c.get('exp', 'x')) for c in cfgs})
    return 'semiseg-e' + '-'.join(exps)


def render_sbatch(runs: list[tuple[dict[str, Any], Path]], opts: SlurmOptions, folder: Path,
                  python: str | None = None) -> str:
    """The sbatch script submitit writes for `runs` (an array when there are several).

    Uses submitit's own script builder, so the text is what `sbatch` receives; all runs must
    need the same resources (as within one array).
    """
    from submitit.slurm.slurm import _make_sbatch_string
    resources = {run_resources(cfg, opts) for cfg, _ in runs}
    if len(resources) != 1:
        raise SlurmError('runs with different resources go to separate job arrays; render them one group at a time')
    params = sbatch_parameters(resources.pop(), opts, job_name([cfg for cfg, _ in runs]))
    command = ' '.join([python or shlex.quote(sys.executable), '-u -m submitit.core._submit',
                        shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder,
                               map_count=len(runs) if len(runs) > 1 else None, **params)


# ---------------------------------------------------------------- checks against the cluster

@dataclass
class PartitionInfo:
    """Largest node of a partition, as `sinfo` reports it."""

    nodes: int = 0
    cpus: int = 0
    gpus: int = 0
    mem_mb: int = 0


def run_command(cmd: list[str]) -> str:
    """Run a Slurm client command; its stdout (raises on failure or after 60 s)."""
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def gres_gpu_count(gres: str) -> int:
    """GPUs in a node's gres string: 'gpu:a100:4(S:0-1),gpu:2' -> 6, '(null)' -> 0."""
    total = 0
    for item in re.split(r',(?![^(]*\))', gres):
        parts = re.sub(r'\(.*?\)', '', item).strip().split(':')
        if parts[0] == 'gpu' and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def parse_sinfo(text: str) -> tuple[dict[str, PartitionInfo], str | None]:
    """Lines of `sinfo -h -N -o '%P|%c|%m|%G'` -> partitions and the default partition."""
    parts: dict[str, PartitionInfo] = {}
    default = None
    for line in text.splitlines():
        if not line.strip():
            continue
        name, cpus, mem, gres = (line.split('|') + ['', '', ''])[:4]
        if name.endswith('*'):
            name = name[:-1]
            default = name
        info = parts.setdefault(name, PartitionInfo())
        info.nodes += 1
        info.cpus = max(info.cpus, int(re.sub(r'\D', '', cpus) or 0))
        info.mem_mb = max(info.mem_mb, int(re.sub(r'\D', '', mem) or 0))
        info.gpus = max(info.gpus, gres_gpu_count(gres))
    return parts, default


def check_tools() -> None:
    """sbatch and srun must be on PATH (submitit runs every task through srun)."""
    missing = [tool for tool in ('sbatch', 'srun', 'sinfo') if shutil.which(tool) is None]
    if missing:
        raise SlurmError(f'{", ".join(missing)} not found on PATH: --launcher slurm needs a Slurm login node; '
                         f'use --launcher local to train here, or --launcher debug to test the job in-process')


def check_request(groups: dict[Resources, list], opts: SlurmOptions,
                  partitions: dict[str, PartitionInfo], default: str | None) -> None:
    """Fail before submitting when the partition cannot run the requested jobs."""
    if not partitions:
        raise SlurmError('sinfo lists no partitions: is the Slurm controller reachable?')
    name = opts.partition or default
    if name is None:
        raise SlurmError(f'the cluster has no default partition; choose one with --partition '
                         f'({", ".join(sorted(partitions))})')
    if name not in partitions:
        raise SlurmError(f'unknown Slurm partition {name!r}; available: {", ".join(sorted(partitions))} '
                         f'(set --partition or "partition:" in the Slurm defaults file)')
    part = partitions[name]
    for res, runs in groups.items():
        first = runs[0][0].get('name', '?')
        if res.gpus_per_node > part.gpus:
            raise SlurmError(
                f'run {first} needs {res.gpus_per_node} GPUs per node but the largest node of partition '
                f'{name!r} has {part.gpus}; pass --gpus-per-node {part.gpus or "N"} (fewer GPUs, '
                f'same global batch needs more iterations), pick a GPU partition with --partition'
                + (', or train on the CPU with --cfg-options device=cpu' if part.gpus == 0 else ''))
        if res.nodes > part.nodes:
            raise SlurmError(f'run {first} needs {res.nodes} nodes but partition {name!r} has {part.nodes}; '
                             f'pass --nodes {part.nodes}')
        cpus = res.cpus_per_task * res.tasks_per_node
        if part.cpus and cpus > part.cpus:
            raise SlurmError(f'run {first} asks for {res.tasks_per_node} task(s) x {res.cpus_per_task} CPUs = '
                             f'{cpus} CPUs per node but nodes of partition {name!r} have {part.cpus}; '
                             f'lower --cpus-per-task')
    if opts.mem_gb and part.mem_mb and opts.mem_gb * 1024 > part.mem_mb:
        raise SlurmError(f'--mem-gb {opts.mem_gb} exceeds the {part.mem_mb // 1024} GB of the largest node '
                         f'of partition {name!r}; lower --mem-gb')


# ---------------------------------------------------------------- job state

def slurm_states(job_ids: list[str], runner: Runner = run_command) -> dict[str, str]:
    """Current Slurm state per job id ('12' or '12_3'): squeue first, sacct for ended jobs.

    Missing tools or a failing query give an empty answer for those ids, never an error.
    """
    states: dict[str, str] = {}
    ids = sorted({j for j in job_ids if j})
    if not ids:
        return states
    base = ','.join(sorted({j.split('_')[0] for j in ids}))
    if shutil.which('squeue'):
        try:
            out = runner(['squeue', '-h', '-r', '-o', '%i|%T', '-j', base])
            states.update(_parse_state_lines(out))
        except (subprocess.SubprocessError, OSError):
            log.debug('squeue failed for %s', base)
    if shutil.which('sacct') and any(j not in states for j in ids):
        try:
            out = runner(['sacct', '-n', '-X', '-P', '-o', 'JobID,State', '-j', base])
            for job, state in _parse_state_lines(out).items():
                states.setdefault(job, state)
        except (subprocess.SubprocessError, OSError):
            log.debug('sacct failed for %s', base)
    return {j: states[j] for j in ids if j in states}


def _parse_state_lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if '|' in line:
            job, state = line.split('|', 1)
            out[job.strip()] = state.strip().split()[0] if state.strip() else ''
    return out


def active_job(run_dir: Path, runner: Runner = run_command) -> str | None:
    """The id of a queued or running Slurm job that trains `run_dir`, if any."""
    record = read_job_record(run_dir)
    if not record or record.get('cluster') != 'slurm':
        return None
    job_id = record.get('job_id')
    state = slurm_states([job_id], runner).get(job_id)
    return job_id if state in ACTIVE_STATES else None


# ---------------------------------------------------------------- submission

def _executor(cluster: str, folder: Path, params: dict[str, Any], res: Resources) -> submitit.Executor:
    if cluster == 'slurm':
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_TIMEOUT_REQUEUES)
        executor.update_parameters(**params)
    elif cluster == 'local':
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=MAX_TIMEOUT_REQUEUES)
        executor.update_parameters(timeout_min=params['time'], gpus_per_node=res.gpus_per_node,
                                   tasks_per_node=res.tasks_per_node, signal_delay_s=SIGNAL_DELAY_S)
    else:
        executor = submitit.DebugExecutor(folder=folder)
    return executor


def _group(runs: list[tuple[dict[str, Any], Path]], opts: SlurmOptions) -> dict[Resources, list]:
    groups: dict[Resources, list] = {}
    for cfg, run_dir in runs:
        groups.setdefault(run_resources(cfg, opts), []).append((cfg, Path(run_dir)))
    return groups


def _write_record(run_dir: Path, job: submitit.Job, cluster: str, res: Resources, opts: SlurmOptions) -> None:
    """Store the job id and log paths in the run folder (read by --status)."""
    record = {
        'cluster': cluster, 'job_id': str(job.job_id), 'submitted': utc_now(),
        'partition': opts.partition, 'resources': asdict(res),
        'stdout': str(job.paths.stdout), 'stderr': str(job.paths.stderr),
    }
    previous = read_job_record(run_dir)
    if previous:
        record['previous_jobs'] = previous.get('previous_jobs', []) + [previous.get('job_id')]
    atomic_write_json(run_dir / JOB_FILE, record)


def submit(runs: list[tuple[dict[str, Any], Path]], opts: SlurmOptions, cluster: str = 'slurm',
           train_fn: str = DEFAULT_TRAIN_FN) -> list[submitit.Job]:
    """Submit `(config, run folder)` pairs; returns the submitted jobs in input order.

    Finished runs and runs whose folder already has a queued/running job are skipped (with a
    warning); everything else is validated before the first submission. With `cluster='debug'`
    the jobs have run (in this process) when this returns.
    """
    if cluster not in CLUSTERS:
        raise SlurmError(f'unknown cluster {cluster!r}; choose one of {", ".join(CLUSTERS)}')
    if cluster == 'slurm':
        check_tools()
    todo = []
    for cfg, run_dir in runs:
        run_dir = Path(run_dir)
        if is_finished(run_dir):
            log.warning('run %s already finished in %s; skipped (use --force for a new run)', cfg['name'], run_dir)
            continue
        busy = active_job(run_dir) if cluster == 'slurm' else None
        if busy:
            log.warning('run %s already has Slurm job %s queued or running in %s; skipped '
                        '(scancel %s first to resubmit)', cfg['name'], busy, run_dir, busy)
            continue
        todo.append((cfg, run_dir))
    groups = _group(todo, opts)
    if cluster == 'slurm' and groups:
        partitions, default = parse_sinfo(run_command(['sinfo', '-h', '-N', '-o', '%P|%c|%m|%G']))
        check_request(groups, opts, partitions, default)
    jobs: dict[Path, submitit.Job] = {}
    for res, group in groups.items():
        folder = group[0][1].parent / LOG_FOLDER / '%j'
        params = sbatch_parameters(res, opts, job_name([cfg for cfg, _ in group]))
        executor = _executor(cluster, folder, params, res)
        callables = [TrainJob(cfg, run_dir, train_fn=train_fn)
                     for cfg, run_dir in group]
        with executor.batch():
            submitted = [executor.submit(fn) for fn in callables]
        for (cfg, run_dir), job in zip(group, submitted):
            _write_record(run_dir, job, cluster, res, opts)
            jobs[run_dir] = job
            log.info('run %s -> %s job %s (log %s)', cfg['name'], cluster, job.job_id, job.paths.stdout)
    ordered = [jobs[run_dir] for _, run_dir in todo]
    if cluster == 'debug':
        for job in ordered:
            job.result()
    return ordered
