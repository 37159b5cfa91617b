"""Load: 16 launches of the same multi-run selection started together into one experiment folder.

As the tasks of a sweep's array start: every launcher writes the generated configs and looks for
its runs at the same moment. Each run must be trained by exactly one process (the others say who
has it and move on: semiseg/launch/claim.py), every generated config must be complete and
parseable, and nothing may be left half-written. The selection is a seed sweep of experiment
0's supervised run (three runs: one epoch of one iteration on a trimmed toy dataset, on the CPU),
so the cost is mostly process start-up; `SEMISEG_LOAD_SELECTION='--run all'` trains all seven
exp-0 runs instead (226 s on our shared 2-core machine at load average 15), and
`SEMISEG_LOAD_LAUNCHERS` sets the number of launchers.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _toy_data import trimmed_toy

from semiseg.cli import _select, build_parser
from semiseg.experiments.io import load_config
from semiseg.launch.rundir import stored_configs

REPO = Path(__file__).resolve().parents[1]
LAUNCHERS = int(os.environ.get('SEMISEG_LOAD_LAUNCHERS', '16'))
SELECTION = os.environ.get('SEMISEG_LOAD_SELECTION', '--run 0 --seeds 3').split()
FAST = ['epochs=1', 'device=cpu', 'num_workers=0', 'debug_every_epoch=false', 'log_every=1']


def _leftovers(root: Path) -> list[Path]:
    """Temporary files of atomic writes that were never renamed into place."""
    return [p for p in root.rglob('*') if p.name.endswith('.tmp')]


def test_sixteen_simultaneous_launches_train_each_run_once(tmp_path):
    data = trimmed_toy(tmp_path / 'data', unlabeled=4, val=1)
    exp_root, gen = tmp_path / 'exp', tmp_path / 'gen'
    env = dict(os.environ, SEMISEG_CONFIG_DIR=str(gen), OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p))
    cmd = [sys.executable, str(REPO / 'experiments.py'), '--exp', '0', *SELECTION, '--data-root', str(data),
           '--exp-root', str(exp_root), '--cfg-options', *FAST]
    t0 = time.time()
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(LAUNCHERS)]
    outs = [p.communicate(timeout=540) for p in procs]
    wall = time.time() - t0
    report = '\n'.join(f'--- launcher {k} exit {p.returncode}\n{o[-1500:]}\n{e[-1500:]}'
                       for k, (p, (o, e)) in enumerate(zip(procs, outs)))
    assert all(p.returncode == 0 for p in procs), report

    selected = _select(build_parser().parse_args(cmd[2:])).cfgs          # what each launcher selects
    assert len(selected) >= 3
    # every run: one folder, finished, trained by one process
    folders = stored_configs(exp_root, 0)
    names = sorted(cfg['name'] for _, cfg in folders)
    assert len(folders) == len(selected) and len(set(names)) == len(selected), (names, report)
    for run_dir, _ in folders:
        assert '"finished": true' in (run_dir / 'results.json').read_text()
        log = (run_dir / 'train.log').read_text()
        assert len(re.findall(r'\] run \S+ \(world size', log)) == 1, f'{run_dir} was started more than once'
    started = sum(o.count(': new run folder ') + o.count(': resuming ') for o, _ in outs)
    moved_on = sum(o.count('moving on (--force starts a repeat') for o, _ in outs)
    finished_meanwhile = sum(o.count('finished meanwhile') + o.count('already finished') for o, _ in outs)
    assert started == len(selected), report
    assert moved_on + finished_meanwhile == (LAUNCHERS - 1) * len(selected), report
    assert 'is being trained by pid ' in ''.join(o for o, _ in outs)

    # generated configs: one complete, parseable file per run (and per changed run)
    generated = sorted((gen / 'exp-0').glob('*.yaml'))
    assert generated and not _leftovers(gen) and not _leftovers(exp_root)
    for path in generated:
        cfg = load_config(path)
        assert cfg['name'] == path.stem and cfg['exp'] == 0
        assert yaml.safe_load(path.read_text()) == cfg
    trained = {cfg['name'] for _, cfg in folders}
    assert trained <= {p.stem for p in generated}
    print(f'{LAUNCHERS} launchers x {len(selected)} runs: {wall:.1f} s wall')
