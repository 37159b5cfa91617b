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

RULE_NOTE = ("mIoU: by the rule of the run's paper (mean ± std over seeds, n runs): best = the best evaluation "
             "during training. Final and best mIoU of the model and of its EMA teacher: --format csv|json.")
MARKDOWN = f"""\
| run | name | state | iters | mIoU | rule | paper | diff | wall | GPU-h |
| --: | --- | --- | --: | --: | --- | --: | --: | --: | --: |
| 0 | voc-92 {FAMILY} | 2 finished, 1 interrupted | 50/100 | 81.75 ± 1.06 (n=2) | best | 84.0 | -2.25 | 1:15:00 | 11.00 |
| 1 | voc-183 {FAMILY} | running | 40/100 | 70.50 | best | 85.6 | -15.10 | 0:30:00 | 1.00 |
| 2 | voc-366 {FAMILY} | failed | 10/100 | - | best | 86.0 | - | 0:10:00 | 0.67 |
| 3 | voc-732 {FAMILY} | queued | - | - | best | 86.7 | - | - | - |
| 4 | voc-1464 {FAMILY} | not started | - | - | best | 87.3 | - | - | - |

{RULE_NOTE}

paper mIoU: {TABLE} ({SOURCE})
"""  # noqa: E501

NONE_NUMBERS = {f'{kind}_miou{std}': None for kind in ('final', 'best', 'ema_final', 'ema_best')
                for std in ('', '_std')}


