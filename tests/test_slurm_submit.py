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
