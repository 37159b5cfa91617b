"""submit(cluster='local'): the Slurm job callable in a local submitit subprocess (no Slurm needed)."""
from __future__ import annotations

from pathlib import Path

from _toy_data import trimmed_toy

from semiseg.experiments.registry import get_runs
from semiseg.launch import slurm
from semiseg.launch.job import read_attempts, read_job_record
from semiseg.launch.options import SlurmOptions
from semiseg.launch.rundir import create_run_dir


def test_local_cluster_trains_exp0_in_a_subprocess(tmp_path):
    trimmed_toy(tmp_path / 'data', unlabeled=8, val=2)   # 2 iterations, 2 val images
    cfg = {**get_runs(0, data_root=str(tmp_path / 'data'))[0], 'device': 'cpu', 'epochs': 1,
           'debug_every_epoch': False}
    run_dir = create_run_dir(cfg, tmp_path / 'exp')
    job, = slurm.submit([(cfg, run_dir)], SlurmOptions(time_min=10), cluster='local')
    results = job.result()
    assert results['finished'] is True and results['iters'] == 2
    record = read_job_record(run_dir)
    assert record['cluster'] == 'local' and record['job_id'] == job.job_id
    assert Path(record['stdout']).is_file()
    assert [a['cluster'] for a in read_attempts(run_dir)] == ['local']
    assert 'distributed: rank 0 of 1' in job.stderr()
