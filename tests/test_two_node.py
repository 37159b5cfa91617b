"""`--nodes 2` as Slurm runs it: two tasks on two "nodes" (here both on localhost), each the
`TrainJob` submitit unpickles on its node, with the environment srun gives a task (SLURM_PROCID,
SLURM_NODEID, SLURM_LOCALID, SLURM_NTASKS, SLURM_JOB_NODELIST, ...). `TrainJob` turns it into
MASTER_ADDR/PORT, RANK, WORLD_SIZE and LOCAL_RANK (submitit's TorchDistributedEnvironment) and the
engine joins one gloo group on the CPU. After a few iterations the weights must equal those of one
node with the same world size (torchrun --nproc_per_node 2, the local launcher's command): the
node layout changes where processes sit, never what they compute.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from _toy_data import trimmed_toy

from semiseg.engine.checkpoint import read_training_checkpoint
from semiseg.experiments import get_runs, with_world
from semiseg.launch.local import build_torchrun_command, free_port
from semiseg.launch.rundir import create_run_dir

REPO = Path(__file__).resolve().parents[1]
# exp 0's supervised run iterates over the unlabeled list (16 here): batch 4 x 2 processes, 2 per epoch
FAST = {'epochs': 2, 'device': 'cpu', 'log_every': 1, 'debug_every_epoch': False, 'num_workers': 0}
TASK = ('import sys; from semiseg.experiments.io import load_config; from semiseg.launch.job import TrainJob; '
        'd = sys.argv[1]; TrainJob(load_config(d + "/config.yaml"), d)()')


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'SUBMITIT_', 'MASTER_', 'RANK',
                                                                     'WORLD_SIZE', 'LOCAL_'))}
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p)
    env['OMP_NUM_THREADS'] = '1'
    return {**env, **extra}


def _slurm_task_env(node: int, port: int) -> dict[str, str]:
    """What srun sets for task `node` of a 2-node job with one task per node (and what submitit reads)."""
    return _env(SUBMITIT_EXECUTOR='slurm', SLURM_JOB_ID='4242', SLURM_NTASKS='2', SLURM_JOB_NUM_NODES='2',
                SLURM_NODEID=str(node), SLURM_PROCID=str(node), SLURM_LOCALID='0',
                SLURM_JOB_NODELIST='localhost,localhost', MASTER_PORT=str(port))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_training_checkpoint(run_dir / 'latest.pth')['model']


def test_two_nodes_train_the_same_weights_as_one_node(tmp_path):
    data = trimmed_toy(tmp_path / 'data', unlabeled=16, val=2)
    base = {**get_runs(0, data_root=str(data))[0], **FAST}
    one_node, _ = with_world(base, 2, 1)
    two_nodes, _ = with_world(base, 1, 2)
    one_dir = create_run_dir(one_node, tmp_path / 'exp')
    two_dir = create_run_dir(two_nodes, tmp_path / 'exp')

    single = subprocess.Popen(build_torchrun_command(one_dir, 2, free_port()), env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, '-c', TASK, str(two_dir)], env=_slurm_task_env(node, port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for node in (0, 1)]
    logs = [p.communicate(timeout=400)[0] for p in [single, *nodes]]
    report = '\n'.join(f'--- process {k} exit {p.returncode}\n{log[-2500:]}'
                       for k, (p, log) in enumerate(zip([single, *nodes], logs)))
    assert all(p.returncode == 0 for p in [single, *nodes]), report

    for run_dir in (one_dir, two_dir):
        results = json.loads((run_dir / 'results.json').read_text())
        assert results['finished'] and results['iters'] == 4, results
        assert 'world size 2' in (run_dir / 'train.log').read_text()
    assert 'distributed: rank 1 of 2 (local rank 0), master localhost:' in logs[2], report
    attempts = [json.loads(line) for line in (two_dir / 'slurm_attempts.jsonl').read_text().splitlines()]
    assert [a['job_id'] for a in attempts] == ['4242']                 # rank 0 alone records the start
    a, b = _weights(one_dir), _weights(two_dir)
    assert a.keys() == b.keys() and len(a) > 10
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f'{len(differing)} tensors differ between one node and two nodes, e.g. {differing[:3]}'
