"""Submit runs through submitit: one Slurm job per run, or one job array for several runs.

Each run becomes a `TrainJob` (see `job.py`) bound to its run folder. Runs that need the same
resources share one array (`--array=0-N%P`); each array task trains one run with one process
per GPU, and torch.distributed is set up from the Slurm allocation inside the task. Everything a
cluster could reject (no sbatch, unknown partition, more GPUs or CPUs than a node has) is
checked with `sinfo` before anything is submitted.

A group larger than the cluster's `MaxArraySize` (which caps the array *index*: indices run up to
MaxArraySize - 1) is split into several arrays, each counting from 0; submitit pickles one task per
index, so every chunk maps its own indices to its runs. `--max-parallel P` stays a cap over the
whole group: chunks run side by side only while their throttles add up to at most P, otherwise a
chunk waits for an earlier one (`--dependency=afterany`), see `plan_arrays`.

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
from semiseg.utils.run_files import JOB_FILE

from .job import DEFAULT_TRAIN_FN, TrainJob, read_job_record, slurm_job_id, utc_now
from .options import SlurmOptions
from .rundir import is_finished

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ('slurm', 'debug', 'local')
DEFAULT_MAX_ARRAY_SIZE = 1001      # Slurm's default MaxArraySize (slurm.conf(5))
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
                  python: str | None = None, parallelism: int | None = None,
                  dependency: str | None = None) -> str:
    """The sbatch script submitit writes for `runs` (an array when there are several).

    Uses submitit's own script builder, so the text is what `sbatch` receives; all runs must
    need the same resources (as within one array). `parallelism` and `dependency` are an
    `ArrayPlan`'s throttle and `--dependency` (default: the options' throttle, none).
    """
    from submitit.slurm.slurm import _make_sbatch_string
    resources = {run_resources(cfg, opts) for cfg, _ in runs}
    if len(resources) != 1:
        raise SlurmError('runs with different resources go to separate job arrays; render them one group at a time')
    params = sbatch_parameters(resources.pop(), opts, job_name([cfg for cfg, _ in runs]))
    if parallelism is not None:
        params['array_parallelism'] = parallelism
    if dependency:
        params['dependency'] = dependency
    command = ' '.join([python or shlex.quote(sys.executable), '-u -m submitit.core._submit',
                        shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder,
                               map_count=len(runs) if len(runs) > 1 else None, **params)


# ---------------------------------------------------------------- arrays under MaxArraySize

@dataclass(frozen=True)
class ArrayPlan:
    """One sbatch submission: `size` runs of one resource group, array indices 0..size-1."""

    group: int              # resource group (position in submission order)
    chunk: int              # chunk of the group, from 0
    chunks: int             # chunks of the group
    start: int              # position of its first run within the group
    size: int               # runs (= array tasks; a one-run chunk is a plain job)
    parallelism: int        # its `%P` throttle
    after: int | None       # position in the plan of the array it waits for (afterany), if any


def plan_arrays(group_sizes: list[int], max_parallel: int, max_array_size: int) -> list[ArrayPlan]:
    """Split each resource group into arrays of at most `max_array_size` tasks, throttled so that
    at most `max_parallel` tasks of a group run at once.

    Chunks of a group form `lanes` = max_parallel // (throttle of a full chunk) parallel lanes
    (at least one); within a lane a chunk starts after the previous one ended (afterany), so the
    throttles of the arrays that can run together add up to at most `max_parallel`.
    """
    if max_parallel < 1 or max_array_size < 1:
        raise ValueError(f'max_parallel and max_array_size must be positive, got {max_parallel}, {max_array_size}')
    plans: list[ArrayPlan] = []
    for group, total in enumerate(group_sizes):
        chunks = -(-total // max_array_size)
        throttle = min(max_parallel, max_array_size, total)
        lanes = max(1, max_parallel // throttle) if throttle else 1
        first = len(plans)
        for chunk in range(chunks):
            start = chunk * max_array_size
            size = min(max_array_size, total - start)
            after = first + chunk - lanes if chunk >= lanes else None
            plans.append(ArrayPlan(group, chunk, chunks, start, size, min(size, throttle), after))
    return plans


def parse_max_array_size(config_text: str) -> int | None:
    """MaxArraySize from `scontrol show config` output (None when absent)."""
    match = re.search(r'^\s*MaxArraySize\s*=\s*(\d+)', config_text, flags=re.MULTILINE)
    return int(match.group(1)) if match else None


def cluster_max_array_size(opts: SlurmOptions, runner: Runner | None = None) -> tuple[int, str]:
    """(MaxArraySize, where it came from): the option, else `scontrol show config`, else Slurm's
    default 1001."""
    if opts.max_array_size:
        return opts.max_array_size, 'from --max-array-size or the Slurm defaults file'
    if runner is None and shutil.which('scontrol') is None:
        return DEFAULT_MAX_ARRAY_SIZE, "Slurm's default (scontrol not found; set --max-array-size)"
    try:
        found = parse_max_array_size((runner or run_command)(['scontrol', 'show', 'config']))
    except (subprocess.SubprocessError, OSError) as err:
        log.debug('scontrol show config failed: %s', err)
        found = None
    if found is None:
        return DEFAULT_MAX_ARRAY_SIZE, "Slurm's default (scontrol did not say; set --max-array-size)"
    return found, 'scontrol show config'


def describe_plan(plans: list[ArrayPlan], group_labels: list[list[str]], max_array_size: int, source: str,
                  max_parallel: int) -> str:
    """What a submission creates: arrays, tasks each, the runs they train, throttles, dependencies."""
    lines = [f'Slurm plan: {sum(p.size for p in plans)} run(s) in {len(plans)} submission(s) '
             f'(MaxArraySize {max_array_size}: {source}; --max-parallel {max_parallel} per resource group)']
    for k, plan in enumerate(plans):
        labels = group_labels[plan.group][plan.start:plan.start + plan.size]
        kind = f'array 0-{plan.size - 1}%{plan.parallelism}' if plan.size > 1 else 'single job'
        wait = f', starts when submission {plan.after + 1} has ended' if plan.after is not None else ''
        shown = ','.join(labels[:8]) + (f',... ({len(labels) - 8} more)' if len(labels) > 8 else '')
        lines.append(f'  submission {k + 1}: resource group {plan.group + 1}, chunk {plan.chunk + 1}/{plan.chunks}, '
                     f'{kind} ({plan.size} task(s)){wait}; runs {shown}')
    return '\n'.join(lines)


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
    return active_jobs([run_dir], runner).get(Path(run_dir))


def active_jobs(run_dirs: list[Path], runner: Runner = run_command) -> dict[Path, str]:
    """Run folder -> id of its queued or running Slurm job, for the folders that have one
    (one squeue/sacct query for all of them, whatever arrays they belong to)."""
    ids = {Path(d): slurm_job_id(read_job_record(d)) for d in run_dirs}
    wanted = [j for j in ids.values() if j]
    states = slurm_states(wanted, runner) if wanted else {}
    return {d: j for d, j in ids.items() if j and states.get(j) in ACTIVE_STATES}


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


def _write_record(run_dir: Path, job: submitit.Job, cluster: str, res: Resources, opts: SlurmOptions,
                  plan: ArrayPlan | None = None) -> None:
    """Store the job id and log paths in the run folder (read by --status)."""
    record = {
        'cluster': cluster, 'job_id': str(job.job_id), 'submitted': utc_now(),
        'partition': opts.partition, 'resources': asdict(res),
        'stdout': str(job.paths.stdout), 'stderr': str(job.paths.stderr),
    }
    if plan is not None and plan.chunks > 1:
        record['array_chunk'] = {'chunk': plan.chunk, 'chunks': plan.chunks, 'first_run': plan.start}
    previous = read_job_record(run_dir)
    if previous:
        record['previous_jobs'] = previous.get('previous_jobs', []) + [previous.get('job_id')]
    atomic_write_json(run_dir / JOB_FILE, record)


def submission_plan(runs: list[tuple[dict[str, Any], Path]], opts: SlurmOptions, cluster: str = 'slurm',
                    runner: Runner | None = None, labels: list[str] | None = None,
                    ) -> tuple[list[Resources], list[list], list[ArrayPlan], str]:
    """(resource groups, their runs, the arrays to submit, a description of the plan naming each
    run by its label: the run id, by default its position in `runs`).

    Only a real Slurm cluster splits arrays (`local` and `debug` have no MaxArraySize)."""
    labels = labels or [str(k) for k in range(len(runs))]
    groups: dict[Resources, list] = {}
    named: dict[Resources, list[str]] = {}
    for (cfg, run_dir), label in zip(runs, labels):
        res = run_resources(cfg, opts)
        groups.setdefault(res, []).append((cfg, Path(run_dir)))
        named.setdefault(res, []).append(label)
    keys, members = list(groups), list(groups.values())
    if cluster == 'slurm':
        max_size, source = cluster_max_array_size(opts, runner)
    else:
        max_size, source = max([len(m) for m in members] + [1]), f'no limit with cluster={cluster}'
    plans = plan_arrays([len(m) for m in members], opts.array_parallelism, max_size)
    return keys, members, plans, describe_plan(plans, list(named.values()), max_size, source, opts.array_parallelism)


def dry_run_text(runs: list[tuple[dict[str, Any], Path]], opts: SlurmOptions, cluster: str = 'slurm',
                 runner: Runner | None = None, labels: list[str] | None = None) -> str:
    """What `--dry-run` prints: the plan (arrays, tasks each) and the sbatch script of each
    group's first array (the other chunks differ only in --array and --dependency)."""
    if not runs:
        return 'nothing to submit'
    if cluster == 'debug':
        return f'debug: submitit DebugExecutor trains {len(runs)} run(s) in this process, one by one'
    _, members, plans, text = submission_plan(runs, opts, cluster, runner, labels)
    out = [text]
    for plan in plans:
        if plan.chunk:
            continue
        group = members[plan.group][plan.start:plan.start + plan.size]
        script = render_sbatch(group, opts, group[0][1].parent / LOG_FOLDER / '%j', parallelism=plan.parallelism)
        out.append(f'sbatch script of submission {plans.index(plan) + 1} ({plan.size} run(s)):\n{script}')
    return '\n'.join(out)


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
    runs = [(cfg, Path(run_dir)) for cfg, run_dir in runs]
    busy = active_jobs([d for _, d in runs]) if cluster == 'slurm' else {}
    todo = []
    for cfg, run_dir in runs:
        if is_finished(run_dir):
            log.warning('run %s already finished in %s; skipped (use --force for a new run)', cfg['name'], run_dir)
            continue
        if run_dir in busy:
            log.warning('run %s already has Slurm job %s queued or running in %s; skipped '
                        '(scancel %s first to resubmit)', cfg['name'], busy[run_dir], run_dir, busy[run_dir])
            continue
        todo.append((cfg, run_dir))
    if not todo:
        return []
    keys, members, plans, text = submission_plan(todo, opts, cluster)
    if cluster == 'slurm':
        partitions, default = parse_sinfo(run_command(['sinfo', '-h', '-N', '-o', '%P|%c|%m|%G']))
        check_request(dict(zip(keys, members)), opts, partitions, default)
    log.info('%s', text)
    jobs: dict[Path, submitit.Job] = {}
    array_ids: list[str] = []
    for plan in plans:
        res, group = keys[plan.group], members[plan.group][plan.start:plan.start + plan.size]
        folder = group[0][1].parent / LOG_FOLDER / '%j'
        params = sbatch_parameters(res, opts, job_name([cfg for cfg, _ in group]))
        params['array_parallelism'] = plan.parallelism
        if plan.after is not None:
            params['dependency'] = f'afterany:{array_ids[plan.after]}'
        executor = _executor(cluster, folder, params, res)
        with executor.batch():
            submitted = [executor.submit(TrainJob(cfg, run_dir, train_fn=train_fn)) for cfg, run_dir in group]
        array_ids.append(str(submitted[0].job_id).split('_')[0])
        for (cfg, run_dir), job in zip(group, submitted):
            _write_record(run_dir, job, cluster, res, opts, plan)
            jobs[run_dir] = job
            log.info('run %s -> %s job %s (log %s)', cfg['name'], cluster, job.job_id, job.paths.stdout)
    ordered = [jobs[run_dir] for _, run_dir in todo]
    if cluster == 'debug':
        for job in ordered:
            job.result()
    return ordered
