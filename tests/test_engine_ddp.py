"""Two-process DDP on CPU (gloo) through torchrun with the stand-ins: sharded samplers, the
guidance encoder kept out of DDP, rank-0-only files, evaluation across ranks, and a SIGTERM
received by rank 1 alone stopping both ranks at the same iteration (resume is covered by
test_engine_train / test_engine_resume)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import _engine_standins as standins
import torch
import yaml

from semiseg.engine.checkpoint import read_training_checkpoint

TESTS = Path(__file__).resolve().parent


def _torchrun(run_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(TESTS.parent), env.get('PYTHONPATH')) if p)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(TESTS / '_engine_standins.py'), '--run-dir', str(run_dir)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def test_two_process_training_stops_together(tmp_path):
    cfg = standins.base_config(epochs=2, log_every=1, debug_every_epoch=True, test_sigterm_at=4,
                               test_sigterm_rank=1, n_gpus=2)
    (tmp_path / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    first = _torchrun(tmp_path)
    assert first.returncode != 0
    state = json.loads((tmp_path / 'state.json').read_text())
    assert state['state'] == 'interrupted', first.stderr[-3000:]
    # 24 unlabeled samples over 2 ranks, batch 4 -> 3 iterations per epoch
    assert state['total_iters'] == 6 and state['iteration'] == 5
    assert read_training_checkpoint(tmp_path / 'latest.pth')['iteration'] == 5

    log = (tmp_path / 'train.log').read_text()
    assert 'world size 2' in log and log.count('Iter 5/6 |') == 1     # rank 0 alone writes the log
    # rank 1 got the signal
    assert 'stop requested on another rank during training: stopped after iteration 5/6' in log
    assert log.count('MeanIoU') == 1                                  # epoch 0 evaluated across ranks
    assert sorted(p.name for p in (tmp_path / 'debug').iterdir()) == [
        '0000000_0-0.png', '0000000_0-1.png', '0000003_0-0.png', '0000003_0-1.png']
    weights = read_training_checkpoint(tmp_path / 'latest.pth')['model']
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not any(k.startswith('module.') for k in weights)
