"""Experiment 0 through a real (local, single-node) Slurm: arrays, preemption requeue, plain requeue.

Needs the cluster of tests/slurm/setup.sh (with accounting); skipped when it is not up. The toy
dataset's split lists are trimmed (32 unlabeled -> 8 iterations per epoch, 4 val images) so a run
takes seconds; everything else is the real exp-0 training.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slurm


def _cluster_up() -> str | None:
    """None when sbatch, sinfo and sacct answer; else the reason to skip."""
    for tool in ('sbatch', 'srun', 'sinfo', 'sacct', 'scontrol'):
        if shutil.which(tool) is None:
            return f'{tool} not on PATH (start the local cluster with: bash tests/slurm/setup.sh)'
    try:
        states = subprocess.run(['sinfo', '-h', '-o', '%T'], capture_output=True, text=True, timeout=10)
        acct = subprocess.run(['sacct', '-n', '-X', '-S', 'now'], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f'Slurm does not answer: {e}'
    if states.returncode != 0 or not ({'idle', 'mixed', 'allocated'} & set(states.stdout.split())):
        return f'no usable Slurm node: {states.stdout.strip() or states.stderr.strip()}'
    if acct.returncode != 0:
        return f'sacct fails (accounting needed to see cancelled jobs): {acct.stderr.strip()}'
    return None


_SKIP = _cluster_up()
if _SKIP:
    pytest.skip(_SKIP, allow_module_level=True)

from _toy_data import trimmed_toy  # noqa: E402

from semiseg.experiments.registry import get_runs  # noqa: E402
from semiseg.launch.job import read_attempts, read_job_record  # noqa: E402
from semiseg.launch.options import SlurmOptions  # noqa: E402
from semiseg.launch.rundir import create_run_dir  # noqa: E402
from semiseg.launch.slurm import SlurmError, submit  # noqa: E402
from semiseg.launch.status import status_rows  # noqa: E402

# every run: CPU, a state.json line per iteration, no debug panels
FAST = {'device': 'cpu', 'log_every': 1, 'debug_every_epoch': False}
OPTS = SlurmOptions(cpus_per_task=1, time_min=15, mem_gb=2)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    """The toy dataset with short split lists: 32 unlabeled (8 iterations/epoch), 4 val images."""
    return trimmed_toy(tmp_path_factory.mktemp('data'), unlabeled=32, val=4)


def _runs(data_root: Path, exp_root: Path, indices: list[int], **overrides) -> list[tuple[dict, Path]]:
    cfgs = get_runs(0, data_root=str(data_root))
    out = []
    for i in indices:
        cfg = {**cfgs[i], **FAST, **overrides}
        out.append((cfg, create_run_dir(cfg, exp_root)))
    return out


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _wait(predicate, timeout: float, what: str, jobs=()) -> None:
    """Poll `predicate` until true; on timeout fail with the job logs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    logs = '\n'.join(f'--- {job.job_id}\n{job.stderr() or ""}'[-3000:] for job in jobs)
    pytest.fail(f'timed out after {timeout:.0f} s waiting for {what}\n{logs}')


def _finished(run_dir: Path) -> bool:
    return bool(_read(run_dir / 'results.json').get('finished'))