def _expected_dicts(folders):
    base = {**NONE_NUMBERS, 'rule': 'best', 'total_iters': 100, 'paper_table': TABLE, 'paper_source': SOURCE,
            'miou_std': None, 'seeds': []}
    return [
        {**base, 'run': 0, 'runs': [0], 'name': f'voc-92 {FAMILY}', 'state': '2 finished, 1 interrupted',
         'iterations': 50, 'miou': 81.75, 'miou_std': 1.0607, 'count': 2, 'seeds': [0, 1], 'final_miou': 81.0,
         'final_miou_std': 1.4142, 'best_miou': 81.75, 'best_miou_std': 1.0607, 'paper_miou': 84.0, 'diff': -2.25,
         'wall_s': 4500.0, 'gpu_hours': 11.0, 'folders': [str(folders[k]) for k in ('0a', '0b', '0c')]},
        {**base, 'run': 1, 'runs': [1], 'name': f'voc-183 {FAMILY}', 'state': 'running', 'iterations': 40,
         'miou': 70.5, 'count': 1, 'seeds': [0], 'final_miou': 70.0, 'best_miou': 70.5, 'paper_miou': 85.6,
         'diff': -15.1, 'wall_s': 1800.0, 'gpu_hours': 1.0, 'folders': [str(folders['1'])]},
        {**base, 'run': 2, 'runs': [2], 'name': f'voc-366 {FAMILY}', 'state': 'failed', 'iterations': 10,
         'miou': None, 'count': 0, 'paper_miou': 86.0, 'diff': None, 'wall_s': 600.0,
         'gpu_hours': 0.6667, 'folders': [str(folders['2'])]},
        {**base, 'run': 3, 'runs': [3], 'name': f'voc-732 {FAMILY}', 'state': 'queued', 'iterations': None,
         'total_iters': None, 'miou': None, 'count': 0, 'paper_miou': 86.7, 'diff': None,
         'wall_s': None, 'gpu_hours': None, 'folders': [str(folders['3'])]},
        {**base, 'run': 4, 'runs': [4], 'name': f'voc-1464 {FAMILY}', 'state': 'not started', 'iterations': None,
         'total_iters': None, 'miou': None, 'count': 0, 'paper_miou': 87.3, 'diff': None,
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
    none4 = ',' * 3
    assert lines == [
        ','.join(res.COLUMNS),
        f'0,0,voc-92 {FAMILY},"2 finished, 1 interrupted",50,100,best,81.75,1.0607,2,0;1,84.0,-2.25,'
        f'81.0,1.4142,81.75,1.0607,{none4},4500.0,11.0,{p},{folders["0a"]};{folders["0b"]};{folders["0c"]}',
        f'1,1,voc-183 {FAMILY},running,40,100,best,70.5,,1,0,85.6,-15.1,70.0,,70.5,,{none4},1800.0,1.0,{p},'
        f'{folders["1"]}',
        f'2,2,voc-366 {FAMILY},failed,10,100,best,,,0,,86.0,,,,,,{none4},600.0,0.6667,{p},{folders["2"]}',
        f'3,3,voc-732 {FAMILY},queued,,,best,,,0,,86.7,,,,,,{none4},,,{p},{folders["3"]}',
        f'4,4,voc-1464 {FAMILY},not started,,,best,,,0,,87.3,,,,,,{none4},,,{p},',
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
    seeded = with_overrides(cfgs[0], parse_cfg_options(['conf_thresh=0.9', 'seed=3']))
    assert seeded['name'].endswith('_s3')
    assert res.short_name(seeded) == 'voc-92 semivl zegclip-pt/vitb'   # a row holds every seed
    hidden = with_overrides(cfgs[0], parse_cfg_options(['optimizer.weight_decay=0.1', 'seed=2']))
    assert res.short_name(hidden) == 'voc-92 semivl zegclip-pt/vitb ' + hidden['name'][-7:]   # the hash stays
    assert res.run_label([4, 0, 1, 2, 7, 8]) == '0-2,4,7-8' and res.run_label([3]) == '3'


# ----------------------------------------------------------------------------- the paper's rule
# the number each method's paper reports (issue 20): a new method must be added here on purpose
RULES = {'supervised': 'best', 'fixmatch': 'best', 'unimatch': 'best', 'semivl': 'best', 'allspark': 'best',
         'unimatch_v2': 'ema_best',      # V2 README = max over epochs of the EMA teacher's mIoU (its training logs)
         'fixmatch_ema': 'ema_best'}     # V2's FixMatch-with-EMA ablation rows: best EMA as well


def test_rule_per_method_is_pinned():
    from semiseg.experiments.published import published_result, report_rule
    from semiseg.methods.registry import METHODS
    assert set(METHODS) - set(RULES) == set(), f'pin the reporting rule of {sorted(set(METHODS) - set(RULES))}'
    assert {name: info.report for name, info in METHODS.items()} == {name: RULES[name] for name in METHODS}
    for exp_id, rule in ((40, 'best'), (44, 'best'), (30, 'best'), (32, 'best'), (50, 'best'), (53, 'best'),
                         (60, 'ema_best'), (63, 'ema_best'), (65, 'ema_best')):
        for cfg in get_runs(exp_id):
            assert report_rule(cfg, published_result(exp_id, cfg)) == rule, exp_id


def _v2_results(run_dir, final, best, ema_final, ema_best):
    """results.json as the trainer writes it today: the student at top level, the teacher under 'ema'."""
    atomic_write_json(run_dir / 'results.json', {
        'miou': final, 'best_miou': best, 'per_class_iou': {}, 'best_per_class_iou': {}, 'iters': 100, 'epochs': 10,
        'finished': True, 'ema': {'miou': ema_final, 'best_miou': ema_best, 'per_class_iou': {}, 'best_epoch': 7}})


def test_each_paper_by_its_own_rule(tmp_path):
    """V2 (and exp 65) by the EMA teacher's best, AllSpark and SemiVL by the best evaluation; the
    other numbers stay in json; a running V2 folder without teacher numbers shows none by the rule."""
    v2 = get_runs(60, data_root=str(tmp_path / 'data'))[5]            # DINOv2-B VOC 92: paper 86.3
    d = create_run_dir(v2, tmp_path, uid='v2a00')
    _state(d, 'finished', 100, 85.0, 84.5, 10.0, 4)
    _v2_results(d, 84.5, 85.0, 86.0, 86.5)
    d = create_run_dir(_seeded(v2, 1), tmp_path, uid='v2b00')
    _state(d, 'finished', 100, 85.2, 84.9, 10.0, 4)
    _v2_results(d, 84.9, 85.2, 86.2, 86.1)
    (row,) = res.collect_results(60, [v2], tmp_path, [5])
    assert (row.rule, row.miou, row.count, row.paper.miou) == ('ema_best', pytest.approx(86.3), 2, 86.3)
    assert row.diff == pytest.approx(0.0)
    data = json.loads(res.format_results([row], 'json'))[0]
    assert (data['final_miou'], data['best_miou'], data['ema_final_miou'], data['ema_best_miou']) == \
        (84.7, 85.1, 86.1, 86.3)
    assert '| 5 | voc-92 unimatch_v2 dpt/dinov2b | finished | 100/100 | 86.30 ± 0.28 (n=2) | best EMA | 86.3 | ' \
           '+0.00 |' in res.format_results([row])
    assert "best EMA = the EMA teacher's best evaluation during training" in res.format_results([row])

    ours = get_runs(65, data_root=str(tmp_path / 'data'))[0]          # SemiVL model x V2 method: V2's rule
    d = create_run_dir(ours, tmp_path, uid='o6500')
    _state(d, 'running', 40, 70.0, 69.0, 10.0, 4)                     # no teacher numbers in state.json yet
    (row,) = res.collect_results(65, [ours], tmp_path, [0])
    assert (row.rule, row.miou, row.paper, row.numbers['best'][0]) == ('ema_best', None, None, 70.0)
    write_state(d, 'running', iteration=50, total_iters=100, best_miou=70.0, last_miou=69.0, elapsed_s=10.0,
                world_size=4, ema={'miou': 71.0, 'best_miou': 71.5})   # when the trainer reports the teacher
    (row,) = res.collect_results(65, [ours], tmp_path, [0])
    assert (row.miou, row.numbers['ema_final'][0]) == (71.5, 71.0)

    for exp_id, run in ((50, 0), (40, 0)):                            # AllSpark, SemiVL: best evaluation
        cfg = get_runs(exp_id, data_root=str(tmp_path / 'data'))[run]
        d = create_run_dir(cfg, tmp_path, uid=f'b{exp_id}00')
        _state(d, 'finished', 100, 77.0, 76.0, 10.0, 4)
        _finish(d, 76.0, 77.0)
        (row,) = res.collect_results(exp_id, [cfg], tmp_path, [run])
        assert (row.rule, row.miou, row.numbers['final'][0]) == ('best', 77.0, 76.0)
        assert row.diff == pytest.approx(77.0 - row.paper.miou)


def test_a_changed_paper_run_has_no_paper_number(tmp_path):
    """--cfg-options that change what is trained drop the paper's number; seed and runtime options do not."""
    cfg = get_runs(40, data_root=str(tmp_path / 'data'))[0]
    same = with_overrides(cfg, parse_cfg_options(['seed=2', 'num_workers=3', 'log_every=7']))
    changed = [with_overrides(cfg, parse_cfg_options([opt])) for opt in ('epochs=2', 'optimizer.lr=1e-3',
                                                                          'conf_thresh=0.9', 'batch_size=1')]
    rows = res.collect_results(40, [cfg, same, *changed], tmp_path, [0, 0, 0, 0, 0, 0])
    assert [r.paper.miou if r.paper else None for r in rows] == [84.0, None, None, None, None]  # cfg, same: one row
    assert rows[0].runs == [0]


def test_a_published_row_with_its_own_rule_wins_over_the_method(tmp_path):
    """`Published.report`: a paper row that reports another number (e.g. the final evaluation) is
    compared with ours computed the same way."""
    from semiseg.experiments.published import Published, report_rule
    cfg = get_runs(40, data_root=str(tmp_path / 'data'))[0]
    final = Published(80.0, 'a table that prints the last epoch', 'https://example.org/t', report='final')
    assert report_rule(cfg, final) == 'final' and report_rule(cfg, None) == 'best'
    folder = res.FolderResult(tmp_path, 'finished', 100, 100, {'final': 79.0, 'best': 81.0, 'ema_final': None,
                                                               'ema_best': None}, 10.0, 1)
    row = res.aggregate(0, cfg, [folder], final)
    assert (row.rule, row.miou, row.diff) == ('final', 79.0, -1.0)
    assert '| 79.00 | final | 80.0 | -1.00 |' in res.format_results([row])
