"""Experiment files (issue 18): a user's own experiments, sweeps and seeds, without editing the package.

Parsing and every bad-file error (one line naming the file), run order runs x grid x seeds, `--seeds`,
overrides that change the method, refusal of a method that cannot train a model, and the user's
whole day on a YAML file outside the checkout: list, train, resume, submit as an array, tabulate.
"""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from semiseg import cli
from semiseg.experiments import get_runs, with_overrides
from semiseg.experiments.files import MAX_FILE_BYTES, ExperimentFileError, load_experiment_file
from semiseg.experiments.overrides import OverrideError, parse_cfg_options
from semiseg.experiments.registry import EXPERIMENTS_ENV, experiment_dirs_added, get_experiment

SWEEP = """\
id: 900
title: toy learning-rate sweep
base: {exp: 0, run: 0}
set: {epochs: 1, device: cpu, debug_every_epoch: false}
grid:
  optimizer.lr: [1.0e-3, 2.0e-3]
seeds: [0, 1]
"""


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """A private config dir and exp root; no experiment folders from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('SEMISEG_CONFIG_DIR', str(tmp_path / 'gen'))
    monkeypatch.delenv(EXPERIMENTS_ENV, raising=False)
    monkeypatch.delenv('SEMISEG_DATA', raising=False)
    return tmp_path


# ----------------------------------------------------------------------------- parsing and order
def test_runs_are_runs_x_grid_x_seeds_in_file_order(clean_env):
    folder = clean_env / 'mine'
    _write(folder, 'order.yaml', """\
        id: 901
        base: {exp: 0, run: 1}
        set: {epochs: 3}
        runs:
          - {}
          - {conf_thresh: 0.9}
        grid:
          optimizer: {lr: [1e-3, 2e-3]}
        seeds: 2
        """)
    with experiment_dirs_added([folder]):
        exp = get_experiment(901)
        cfgs = get_runs(901)
    assert exp.description == 'order' and len(exp.runs) == 8
    got = [(c['sweep'], c.get('seed', 0)) for c in cfgs]
    assert got == [({'optimizer.lr': lr, **extra}, seed)
                   for extra in ({}, {'conf_thresh': 0.9}) for lr in (1e-3, 2e-3) for seed in (0, 1)]
    assert all(c['exp'] == 901 and c['epochs'] == 3 and c['method'] == 'semivl' for c in cfgs)
    assert 'seed' not in cfgs[0] and cfgs[1]['seed'] == 1
    assert list(cfgs[0])[list(cfgs[0]).index('name') + 1] == 'sweep'
    names = [c['name'] for c in cfgs]
    assert len(set(names)) == 8 and names[1] == names[0] + '_s1'                  # lr 1e-3: the base's
    assert '_h' in names[2] and names[3] == names[2].replace('_h', '_s1_h')        # seed shown, hash shared
    later = with_overrides(cfgs[5], parse_cfg_options(['optimizer.lr=5e-3', 'method=fixmatch']))
    assert later['sweep'] == {'optimizer.lr': 5e-3, 'conf_thresh': 0.9}           # the record follows --cfg-options
    assert later['name'] != cfgs[5]['name'] and '_s1_h' in later['name']


BAD_FILES = [
    ('grdi: {epochs: [1]}', "unknown key 'grdi'; did you mean 'grid'?"),
    ('id: abc', 'id must be a whole number >= 0'),
    ('seeds: [0, x]', "seeds: 'x' is not a whole number"),
    ('seeds: [1, 1]', 'lists a seed twice'),
    ('runs: {epochs: 2}', 'runs must be a non-empty list'),
    ('grid: {}', 'grid is empty'),
    ('grid: {optimizer.lr: []}', 'grid optimizer.lr is an empty list'),
    ('grid: {optimizer.lr: 0.1}', 'grid optimizer.lr must be a list of values'),
    ('set: {seed: 3}', 'seed is set by `seeds: [0, 1, 2]`'),
    ('runs: [{epochs: 2}]\ngrid: {epochs: [3]}', 'runs[0] and grid both set epochs'),
    ('evil: !!python/object/apply:os.system ["echo pwned"]', 'unsafe or unknown YAML tag'),
    ('title: [unclosed', 'not valid YAML'),
]


@pytest.mark.parametrize('extra,message', BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_file_is_one_line_naming_the_file(tmp_path, extra, message):
    path = _write(tmp_path, 'bad.yaml', f'id: 900\nbase: {{exp: 0, run: 0}}\n{extra}\n')   # a later id wins
    with pytest.raises(ExperimentFileError) as err:
        load_experiment_file(path)
    text = str(err.value)
    assert text.startswith(f'{path}: ') and message in text and '\n' not in text


def test_missing_base_and_size_limit(tmp_path):
    with pytest.raises(ExperimentFileError, match=r'base is missing; say which run'):
        load_experiment_file(_write(tmp_path, 'a.yaml', 'id: 900\n'))
    with pytest.raises(ExperimentFileError, match=rf'at most {MAX_FILE_BYTES} bytes'):
        load_experiment_file(_write(tmp_path, 'b.yaml', SWEEP + '#' * MAX_FILE_BYTES))


REGISTRY_ERRORS = [
    ({'a.yaml': SWEEP, 'b.yaml': SWEEP}, 'experiment 900 is defined twice: {d}/a.yaml and {d}/b.yaml'),
    ({'a.yaml': SWEEP.replace('id: 900', 'id: 40')}, '{d}/a.yaml: id 40 is the built-in experiment 40'),
    ({'a.yaml': SWEEP.replace('exp: 0, run: 0', 'exp: 77, run: 0')}, 'there is no experiment 77'),
    ({'a.yaml': SWEEP.replace('exp: 0, run: 0', 'exp: 0, run: 9')}, 'experiment 0 has runs 0..6'),
    ({'a.yaml': SWEEP.replace('exp: 0, run: 0', 'exp: 901, run: 0'),
      'b.yaml': SWEEP.replace('id: 900', 'id: 901').replace('exp: 0, run: 0', 'exp: 900, run: 0')},
     'lead back to experiment 900'),
    ({'a.yaml': SWEEP.replace('epochs: 1', 'epochz: 1')}, "{d}/a.yaml: run 0 (optimizer.lr=0.001): unknown "
                                                          "config key 'epochz'; did you mean 'epochs'?"),
    ({'a.yaml': SWEEP.replace('[1.0e-3, 2.0e-3]', '[fast]')}, 'optimizer.lr expects a number'),
]


@pytest.mark.parametrize('files,message', REGISTRY_ERRORS, ids=[m[:40] for _, m in REGISTRY_ERRORS])
def test_registry_errors_name_the_files(clean_env, files, message):
    folder = clean_env / 'mine'
    for name, text in files.items():
        _write(folder, name, text)
    with experiment_dirs_added([folder]), pytest.raises(ExperimentFileError) as err:
        get_runs(900)
    assert message.format(d=folder) in str(err.value) and '\n' not in str(err.value)


def test_bad_file_through_the_cli_exits_2_and_writes_nothing(clean_env, capsys):
    folder = clean_env / 'mine'
    _write(folder, 'a.yaml', SWEEP.replace('grid:', 'gird:'))
    assert cli.main(['--experiments', str(folder), '--exp', '900', '--run', 'all', '--dry-run']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('experiments.py: error: ') and "did you mean 'grid'?" in err and len(err.splitlines()) == 1
    assert cli.main(['--experiments', str(clean_env / 'nope'), '--list']) == 2
    assert 'nope: no such folder' in capsys.readouterr().err
    assert sorted(p.name for p in clean_env.iterdir()) == ['mine']


def test_environment_folders_reach_the_tools_and_the_api(clean_env, monkeypatch):
    folder = clean_env / 'mine'
    _write(folder, 'a.yaml', SWEEP)
    monkeypatch.setenv(EXPERIMENTS_ENV, os.pathsep.join(['', str(folder)]))   # empty entries are skipped
    from semiseg.api import run_config
    from semiseg.tools._common import select_run_config
    assert select_run_config(900, 3)['seed'] == 1 and run_config(900, 2)['sweep'] == {'optimizer.lr': 2e-3}
    monkeypatch.delenv(EXPERIMENTS_ENV)
    with pytest.raises(KeyError, match='unknown experiment 900'):
        run_config(900, 0)


def test_shipped_example_lists_and_dry_runs(clean_env, capsys):
    exp = get_experiment(1)
    assert Path(exp.path).parent.name == 'experiments' and len(exp.runs) == 30
    cfgs = get_runs(1)
    pairs = {(c['model'], c['method']) for c in cfgs}
    for model in {c['model'] for c in cfgs}:          # every tiny model has a supervised partner
        assert (model, 'supervised') in pairs and len([p for p in pairs if p[0] == model]) >= 2
    assert [c.get('seed', 0) for c in cfgs[:6]] == [0, 1, 2, 0, 1, 2]
    baseline = next(c for c in cfgs if c['model'].endswith('allspark-mit-tiny') and c['method'] == 'supervised')
    assert baseline['model_args']['decode_head'] == {'with_allspark': False}
    assert cli.main(['--exp', '1', '--run', 'all', '--dry-run', '--exp-root', str(clean_env / 'exp')]) == 0
    out = capsys.readouterr().out
    assert out.count('new folder: ') == 30 and not (clean_env / 'exp').exists()


# ----------------------------------------------------------------------------- seeds
def test_seeds_flag_repeats_every_selected_run(clean_env, capsys):
    assert cli.parse_seeds('3') == [0, 1, 2] and cli.parse_seeds('4,7') == [4, 7]
    for bad in ('0', 'a', '1,1', '1,'):
        with pytest.raises(cli.UsageError):
            cli.parse_seeds(bad)
    assert cli.main(['--exp', '0', '--run', '0,3', '--seeds', '0,2', '--list']) == 0
    assert cli.main(['--exp', '0', '--run', '0,3', '--seeds', '0,2', '--dry-run',
                     '--exp-root', str(clean_env / 'exp')]) == 0
    out = capsys.readouterr().out
    listed = [line.split() for line in out.splitlines() if line[:2] in ('0 ', '3 ')]
    assert [(r[0], r[5]) for r in listed[:4]] == [('0', '0'), ('0', '2'), ('3', '0'), ('3', '2')]
    plain = get_runs(0)
    assert f'run 0: {plain[0]["name"]}\n' in out and f'run 3: {plain[3]["name"]}_s2\n' in out
    assert out.count('new folder: ') == 4


# ----------------------------------------------------------------------------- method changes
def test_changing_the_method_makes_its_keys_valid():
    unimatch = get_runs(30)[0]
    with pytest.raises(OverrideError, match=r'epoch_over is read by method supervised: set method=supervised'):
        with_overrides(unimatch, parse_cfg_options(['epoch_over=unlabeled']))
    sup = with_overrides(unimatch, parse_cfg_options(['epoch_over=unlabeled', 'method=supervised']))
    assert sup['method'] == 'supervised' and sup['epoch_over'] == 'unlabeled'
    assert not {'use_fp', 'conf_mode', 'conf_thresh', 'pleval'} & set(sup)
    assert '_sup-eqit' in sup['name'] and sup['model'] == unimatch['model']
    back = with_overrides(get_runs(0)[0], parse_cfg_options(['method=unimatch', 'conf_thresh=0.8']))
    keys = list(back)
    assert 'epoch_over' not in back and back['conf_thresh'] == 0.8 and back['use_fp'] is True
    assert keys.index('method') < keys.index('use_fp') < keys.index('disable_dropout') < keys.index('pleval')


def test_a_method_that_cannot_train_the_model_is_refused_when_the_config_is_built():
    allspark, unimatch = get_runs(0)[5], get_runs(0)[4]
    with pytest.raises(ValueError, match='method unimatch cannot train mmseg.allspark-mit-tiny'):
        with_overrides(allspark, parse_cfg_options(['method=unimatch']))
    with pytest.raises(ValueError, match='method allspark needs the AllSpark decoder'):
        with_overrides(unimatch, parse_cfg_options(['method=allspark']))
    with pytest.raises(ValueError, match='has no MaskCLIP guidance encoder'):
        with_overrides(unimatch, parse_cfg_options(['method=semivl', 'maskclip_consistency_lambda=1']))
    sup = with_overrides(allspark, parse_cfg_options(['method=supervised']))
    assert sup['model_args']['decode_head'] == {'with_allspark': False} and 'warmup_epoch' not in sup
    again = with_overrides(sup, parse_cfg_options(['method=allspark']))
    assert 'decode_head' not in again['model_args'] and again['warmup_epoch'] == 5


def test_allspark_supervised_baseline_is_the_segformer_head_alone(tmp_path):
    import torch
    from _toy_data import trimmed_toy

    from semiseg.models.builder import build_segmentor
    data = trimmed_toy(tmp_path, unlabeled=8, val=2)
    cfg = with_overrides(get_runs(0, data_root=str(data))[5], parse_cfg_options(['method=supervised']))
    model = build_segmentor(cfg, pretrained=False).train()
    assert model.decode_head.allspark is None
    assert not [k for k in model.state_dict() if 'allspark' in k]
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5, 64, 64)   # no pseudo map needed


# ----------------------------------------------------------------------------- the user's day
def _run_folders(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if (p / 'config.yaml').is_file())


def test_user_sweep_outside_the_checkout_lists_trains_resumes_submits_and_tabulates(tmp_path, monkeypatch, capsys):
    """One YAML file outside the checkout: list, train, resume, submit as an array, tabulate."""
    from _toy_data import trimmed_toy

    import semiseg.methods.supervised as supervised
    from semiseg.engine.signals import request_stop
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('SEMISEG_CONFIG_DIR', str(tmp_path / 'gen'))
    monkeypatch.delenv(EXPERIMENTS_ENV, raising=False)
    data = trimmed_toy(tmp_path / 'data', unlabeled=8, val=2)       # 2 iterations an epoch, 2 val images
    folder = tmp_path / 'my-experiments'
    _write(folder, 'lr.yaml', SWEEP)
    common = ['--experiments', str(folder), '--exp', '900', '--data-root', str(data),
              '--exp-root', str(tmp_path / 'exp')]

    assert cli.main(common + ['--list']) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == f'experiment 900: toy learning-rate sweep ({folder / "lr.yaml"})'
    assert [row.split()[5:7] for row in listed[2:]] == [['0', 'optimizer.lr=0.001'], ['1', 'optimizer.lr=0.001'],
                                                        ['0', 'optimizer.lr=0.002'], ['1', 'optimizer.lr=0.002']]

    step = supervised.Supervised.step
    stop_once = [True]

    def interrupted_step(self, batch, ctx):   # a pre-emption after the first iteration of run 0
        if stop_once and ctx.iteration == 0:
            stop_once.clear()
            request_stop('test: pre-empted')
        return step(self, batch, ctx)

    monkeypatch.setattr(supervised.Supervised, 'step', interrupted_step)
    assert cli.main(common + ['--run', '0']) == 3                       # interrupted: latest.pth saved
    assert cli.main(common + ['--run', '0', '--resume']) == 0
    out = capsys.readouterr().out
    assert 'run 0: resuming ' in out
    run0, = _run_folders(tmp_path / 'exp' / 'exp-900')
    assert json.loads((run0 / 'results.json').read_text())['iters'] == 2

    assert cli.main(common + ['--run', 'all', '--launcher', 'debug']) == 0  # run 0 is finished: skipped
    out = capsys.readouterr().out
    assert 'run 0 (' in out and 'already finished' in out and out.count('new run folder') == 3
    folders = _run_folders(tmp_path / 'exp' / 'exp-900')
    assert len(folders) == 4 and all((f / 'results.json').is_file() for f in folders)

    assert cli.main(common + ['--results', '--format', 'json']) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r['count'] for r in rows} == {2} and all(r['miou'] is not None for r in rows)
    assert len({r['name'] for r in rows}) == 2                         # one per learning rate, seeds merged
    assert all(len(r['folders']) == 2 for r in rows)