def test_exp0_array_through_the_cli(data_root, tmp_path):
    """Two exp-0 runs -> one job array through the CLI; both finish; --status says so."""
    exp_root = tmp_path / 'exp'
    cmd = [sys.executable, 'experiments.py', '--exp', '0', '--run', '0,1', '--launcher', 'slurm',
           '--cpus-per-task', '1', '--time-min', '15', '--data-root', str(data_root),
           '--exp-root', str(exp_root), '--cfg-options', 'epochs=1', 'device=cpu', 'log_every=1']
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dirs = sorted((exp_root / 'exp-0').glob('*_toy-*'))
    assert len(run_dirs) == 2
    ids = sorted(read_job_record(d)['job_id'] for d in run_dirs)
    base = ids[0].split('_')[0]
    assert ids == [f'{base}_0', f'{base}_1'], 'two runs must share one job array'
    script = next((exp_root / 'exp-0' / 'slurm-logs').rglob('*_submission.sh')).read_text()
    assert '#SBATCH --array=0-1%' in script and 'gpus' not in script and '--ntasks-per-node=1' in script
    _wait(lambda: all(_finished(d) for d in run_dirs), 150, 'both array tasks to finish')
    for d in run_dirs:
        assert _read(d / 'results.json')['iters'] == 8
    status = subprocess.run(cmd[:6] + ['--status', '--data-root', str(data_root), '--exp-root', str(exp_root),
                                       '--cfg-options', 'epochs=1', 'device=cpu', 'log_every=1'],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count('finished') == 2 and 'best mIoU' in status.stdout, status.stdout


def test_preempted_and_plainly_requeued_jobs_resume_without_lost_iterations(data_root, tmp_path):
    """USR2 (submitit preemption) -> checkpoint + self-requeue; `scontrol requeue` -> resume at start."""
    # 48 iterations (~7 s): long enough that a stop sent after iteration 2 always lands mid-run,
    # even on a loaded 2-core machine where squeue and the signal delivery take seconds
    epochs = 6
    total = epochs * 8
    (pre_cfg, pre_dir), = _runs(data_root, tmp_path / 'exp', [0], epochs=epochs)
    (plain_cfg, plain_dir), = _runs(data_root, tmp_path / 'exp', [0], epochs=epochs, seed=1)
    jobs = submit([(pre_cfg, pre_dir), (plain_cfg, plain_dir)], OPTS)
    pre_job, plain_job = jobs
    assert read_job_record(pre_dir)['job_id'] == pre_job.job_id

    def preempt() -> None:
        pre_job._interrupt()                                       # SIGTERM + USR2, as submitit's preemption

    def plain_requeue() -> None:
        subprocess.run(['scontrol', 'requeue', plain_job.job_id], check=True)

    # stop each job once it has trained two iterations (the jobs start at different times)
    pending = {pre_dir: (pre_cfg, preempt), plain_dir: (plain_cfg, plain_requeue)}
    stopped = {}
    deadline = time.time() + 120
    while pending and time.time() < deadline:
        for run_dir in list(pending):
            state = _read(run_dir / 'state.json')
            if state.get('state') == 'running' and state.get('iteration', 0) >= 2:
                cfg, stop = pending.pop(run_dir)
                row = status_rows([cfg], tmp_path / 'exp')[0]
                assert row.status == 'running' and 'ETA' in row.detail, row
                stop()
                _wait(lambda d=run_dir: _read(d / 'state.json').get('state') == 'interrupted', 60,
                      f'{stop.__name__} to save latest.pth', jobs)
                stopped[run_dir] = _read(run_dir / 'state.json')['iteration']
        time.sleep(0.2)
    assert not pending, f'jobs never trained: {[str(d) for d in pending]}'
    assert all(0 < it < total for it in stopped.values()), stopped
    _wait(lambda: _finished(pre_dir) and _finished(plain_dir), 180, 'both requeued jobs to finish', jobs)
    for run_dir, job in ((pre_dir, pre_job), (plain_dir, plain_job)):
        results = _read(run_dir / 'results.json')
        assert results['iters'] == total and results['epochs'] == epochs
        attempts = read_attempts(run_dir)
        assert [a['job_id'] for a in attempts] == [job.job_id] * 2, attempts
        log = (run_dir / 'train.log').read_text()
        assert f'at iteration {stopped[run_dir]}/{total}' in log, 'the second start must resume where the first stopped'
    assert 'this job is preempted' in pre_job.stderr()
    assert pre_job.result()['finished'] is True
    assert [r.status for r in status_rows([pre_cfg, plain_cfg], tmp_path / 'exp')] == ['finished'] * 2


def test_bad_requests_fail_before_submission(data_root, tmp_path):
    runs = _runs(data_root, tmp_path / 'exp', [0])
    before = subprocess.run(['squeue', '-h', '-o', '%i'], capture_output=True, text=True).stdout
    with pytest.raises(SlurmError, match="unknown Slurm partition 'nope'; available: debug"):
        submit(runs, SlurmOptions(partition='nope', cpus_per_task=1))
    gpu_runs = [({**cfg, 'device': 'auto'}, d) for cfg, d in runs]
    with pytest.raises(SlurmError, match=r"needs 1 GPUs per node but .* 'debug' has 0.*device=cpu"):
        submit(gpu_runs, SlurmOptions(cpus_per_task=1))
    with pytest.raises(SlurmError, match='CPUs per node'):
        submit(runs, SlurmOptions(cpus_per_task=64))
    assert subprocess.run(['squeue', '-h', '-o', '%i'], capture_output=True, text=True).stdout == before
    assert read_job_record(runs[0][1]) is None


def test_sweep_larger_than_max_array_size_submits_runs_and_tabulates(data_root, tmp_path):
    """Three seeds of run 0 with MaxArraySize 2 and --max-parallel 2: arrays 0-1 and a single job
    that waits for it (one lane of two running tasks); all three train; --status and --results see
    them across both submissions."""
    from semiseg.launch.slurm import cluster_max_array_size, parse_max_array_size
    live = parse_max_array_size(subprocess.run(['scontrol', 'show', 'config'], capture_output=True, text=True).stdout)
    assert cluster_max_array_size(SlurmOptions()) == (live, 'scontrol show config')
    exp_root = tmp_path / 'exp'
    common = ['--exp', '0', '--run', '0', '--seeds', '3', '--data-root', str(data_root), '--exp-root', str(exp_root),
              '--cfg-options', 'epochs=1', 'device=cpu', 'log_every=1', 'debug_every_epoch=false']
    slurm_flags = ['--launcher', 'slurm', '--cpus-per-task', '1', '--time-min', '15', '--max-array-size', '2',
                   '--max-parallel', '2']
    cli = [sys.executable, 'experiments.py']
    dry = subprocess.run(cli + common + slurm_flags + ['--dry-run'], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert 'Slurm plan: 3 run(s) in 2 submission(s) (MaxArraySize 2' in dry.stdout
    assert 'single job (1 task(s)), starts when submission 1 has ended' in dry.stdout
    done = subprocess.run(cli + common + slurm_flags, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dirs = sorted((exp_root / 'exp-0').glob('*_toy-*'))
    assert len(run_dirs) == 3
    records = [read_job_record(d) for d in run_dirs]
    ids = sorted(r['job_id'] for r in records)
    bases = sorted({i.split('_')[0] for i in ids}, key=int)
    assert len(bases) == 2 and ids == sorted([f'{bases[0]}_0', f'{bases[0]}_1', bases[1]]), ids
    assert sorted(r['array_chunk']['chunk'] for r in records) == [0, 0, 1]
    scripts = {p.read_text() for p in (exp_root / 'exp-0' / 'slurm-logs').rglob('*_submission.sh')}
    assert any('#SBATCH --array=0-1%2' in s for s in scripts)
    assert any(f'#SBATCH --dependency=afterany:{bases[0]}' in s for s in scripts)
    _wait(lambda: all(_finished(d) for d in run_dirs), 240, 'the three runs of both submissions to finish')
    status = subprocess.run(cli + common + ['--status'], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and status.stdout.count('finished') == 3, status.stdout + status.stderr
    assert all(i in status.stdout for i in ids), status.stdout
    results = subprocess.run(cli + common + ['--results', '--format', 'json'], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    assert results.returncode == 0, results.stderr
    rows = json.loads(results.stdout)
    rows = rows if isinstance(rows, list) else rows.get('rows', rows)
    assert len(rows) == 1 and rows[0]['count'] == 3 and sorted(rows[0]['seeds']) == [0, 1, 2], rows
