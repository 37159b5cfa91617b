"""`--results`: the table of an experiment's runs from generated run folders, in all three formats.

Exp 40 (SemiVL, VOC): run 0 finished twice (seeds 0 and 1) plus an interrupted third repeat, run 1
running, run 2 failed before any evaluation, run 3 queued on Slurm, run 4 never started. A folder
of another config and a damaged config.yaml must not be picked up.
"""
from __future__ import annotations

import json
from datetime import datetime

import pytest

from semiseg.engine.logging_utils import write_state
from semiseg.engine.runlock import RunLock
from semiseg.experiments import get_runs, with_overrides
from semiseg.experiments.overrides import parse_cfg_options
from semiseg.launch import results as res
from semiseg.launch.rundir import create_run_dir
from semiseg.utils.files import atomic_write_json

SOURCE = ('https://github.com/LiheYoung/UniMatch-V2/blob/f6afb4dfca2d9dcbcee2307e97717954ca75c0ba/'
          'README.md')
TABLE = ('UniMatch V2 README Pascal VOC 2012 table, SemiVL row (SECONDARY: cites SemiVL paper; '
         'SemiVL tables not readable here)')


def _state(run_dir, state, iteration, best, last, elapsed, world, error=None):
    write_state(run_dir, state, iteration=iteration, saved_iteration=iteration, total_iters=100,
                epoch=iteration // 10, best_miou=best, last_miou=last, eta_s=None, elapsed_s=elapsed,
                world_size=world, host='node1', pid=123, error=error)


def _finish(run_dir, miou, best):
    atomic_write_json(run_dir / 'results.json', {
        'miou': miou, 'best_miou': best, 'per_class_iou': {'background': miou},
        'best_per_class_iou': {'background': best}, 'iters': 100, 'epochs': 10, 'finished': True})


def _seeded(cfg, seed):
    return with_overrides(cfg, parse_cfg_options([f'seed={seed}']))


@pytest.fixture(scope='module')
def exp(tmp_path_factory):
    root = tmp_path_factory.mktemp('exp')
    cfgs = get_runs(40, data_root=str(root / 'data'))
    folders = {}

    def make(key, cfg, minute):
        folders[key] = create_run_dir(cfg, root, now=datetime(2025, 1, 2, 3, minute), uid=f'u{minute:04d}')
        return folders[key]

    d = make('0a', cfgs[0], 1)
    _state(d, 'finished', 100, 81.0, 80.0, 3600.0, 4)
    _finish(d, 80.0, 81.0)
    d = make('0b', _seeded(cfgs[0], 1), 2)
    _state(d, 'finished', 100, 82.5, 82.0, 5400.0, 4)
    _finish(d, 82.0, 82.5)
    d = make('0c', {**_seeded(cfgs[0], 2), 'num_workers': 4}, 3)   # a runtime option differs too
    _state(d, 'interrupted', 50, 60.0, 60.0, 900.0, 4, error='SIGTERM')
    d = make('1', cfgs[1], 4)
    _state(d, 'running', 40, 70.5, 70.0, 1800.0, 2)
    RunLock(d).acquire()            # its trainer is alive (held until the test process ends)
    d = make('2', cfgs[2], 5)
    _state(d, 'failed', 10, 0.0, None, 600.0, 4, error='Traceback ...\nTrainingFailed: loss is nan')
    d = make('3', cfgs[3], 6)
    atomic_write_json(d / 'slurm_job.json', {'cluster': 'slurm', 'job_id': '777_3', 'submitted': 'now'})
    # not repeats of anything selected: another schedule, and an unreadable config
    d = make('other', with_overrides(cfgs[0], parse_cfg_options(['epochs=2'])), 7)
    _state(d, 'finished', 100, 99.0, 99.0, 10.0, 4)
    _finish(d, 99.0, 99.0)
    broken = root / 'exp-40' / '250102-0308_broken_xxxxx'
    broken.mkdir()
    (broken / 'config.yaml').write_text('dataset: [unclosed\n')
    return root, cfgs, folders


@pytest.fixture
def rows(exp, monkeypatch):
    root, cfgs, _ = exp
    asked = []

    def fake_states(job_ids, runner):
        asked.append(sorted(job_ids))
        return {'777_3': 'PENDING'}

    monkeypatch.setattr(res, 'slurm_states', fake_states)
    out = res.collect_results(40, cfgs, root, list(range(5)))
    assert asked == [['777_3']]     # Slurm is asked once, for the submitted folder only
    return out


NAMES = ['voc-92', 'voc-183', 'voc-366', 'voc-732', 'voc-1464']
FAMILY = 'semivl+mcc vlg-ftap/mcvitb'

MARKDOWN = f"""\
| run | name | state | iters | mIoU | best mIoU | paper | diff | wall | GPU-h |
| --: | --- | --- | --: | --: | --: | --: | --: | --: | --: |
| 0 | voc-92 {FAMILY} | 2 finished, 1 interrupted | 50/100 | 81.00 ± 1.41 (n=2) | 81.75 ± 1.06 (n=2) | 84.0 | -3.00 | 1:15:00 | 11.00 |
| 1 | voc-183 {FAMILY} | running | 40/100 | 70.00 | 70.50 | 85.6 | -15.60 | 0:30:00 | 1.00 |
| 2 | voc-366 {FAMILY} | failed | 10/100 | - | - | 86.0 | - | 0:10:00 | 0.67 |
| 3 | voc-732 {FAMILY} | queued | - | - | - | 86.7 | - | - | - |
| 4 | voc-1464 {FAMILY} | not started | - | - | - | 87.3 | - | - | - |

paper mIoU: {TABLE} ({SOURCE})
"""  # noqa: E501


