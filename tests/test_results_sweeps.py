"""`--results` of a sweep: a file experiment's runs x grid x seeds as one row per point, the swept keys
as columns (values), mean ± std over seeds, `--sort`, csv/json keeping the columns, and `--status`
labelled by run id, through the CLI (issue 18 item 3, issue 21 item 2)."""
from __future__ import annotations

import json

import pytest
from test_results import _finish, _state

from semiseg.experiments import get_runs
from semiseg.launch import results as res
from semiseg.launch.rundir import create_run_dir

SWEEP_FILE = """\
id: 931
title: results of a sweep (test)
base: {exp: 0, run: 4}
set: {epochs: 1}
runs:
  - {}
  - {conf_thresh: 0.5}
grid:
  optimizer.lr: [0.01, 0.02]
seeds: [0, 1, 2]
"""


@pytest.fixture
def sweep(tmp_path):
    """A file experiment (2 runs x 2 learning rates x 3 seeds = 12 runs) and run folders for some."""
    from semiseg.experiments.registry import experiment_dirs_added
    folder = tmp_path / 'experiments'
    folder.mkdir()
    (folder / 'sweep.yaml').write_text(SWEEP_FILE)
    with experiment_dirs_added([folder]):
        cfgs = get_runs(931, data_root=str(tmp_path / 'data'))
        root = tmp_path / 'exp'
        # point (lr 0.01): seeds 0, 1 finished, seed 2 never started; point (0.02): all three finished;
        # point (0.5, 0.01): one running; point (0.5, 0.02): nothing
        numbers = {0: 60.0, 1: 62.0, 3: 70.0, 4: 71.0, 5: 75.0}
        for index, best in numbers.items():
            d = create_run_dir(cfgs[index], root, uid=f'sw{index:03d}')
            _state(d, 'finished', 100, best, best - 1, 60.0, 1)
            _finish(d, best - 1, best)
        d = create_run_dir(cfgs[7], root, uid='sw007')
        _state(d, 'interrupted', 50, 40.0, 40.0, 30.0, 1)
        yield cfgs, root


def test_sweep_rows_group_seeds_and_show_swept_values(sweep):
    cfgs, root = sweep
    rows = res.collect_results(931, cfgs, root, list(range(12)))
    assert [r.runs for r in rows] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert [r.sweep for r in rows] == [{'optimizer.lr': 0.01, 'conf_thresh': 0.95},
                                       {'optimizer.lr': 0.02, 'conf_thresh': 0.95},
                                       {'optimizer.lr': 0.01, 'conf_thresh': 0.5},
                                       {'optimizer.lr': 0.02, 'conf_thresh': 0.5}]
    assert [(r.miou, r.count, r.seeds) for r in rows] == [(61.0, 2, [0, 1]), (72.0, 3, [0, 1, 2]),
                                                          (40.0, 1, [1]), (None, 0, [])]
    assert [r.state for r in rows] == ['2 finished, 1 not started', 'finished', '1 interrupted, 2 not started',
                                       'not started']
    assert all(r.paper is None for r in rows)
    md = res.format_results(rows, 'markdown', sort='best').splitlines()
    assert md[0] == ('| run | name | optimizer.lr | conf_thresh | state | iters | mIoU | rule | paper | diff | wall '
                     '| GPU-h |')
    assert [line.split(' | ')[0] for line in md[2:6]] == ['| 3-5', '| 0-2', '| 6-8', '| 9-11']   # best first
    assert md[2].split(' | ')[2:4] == ['0.02', '0.95'] and '72.00 ± 2.65 (n=3)' in md[2]
    data = json.loads(res.format_results(rows, 'json', sort='best'))
    assert list(data[0])[:5] == ['run', 'runs', 'name', 'optimizer.lr', 'conf_thresh']
    assert [(d['run'], d['optimizer.lr'], d['conf_thresh'], d['miou'], d['seeds']) for d in data][:2] == \
        [(3, 0.02, 0.95, 72.0, [0, 1, 2]), (0, 0.01, 0.95, 61.0, [0, 1])]
    lines = res.format_results(rows, 'csv', sort='optimizer.lr').splitlines()
    assert lines[0].startswith('run,runs,name,optimizer.lr,conf_thresh,state,')
    assert [line.split(',')[:2] + line.split(',')[3:5] for line in lines[1:]] == [
        ['0', '0;1;2', '0.01', '0.95'], ['6', '6;7;8', '0.01', '0.5'], ['3', '3;4;5', '0.02', '0.95'],
        ['9', '9;10;11', '0.02', '0.5']]
    with pytest.raises(ValueError, match="cannot sort results by 'lr'.*a swept key: optimizer.lr, conf_thresh"):
        res.format_results(rows, 'csv', sort='lr')


def test_sweep_results_and_status_through_the_cli(sweep, capsys):
    from semiseg import cli
    cfgs, root = sweep
    folder = root.parent / 'experiments'
    base = ['--exp', '931', '--experiments', str(folder), '--exp-root', str(root),
            '--data-root', str(root.parent / 'data')]
    assert cli.main(base + ['--results', '--run', '3-8', '--format', 'csv', '--sort', 'best']) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(',')[:2] for line in out[1:]] == [['3', '3;4;5'], ['6', '6;7;8']]
    assert cli.main(base + ['--results', '--sort', 'nope']) == 2
    assert "cannot sort results by 'nope'" in capsys.readouterr().err
    assert cli.main(base + ['--status', '--run', '4,7']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith('4 ') and 'finished' in lines[2] and lines[3].startswith('7 ') and \
        'interrupted' in lines[3]


def test_tensorboard_hparams_hold_the_swept_values_and_the_seed(sweep):
    """Every run's HParams entry (written when it finishes) can be filtered by swept value and seed."""
    from semiseg.engine.tensorboard import run_hparams
    cfgs, _ = sweep
    first, fifth = run_hparams(cfgs[0]), run_hparams(cfgs[4])
    assert (first['seed'], first['sweep.optimizer.lr'], first['optimizer.lr']) == (0, 0.01, 0.01)
    assert (fifth['seed'], fifth['sweep.optimizer.lr']) == (1, 0.02) and 'sweep.conf_thresh' not in fifth
    assert run_hparams(cfgs[7])['sweep.conf_thresh'] == 0.5 and run_hparams(cfgs[7])['seed'] == 1
