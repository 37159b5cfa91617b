"""Slurm submission without a cluster: resources, sbatch text (reference file), checks, defaults."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from semiseg.experiments.registry import get_runs
from semiseg.launch import slurm, slurm_defaults
from semiseg.launch.options import SlurmOptions
from semiseg.launch.slurm import (
    PartitionInfo,
    Resources,
    SlurmError,
    check_request,
    gres_gpu_count,
    parse_extra_sbatch,
    parse_sinfo,
    render_sbatch,
    run_resources,
)

REFERENCE = Path(__file__).parent / 'reference' / 'exp40_array.sbatch'
UPDATE_ENV = 'SEMISEG_UPDATE_REFERENCE'


def exp0_cfg(**overrides):
    return {**get_runs(0, data_root='/data')[0], **overrides}


def test_resources_follow_run_config_and_overrides():
    cfg = get_runs(40, data_root='/data')[0]              # n_gpus 4, n_nodes 1
    assert run_resources(cfg, SlurmOptions(cpus_per_task=6)) == Resources(1, 4, 4, 6)
    assert run_resources(cfg, SlurmOptions(gpus_per_node=2, nodes=2)) == Resources(2, 2, 2, 8)
    cpu = run_resources(exp0_cfg(device='cpu'), SlurmOptions(gpus_per_node=3, cpus_per_task=1))
    assert cpu == Resources(nodes=1, tasks_per_node=1, gpus_per_node=0, cpus_per_task=1)


def test_cpu_run_requests_no_gres_and_one_task():
    text = render_sbatch([(exp0_cfg(device='cpu'), Path('/r/a'))], SlurmOptions(cpus_per_task=1), Path('/logs/%j'))
    assert '--gpus-per-node' not in text and '--gres' not in text
    assert '#SBATCH --ntasks-per-node=1' in text and '--array' not in text


def test_extra_sbatch_parsing():
    assert parse_extra_sbatch(['mail-type=END', '--exclusive', 'comment=a=b']) == {
        'mail-type': 'END', 'exclusive': True, 'comment': 'a=b'}
    with pytest.raises(SlurmError, match='key=value'):
        parse_extra_sbatch(['mail-type='])


def _normalised_exp40_script() -> str:
    runs = [(cfg, Path('/runs') / cfg['name']) for cfg in get_runs(40, data_root='/data')]
    opts = SlurmOptions(partition='gpu', time_min=2880, account='mygroup', qos='normal', constraint='a100',
                        mem_gb=64, cpus_per_task=8, array_parallelism=2, extra_sbatch=['mail-type=END,FAIL'])
    text = render_sbatch(runs, opts, Path('/EXP/exp-40/slurm-logs/%j'), python='PYTHON')
    return text.replace(str(slurm.REPO_ROOT), '<REPO>')


def test_exp40_array_sbatch_matches_reference():
    text = _normalised_exp40_script()
    if os.environ.get(UPDATE_ENV) == '1':
        REFERENCE.write_text(text)
    assert REFERENCE.is_file(), f'missing {REFERENCE}; create it with {UPDATE_ENV}=1 python -m pytest {__file__}'
    assert text == REFERENCE.read_text(), (
        f'the generated sbatch script for exp 40 differs from {REFERENCE}; if the change is intended, '
        f'accept it with: {UPDATE_ENV}=1 python -m pytest tests/test_slurm_submit.py')
    assert '#SBATCH --array=0-4%2' in text and '#SBATCH --gpus-per-node=4' in text


def test_gres_and_sinfo_parsing():
    assert gres_gpu_count('(null)') == 0
    assert gres_gpu_count('gpu:a100:4(S:0-1)') == 4
    assert gres_gpu_count('gpu:a100:4(S:0-1),gpu:v100:2,shard:8') == 6
    parts, default = parse_sinfo('debug*|2|23593|(null)\ngpu|64|512000|gpu:a100:4(S:0-1)\ngpu|32|256000|gpu:2\n')
    assert default == 'debug'
    assert parts['gpu'] == PartitionInfo(nodes=2, cpus=64, gpus=4, mem_mb=512000)
    assert parts['debug'].gpus == 0


PARTS = {'cpu': PartitionInfo(1, 2, 0, 23593), 'gpu': PartitionInfo(2, 64, 4, 512000)}


def _groups(cfg, opts):
    return {run_resources(cfg, opts): [(cfg, Path('/r'))]}


def test_check_request_errors_are_specific():
    cfg = get_runs(40, data_root='/data')[0]
    opts = SlurmOptions(partition='gpux')
    with pytest.raises(SlurmError, match="unknown Slurm partition 'gpux'; available: cpu, gpu"):
        check_request(_groups(cfg, opts), opts, PARTS, 'cpu')
    opts = SlurmOptions(partition='gpu', gpus_per_node=8)
    with pytest.raises(SlurmError, match='needs 8 GPUs per node .* has 4; pass --gpus-per-node 4'):
        check_request(_groups(cfg, opts), opts, PARTS, 'cpu')
    opts = SlurmOptions(cpus_per_task=1)
    with pytest.raises(SlurmError, match=r'has 0.*device=cpu'):
        check_request(_groups(cfg, opts), opts, PARTS, 'cpu')
    opts = SlurmOptions(partition='gpu', cpus_per_task=32)
    with pytest.raises(SlurmError, match='128 CPUs per node'):
        check_request(_groups(cfg, opts), opts, PARTS, 'cpu')
    opts = SlurmOptions(cpus_per_task=1)
    check_request(_groups(exp0_cfg(device='cpu'), opts), opts, PARTS, 'cpu')   # fits: no error


def test_missing_sbatch_fails_before_submitting(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    with pytest.raises(SlurmError, match='sbatch, srun, sinfo not found on PATH.*--launcher local'):
        slurm.submit([(exp0_cfg(device='cpu'), run_dir)], SlurmOptions())
    assert list(run_dir.iterdir()) == []
    with pytest.raises(SlurmError, match='unknown cluster'):
        slurm.submit([], SlurmOptions(), cluster='pbs')


def test_defaults_file_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.delenv('SEMISEG_SLURM_DEFAULTS', raising=False)
    assert slurm_defaults.find_defaults_file() is None
    user_file = tmp_path / '.config' / 'semiseg' / 'slurm.yaml'
    user_file.parent.mkdir(parents=True)
    user_file.write_text(slurm_defaults.EXAMPLE_DEFAULTS)
    opts = slurm_defaults.load_options({'partition': 'a100', 'time_min': None})
    assert (opts.partition, opts.account, opts.time_min, opts.defaults_file) == ('a100', 'my_group', 2880, user_file)
    other = tmp_path / 'other.yaml'
    other.write_text('qos: high\n')
    monkeypatch.setenv('SEMISEG_SLURM_DEFAULTS', str(other))
    assert slurm_defaults.load_options({}).qos == 'high'
    assert slurm_defaults.find_defaults_file(user_file) == user_file


# ---------------------------------------------------------------- arrays under MaxArraySize

def _shape(plans):
    return [(p.group, p.chunk, p.size, p.parallelism, p.after) for p in plans]


def test_plan_splits_arrays_at_max_array_size_and_keeps_the_parallel_cap():
    # no cap reached: chunks of 2, 2, 1 side by side, each counting from 0
    assert _shape(slurm.plan_arrays([5], max_parallel=32, max_array_size=2)) == [
        (0, 0, 2, 2, None), (0, 1, 2, 2, None), (0, 2, 1, 1, None)]
    # --max-parallel 2 with chunks of 3: one lane, each chunk waits for the previous one
    assert _shape(slurm.plan_arrays([7], max_parallel=2, max_array_size=3)) == [
        (0, 0, 3, 2, None), (0, 1, 3, 2, 0), (0, 2, 1, 1, 1)]
    # --max-parallel 4 with chunks of 2: two lanes of 2 running tasks each
    assert [p.after for p in slurm.plan_arrays([10], max_parallel=4, max_array_size=2)] == [None, None, 0, 1, 2]
    # resource groups are planned one after another; positions in `after` are global
    assert _shape(slurm.plan_arrays([3, 3], max_parallel=1, max_array_size=2)) == [
        (0, 0, 2, 1, None), (0, 1, 1, 1, 0), (1, 0, 2, 1, None), (1, 1, 1, 1, 2)]
    # small sweeps: one array, as before
    assert _shape(slurm.plan_arrays([5], max_parallel=32, max_array_size=1001)) == [(0, 0, 5, 5, None)]


@pytest.mark.parametrize('total,cap,size', [(1, 1, 1), (17, 3, 4), (2000, 32, 1001), (9, 5, 2), (6, 100, 1)])
def test_plan_covers_every_run_once_and_never_exceeds_the_cap(total, cap, size):
    plans = slurm.plan_arrays([total], max_parallel=cap, max_array_size=size)
    covered = [plan.start + i for plan in plans for i in range(plan.size)]
    assert covered == list(range(total)) and all(p.size <= size for p in plans)
    # chunks that can run at the same time: one per chain (a chunk without `after` starts a chain)
    heads = [p for p in plans if p.after is None]
    assert sum(max(q.parallelism for q in plans if _chain_head(plans, q) is h) for h in heads) <= cap


def _chain_head(plans, plan):
    while plan.after is not None:
        plan = plans[plan.after]
    return plan


def test_max_array_size_comes_from_the_option_or_scontrol():
    config = 'MaxArraySize            = 4\nMaxJobCount             = 10000\n'
    assert slurm.parse_max_array_size(config) == 4 and slurm.parse_max_array_size('MaxJobCount = 3') is None
    assert slurm.cluster_max_array_size(SlurmOptions(), runner=lambda cmd: config) == (4, 'scontrol show config')
    assert slurm.cluster_max_array_size(SlurmOptions(max_array_size=9), runner=lambda cmd: config)[0] == 9

    def failing(cmd):
        raise OSError('no controller')
    assert slurm.cluster_max_array_size(SlurmOptions(), runner=failing)[0] == slurm.DEFAULT_MAX_ARRAY_SIZE


def test_dry_run_prints_the_plan_and_each_groups_first_script():
    runs = [(exp0_cfg(device='cpu', seed=s), Path(f'/exp/exp-0/r{s}')) for s in range(5)]
    text = slurm.dry_run_text(runs, SlurmOptions(cpus_per_task=1, array_parallelism=2),
                              runner=lambda cmd: 'MaxArraySize = 2\n', labels=['0', '1', '2', '3', '4'])
    assert 'Slurm plan: 5 run(s) in 3 submission(s) (MaxArraySize 2: scontrol show config' in text
    assert 'chunk 2/3, array 0-1%2 (2 task(s)), starts when submission 1 has ended; runs 2,3' in text
    assert 'chunk 3/3, single job (1 task(s)), starts when submission 2 has ended; runs 4' in text
    assert text.count('#SBATCH --array=0-1%2') == 1 and '--dependency' not in text


def test_dependency_and_throttle_reach_the_sbatch_script():
    runs = [(exp0_cfg(device='cpu', seed=s), Path(f'/r/{s}')) for s in range(3)]
    text = render_sbatch(runs, SlurmOptions(cpus_per_task=1), Path('/logs/%j'), parallelism=1,
                         dependency='afterany:41')
    assert '#SBATCH --array=0-2%1' in text and '#SBATCH --dependency=afterany:41' in text


def test_max_parallel_and_max_array_size_options(tmp_path):
    from semiseg.cli import build_parser
    from semiseg.launch.options import SlurmOptionsError, build_slurm_options
    args = build_parser().parse_args(['--max-parallel', '3', '--max-array-size', '5'])
    assert (args.array_parallelism, args.max_array_size) == (3, 5)
    defaults = tmp_path / 'slurm.yaml'
    defaults.write_text('max_parallel: 4\nmax_array_size: 1000\n')
    opts = build_slurm_options({'array_parallelism': None}, defaults)
    assert (opts.array_parallelism, opts.max_array_size) == (4, 1000)
    with pytest.raises(SlurmOptionsError, match='max_array_size must be a positive integer'):
        build_slurm_options({'max_array_size': 0})