def _expected_dicts(folders):
    base = {'total_iters': 100, 'paper_table': TABLE, 'paper_source': SOURCE, 'miou_std': None,
            'best_miou_std': None}
    return [
        {**base, 'run': 0, 'name': f'voc-92 {FAMILY}', 'state': '2 finished, 1 interrupted', 'iterations': 50,
         'miou': 81.0, 'miou_std': 1.4142, 'best_miou': 81.75, 'best_miou_std': 1.0607, 'count': 2,
         'paper_miou': 84.0, 'diff': -3.0, 'wall_s': 4500.0, 'gpu_hours': 11.0,
         'folders': [str(folders[k]) for k in ('0a', '0b', '0c')]},
        {**base, 'run': 1, 'name': f'voc-183 {FAMILY}', 'state': 'running', 'iterations': 40, 'miou': 70.0,
         'best_miou': 70.5, 'count': 1, 'paper_miou': 85.6, 'diff': -15.6, 'wall_s': 1800.0,
         'gpu_hours': 1.0, 'folders': [str(folders['1'])]},
        {**base, 'run': 2, 'name': f'voc-366 {FAMILY}', 'state': 'failed', 'iterations': 10, 'miou': None,
         'best_miou': None, 'count': 0, 'paper_miou': 86.0, 'diff': None, 'wall_s': 600.0,
         'gpu_hours': 0.6667, 'folders': [str(folders['2'])]},
        {**base, 'run': 3, 'name': f'voc-732 {FAMILY}', 'state': 'queued', 'iterations': None,
         'total_iters': None, 'miou': None, 'best_miou': None, 'count': 0, 'paper_miou': 86.7, 'diff': None,
         'wall_s': None, 'gpu_hours': None, 'folders': [str(folders['3'])]},
        {**base, 'run': 4, 'name': f'voc-1464 {FAMILY}', 'state': 'not started', 'iterations': None,
         'total_iters': None, 'miou': None, 'best_miou': None, 'count': 0, 'paper_miou': 87.3, 'diff': None,
         'wall_s': None, 'gpu_hours': None, 'folders': []},
    ]


def test_markdown_table(rows):
    assert res.format_results(rows, 'markdown') == MARKDOWN


def test_json_table(rows, exp):
    data = json.loads(res.format_results(rows, 'json'))
    expected = _expected_dicts(exp[2])
    assert data == expected
    assert [list(d) for d in data] == [list(res.COLUMNS)] * 5


def test_csv_table(rows, exp):
    lines = res.format_results(rows, 'csv').splitlines()
    folders = exp[2]
    p = f'"{TABLE}",{SOURCE}'   # the table name holds a comma: quoted
    assert lines == [
        ','.join(res.COLUMNS),
        f'0,voc-92 {FAMILY},"2 finished, 1 interrupted",50,100,81.0,1.4142,81.75,1.0607,2,84.0,-3.0,4500.0,'
        f'11.0,{p},{folders["0a"]};{folders["0b"]};{folders["0c"]}',
        f'1,voc-183 {FAMILY},running,40,100,70.0,,70.5,,1,85.6,-15.6,1800.0,1.0,{p},{folders["1"]}',
        f'2,voc-366 {FAMILY},failed,10,100,,,,,0,86.0,,600.0,0.6667,{p},{folders["2"]}',
        f'3,voc-732 {FAMILY},queued,,,,,,,0,86.7,,,,{p},{folders["3"]}',
        f'4,voc-1464 {FAMILY},not started,,,,,,,0,87.3,,,,{p},',
    ]


def test_selected_runs_and_no_slurm(exp):
    """A subset keeps its run indices; without Slurm answers a submitted folder says so."""
    root, cfgs, _ = exp
    out = res.collect_results(40, [cfgs[3], cfgs[1]], root, [3, 1], runner=lambda cmd: '')
    assert [(r.run, r.state) for r in out] in ([(3, 'submitted'), (1, 'running')],
                                               [(3, 'queued'), (1, 'running')])  # a real squeue may answer
    with pytest.raises(ValueError, match='2 configs for 1 run indices'):
        res.collect_results(40, cfgs[:2], root, [0])
    with pytest.raises(ValueError, match='unknown results format'):
        res.format_results(out, 'html')


def test_runs_without_paper_and_without_folders(tmp_path):
    cfgs = get_runs(41, data_root=str(tmp_path / 'data'))
    (row,) = res.collect_results(41, [cfgs[5]], tmp_path, [5])
    assert (row.name, row.paper, row.state, row.count) == ('voc-92 semivl+mcc vlg-ftap/mcvitb', None,
                                                           'not started', 0)
    assert '| 5 | voc-92 semivl+mcc vlg-ftap/mcvitb | not started | - |' in res.format_results([row])
    assert 'paper mIoU' not in res.format_results([row])


def test_short_names():
    cfgs = get_runs(41)
    assert [res.short_name(c) for c in cfgs[:4]] == [
        'voc-92 semivl zegclip-pt/vitb', 'voc-92 semivl dlv3p-ft/tvit-in1k', 'voc-92 semivl dlv3p-ft/mcvitb',
        'voc-92 semivl dlv3p-ftap/mcvitb']
    changed = with_overrides(cfgs[0], parse_cfg_options(['conf_thresh=0.9', 'seed=3']))
    assert res.short_name(changed) == 'voc-92 semivl zegclip-pt/vitb ' + changed['name'][-7:]
