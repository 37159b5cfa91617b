"""--status from run folders and (faked) Slurm answers; the debug launcher on real exp-0 training."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _toy_data import trimmed_toy

from semiseg.experiments.registry import get_runs
from semiseg.launch import slurm, status
from semiseg.launch.job import JOB_FILE, read_attempts, read_job_record
from semiseg.launch.options import SlurmOptions
from semiseg.launch.rundir import create_run_dir
from semiseg.launch.status import classify, format_eta, print_status, status_rows


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data))


def _submitted(run_dir: Path, job_id: str, stderr: Path | None = None) -> None:
    _write(run_dir / JOB_FILE, {'cluster': 'slurm', 'job_id': job_id, 'stderr': str(stderr or run_dir / 'none')})


def test_classify_each_state(tmp_path):
    assert classify(None, None) == ('not started', '')
    run = tmp_path / 'run'
    run.mkdir()
    assert classify(run, None) == ('not started', 'folder created')
    _submitted(run, '7_1')
    assert classify(run, 'PENDING') == ('queued', 'Slurm PENDING')
    assert classify(run, 'RUNNING') == ('running', 'starting')
    _write(run / 'state.json', {'state': 'running', 'iteration': 30, 'total_iters': 192, 'eta_s': 3725})
    assert classify(run, 'RUNNING') == ('running', 'iteration 30/192, ETA 1h02m')
    _write(run / 'state.json', {'state': 'interrupted', 'iteration': 30, 'total_iters': 192})
    assert classify(run, 'PENDING') == ('queued', 'Slurm PENDING, resumes at iteration 30/192')
    assert classify(run, None)[0] == 'interrupted'
    _write(run / 'state.json', {'state': 'running', 'iteration': 31, 'total_iters': 192})
    log = tmp_path / 'job.err'
    log.write_text('Traceback ...\nslurmstepd: error: *** JOB 7 ON vm CANCELLED DUE TO TIME LIMIT ***\n\n')
    _submitted(run, '7_1', log)
    assert classify(run, 'TIMEOUT') == ('failed', 'Slurm TIMEOUT: slurmstepd: error: *** JOB 7 ON vm '
                                                  'CANCELLED DUE TO TIME LIMIT ***')
    _write(run / 'state.json', {'state': 'failed', 'error': 'FloatingPointError: loss is nan\n'})
    assert classify(run, 'FAILED') == ('failed', 'FloatingPointError: loss is nan')
    _write(run / 'results.json', {'finished': True, 'best_miou': 61.234, 'miou': 60.0})
    assert classify(run, 'COMPLETED') == ('finished', 'best mIoU 61.23')
    assert format_eta(65) == '1m05s' and format_eta(None) == '?'


def test_status_rows_query_slurm_once_and_print(tmp_path, capsys, monkeypatch):
    cfgs = get_runs(0, data_root=str(tmp_path / 'data'))[:3]
    exp_root = tmp_path / 'exp'
    first, second = create_run_dir(cfgs[0], exp_root), create_run_dir(cfgs[1], exp_root)
    _submitted(first, '12_0')
    _submitted(second, '12_1')
    _write(second / 'state.json', {'state': 'running', 'iteration': 5, 'total_iters': 192, 'eta_s': 40})
    calls = []

    def fake(cmd):
        calls.append(cmd)
        if cmd[0] == 'squeue':
            return '12_0|PENDING\n12_1|RUNNING\n'
        return ''

    monkeypatch.setattr(slurm.shutil, 'which', lambda tool: f'/usr/bin/{tool}')
    rows = status_rows(cfgs, exp_root, runner=fake)
    assert [(r.status, r.job_id) for r in rows] == [('queued', '12_0'), ('running', '12_1'), ('not started', None)]
    assert calls == [['squeue', '-h', '-r', '-o', '%i|%T', '-j', '12']]
    monkeypatch.setattr(status, 'run_command', fake)
    printed = print_status(0, cfgs, exp_root)
    out = capsys.readouterr().out
    assert out.startswith('experiment 0: 3 run(s)') and 'iteration 5/192, ETA 40s' in out
    assert len(printed) == 3


def test_sacct_fills_in_ended_jobs_and_failures_are_quiet(monkeypatch):
    monkeypatch.setattr(slurm.shutil, 'which', lambda tool: f'/usr/bin/{tool}')

    def fake(cmd):
        if cmd[0] == 'squeue':
            return ''
        return '3_0|COMPLETED\n3_1|CANCELLED by 0\n4|FAILED\n'
    assert slurm.slurm_states(['3_1', '4'], fake) == {'3_1': 'CANCELLED', '4': 'FAILED'}

    def broken(cmd):
        raise subprocess.CalledProcessError(1, cmd)
    assert slurm.slurm_states(['3_1'], broken) == {}


@pytest.fixture(scope='module')
def small_toy(tmp_path_factory) -> Path:
    """Toy dataset with 8 unlabeled (2 iterations/epoch at batch 4) and 2 val images."""
    return trimmed_toy(tmp_path_factory.mktemp('data'), unlabeled=8, val=2)


def test_debug_launcher_trains_exp0_in_process(small_toy, tmp_path):
    """--launcher debug: the Slurm callable runs here; a finished run is not trained again."""
    import torch
    torch.set_num_threads(1)
    cfg = {**get_runs(0, data_root=str(small_toy))[0], 'device': 'cpu', 'epochs': 1,
           'debug_every_epoch': False}
    run_dir = create_run_dir(cfg, tmp_path / 'exp')
    jobs = slurm.submit([(cfg, run_dir)], SlurmOptions(), cluster='debug')
    assert jobs[0].result()['finished'] is True and jobs[0].result()['iters'] == 2
    assert read_job_record(run_dir)['cluster'] == 'debug'
    assert read_attempts(run_dir)[0]['cluster'] == 'debug'
    mtime = (run_dir / 'results.json').stat().st_mtime
    assert slurm.submit([(cfg, run_dir)], SlurmOptions(), cluster='debug') == []   # finished: skipped
    from semiseg.launch.job import TrainJob
    assert TrainJob(cfg, run_dir)()['finished'] is True                            # returns, no retraining
    assert (run_dir / 'results.json').stat().st_mtime == mtime


def test_rows_are_labelled_by_run_id_whatever_the_selection(tmp_path, capsys):
    """--run 2 shows run 2 (not row 0), also with seed repeats of one run (issue 21 item 2)."""
    cfgs = get_runs(0, data_root=str(tmp_path / 'data'))
    exp_root = tmp_path / 'exp'
    run_dir = create_run_dir(cfgs[2], exp_root)
    _write(run_dir / 'state.json', {'state': 'interrupted', 'iteration': 3, 'total_iters': 9})
    rows = print_status(0, [cfgs[2], cfgs[5]], exp_root, [2, 5])
    assert [(r.run, r.status, r.folder) for r in rows] == [(2, 'interrupted', run_dir), (5, 'not started', None)]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'experiment 0: 2 run(s)' and lines[2].startswith('2 ') and lines[3].startswith('5 ')
    assert lines[3].endswith(cfgs[5]['name'])
    with pytest.raises(ValueError, match='2 configs for 1 run indices'):
        status_rows(cfgs[:2], exp_root, indices=[0])
