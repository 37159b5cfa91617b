"""experiments.py: errors (exit 2, one line, nothing written), listing, dry runs, launching."""
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from semiseg import cli
from semiseg.experiments import get_runs
from semiseg.experiments.io import load_config
from semiseg.launch import local
from semiseg.launch import slurm as real_slurm
from semiseg.launch.options import SlurmOptions
from semiseg.launch.rundir import create_run_dir

SCRIPT = Path(__file__).resolve().parents[1] / 'experiments.py'


def _cli(args, cwd, env_extra=None):
    env = {'PATH': '/usr/bin:/bin', 'HOME': str(cwd), 'SEMISEG_CONFIG_DIR': str(cwd / 'gen'),
           **(env_extra or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


ERRORS = [
    (['--exp', '99', '--run', '0'], 'unknown experiment 99; valid: 0, 1, 30, 31, 32, 33, 40'),
    (['--exp', '40', '--run', '5'], 'run 5 out of range: experiment 40 has 5 runs (valid: 0-4 or all)'),
    (['--exp', '40', '--run', '1-x'], "malformed run spec '1-x'"),
    (['--exp', '40', '--run', '0', '--cfg-options', 'epochs'], "malformed --cfg-options item 'epochs'"),
    (['--exp', '40', '--run', '0', '--cfg-options', 'optimizer.lrr=1'], "unknown config key 'optimizer.lrr'"),
    (['--exp', '40', '--run', '0', '--cfg-options', 'x=[1'], 'cannot parse value'),
    (['--exp', '40', '--run', '0', '--launcher', 'k8s'],
     "invalid choice: 'k8s' (choose from 'local', 'slurm', 'debug')"),
    (['--exp', '40'], '--run is required with --exp 40'),
    (['--run', '0'], '--exp is required (valid: 0, 1, 30, 31'),
    (['--exp', 'forty', '--run', '0'], "argument --exp: invalid int value: 'forty'"),
    (['--exp', '0', '--run', '0', '--resume', '--force'], '--resume and --force contradict'),
    (['--exp', '0', '--run', '0', '--resume'], 'has no unfinished run folder'),
    (['--exp', '0', '--run', '0', '--ngpus', '0'], '--ngpus must be at least 1'),
    (['--exp', '0', '--run', '0', '--launcher', 'slurm', '--slurm-defaults', 'nope.yaml'],
     'Slurm defaults file nope.yaml does not exist'),
    (['--exp', '0', '--run', '0', '--launcher', 'slurm', '--time-min', '0'],
     'time_min must be a positive integer'),
    (['--exp', '0', '--run', '0', '--launcher', 'slurm', '--dry-run', '--sbatch', '=x'],
     "cannot read extra sbatch option '=x'"),
]


# the same checks through a real process for a representative subset (exit status, stderr)
SUBPROCESS_ERRORS = [ERRORS[0], ERRORS[2], ERRORS[4], ERRORS[6], ERRORS[13]]


@pytest.mark.parametrize('args,message', SUBPROCESS_ERRORS, ids=[' '.join(a) for a, _ in SUBPROCESS_ERRORS])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, message):
    res = _cli(args, tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('experiments.py: error: '), res.stderr
    assert message in lines[0]
    assert 'Traceback' not in res.stderr and res.stdout == ''
    assert list(tmp_path.iterdir()) == []   # no configs, no run folders


@pytest.mark.parametrize('args,message', ERRORS, ids=[' '.join(a) for a, _ in ERRORS])
def test_bad_input_in_process(env, capsys, args, message):
    try:
        code = cli.main(args)
    except SystemExit as e:      # argparse's own errors
        code = e.code
    assert code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('experiments.py: error: ') and message in lines[0]
    assert captured.out == ''
    assert list(env.root.iterdir()) == []   # no configs, no run folders


def test_list(tmp_path):
    res = _cli(['--list'], tmp_path)
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    ids = [int(line.split()[0]) for line in lines]
    assert ids == [0, 1, 30, 31, 32, 33, 40, 41, 42, 43, 44, 50, 51, 52, 53, 60, 61, 62, 63, 64, 65, 66]
    assert '12 runs' in lines[ids.index(41)]
    res = _cli(['--exp', '44', '--list'], tmp_path)
    lines = res.stdout.splitlines()
    assert lines[0].startswith('experiment 44: ')
    assert lines[1].split() == ['run', 'dataset', 'split', 'method', 'GPUs', 'name']
    assert lines[2].split() == ['0', 'cityscapes', '1_30', 'semivl', '8', get_runs(44)[0]['name']]
    assert len(lines) == 7 and list(tmp_path.iterdir()) == []


@pytest.fixture
def env(tmp_path, monkeypatch):
    """In-process CLI with a fake engine, no GPU and a private config dir / exp root."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('SEMISEG_CONFIG_DIR', str(tmp_path / 'gen'))
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.delenv('SEMISEG_DATA', raising=False)
    monkeypatch.delenv('SEMISEG_SLURM_DEFAULTS', raising=False)
    monkeypatch.setattr(local, 'cuda_device_count', lambda: 0)
    trained = []

    def train(cfg, run_dir):
        trained.append((cfg, Path(run_dir)))
        (Path(run_dir) / 'results.json').write_text(json.dumps({'miou': 9.0, 'finished': True}))
        return {'miou': 9.0, 'best_miou': 9.0}

    engine = types.ModuleType('semiseg.engine')
    engine.train = train
    engine.TrainingInterrupted = type('TrainingInterrupted', (Exception,), {})
    monkeypatch.setitem(sys.modules, 'semiseg.engine', engine)
    toy = types.ModuleType('semiseg.data.toy')
    toy.prepared = []
    toy.ensure_toy_dataset = lambda root: toy.prepared.append(root) or root
    monkeypatch.setitem(sys.modules, 'semiseg.data.toy', toy)
    import semiseg.data.build
    checked = []
    monkeypatch.setattr(semiseg.data.build, 'check_data', lambda cfg, method: checked.append(cfg['name']))
    return types.SimpleNamespace(root=tmp_path, trained=trained, toy=toy, checked=checked)


def _run_dirs(root, exp_id=0):
    folder = root / 'exp' / f'exp-{exp_id}'
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_dry_run_writes_configs_and_prints_commands(env, capsys, monkeypatch):
    monkeypatch.setattr(local, 'cuda_device_count', lambda: 4)
    assert cli.main(['--exp', '40', '--run', '0,3', '--dry-run']) == 0
    out = capsys.readouterr().out
    cfgs = get_runs(40)
    assert sorted(p.name for p in (env.root / 'gen' / 'exp-40').iterdir()) == \
        sorted(f'{c["name"]}.yaml' for c in cfgs)
    assert f'run 0: {cfgs[0]["name"]}\n' in out and f'run 3: {cfgs[3]["name"]}\n' in out
    assert 'run 1:' not in out
    assert out.count('torchrun: ') == 2 and '--nproc_per_node 4 --master_addr 127.0.0.1 --master_port ' in out
    assert f'-m semiseg.engine.run --run-dir {env.root}/exp/exp-40/' in out
    assert not (env.root / 'exp').exists() and env.trained == []


def test_too_few_gpus_is_bad_input(env, capsys, monkeypatch):
    monkeypatch.setattr(local, 'cuda_device_count', lambda: 2)
    assert cli.main(['--exp', '40', '--run', '0']) == 2
    err = capsys.readouterr().err
    assert 'wants 4 GPUs but only 2 are visible; pass --ngpus 2' in err
    assert list(env.root.iterdir()) == []
    assert cli.main(['--exp', '40', '--run', '0', '--ngpus', '2', '--dry-run']) == 0
    assert '--nproc_per_node 2' in capsys.readouterr().out


def test_dry_run_single_gpu_is_in_process(env, capsys):
    assert cli.main(['--exp', '0', '--run', '2', '--dry-run', '--cfg-options', 'epochs=1']) == 0
    out = capsys.readouterr().out
    assert 'with --cfg-options epochs=1' in out
    assert 'in-process (semiseg.engine.train), equivalent to: ' in out
    assert f'-m semiseg.engine.run --run-dir {env.root}/exp/exp-0/' in out
    assert not (env.root / 'exp').exists() and env.toy.prepared == []


def test_launch_then_skip_finished_then_force(env, capsys):
    cfg = get_runs(0)[1]
    assert cli.main(['--exp', '0', '--run', '1']) == 0
    (run_dir,) = _run_dirs(env.root)
    assert env.trained == [(cfg, run_dir)]
    assert load_config(run_dir / 'config.yaml') == cfg
    assert env.toy.prepared == [Path('~/data/toy/').expanduser()]
    # finished: not trained again, exit 0, clear message
    capsys.readouterr()
    assert cli.main(['--exp', '0', '--run', '1']) == 0
    out = capsys.readouterr().out
    assert 'already finished' in out and 'Pass --force to train it again' in out
    assert len(env.trained) == 1 and len(_run_dirs(env.root)) == 1
    # --force: a new folder
    assert cli.main(['--exp', '0', '--run', '1', '--force']) == 0
    assert len(env.trained) == 2 and len(_run_dirs(env.root)) == 2


def test_unfinished_folder_is_resumed(env, capsys):
    cfg = get_runs(0)[0]
    existing = create_run_dir(cfg, env.root / 'exp')
    assert cli.main(['--exp', '0', '--run', '0', '--resume']) == 0
    assert env.trained == [(cfg, existing)]
    assert f'resuming {existing}' in capsys.readouterr().out
    # a changed config does not match that folder: new folder
    assert cli.main(['--exp', '0', '--run', '0', '--cfg-options', 'seed=4']) == 0
    assert len(_run_dirs(env.root)) == 2 and env.trained[-1][0]['seed'] == 4


def test_overrides_rename_runs_and_their_configs(env):
    assert cli.main(['--exp', '0', '--run', '0-1', '--cfg-options', 'epochs=2', 'optimizer.lr=2e-3',
                     '--data-root', '/datasets']) == 0
    originals = get_runs(0)[:2]
    for (cfg, run_dir), original in zip(env.trained, originals):
        assert cfg['name'] != original['name'] and '-ep2_' in cfg['name'] and '_h' in cfg['name']
        assert run_dir.name.split('_', 1)[1].startswith(cfg['name'])
        stored = load_config(run_dir / 'config.yaml')
        assert stored['epochs'] == 2 and stored['optimizer']['lr'] == 2e-3
        assert stored['data_root'] == '/datasets/toy/'
        assert load_config(env.root / 'gen' / 'exp-0' / f'{cfg["name"]}.yaml') == stored
    generated = load_config(env.root / 'gen' / 'exp-0' / f'{originals[0]["name"]}.yaml')
    assert generated['epochs'] == originals[0]['epochs'] != 2
    assert generated['optimizer']['lr'] != 2e-3 and generated['data_root'] == '/datasets/toy/'


def test_status_is_delegated(env, monkeypatch):
    seen = []
    status = types.ModuleType('semiseg.launch.status')
    status.print_status = lambda exp_id, cfgs, exp_root, indices: seen.append((exp_id, cfgs, exp_root, indices))
    monkeypatch.setitem(sys.modules, 'semiseg.launch.status', status)
    assert cli.main(['--exp', '40', '--status', '--exp-root', 'runs']) == 0
    assert seen == [(40, get_runs(40), env.root / 'runs', [0, 1, 2, 3, 4])]
    assert cli.main(['--exp', '40', '--status', '--run', '1']) == 0
    assert seen[-1] == (40, [get_runs(40)[1]], env.root / 'exp', [1])   # labelled by run id, not position
    assert not (env.root / 'gen').exists()


def _fake_slurm(monkeypatch, submit):
    """semiseg.launch.slurm with `submit` replaced (no cluster needed)."""
    fake = types.ModuleType('semiseg.launch.slurm')
    fake.__dict__.update({k: v for k, v in vars(real_slurm).items() if not k.startswith('__')})
    fake.submit = submit
    monkeypatch.setitem(sys.modules, 'semiseg.launch.slurm', fake)


@pytest.mark.parametrize('launcher', ['slurm', 'debug'])
def test_slurm_launcher_submits_all_runs(env, monkeypatch, launcher):
    submitted = []
    _fake_slurm(monkeypatch, lambda runs, opts, cluster='slurm': submitted.append((runs, opts, cluster)))
    defaults = env.root / 'slurm.yaml'
    defaults.write_text('account: grp\npartition: cpu\n')
    assert cli.main(['--exp', '40', '--run', 'all', '--launcher', launcher, '--ngpus', '2',
                     '--partition', 'gpu', '--time-min', '60', '--sbatch', 'mail-type=END',
                     '--slurm-defaults', str(defaults)]) == 0
    (runs, opts, cluster), = submitted
    assert cluster == launcher and env.trained == []
    # 2 GPUs instead of 4: the global batch halves, and the names say so
    assert [c['name'] for c, _ in runs] == [c['name'].replace('_ezsw', '_1x2x2_ezsw') for c in get_runs(40)]
    assert all(c['global_batch'] == {'configured': 8, 'actual': 4} for c, _ in runs)
    assert all((d / 'config.yaml').is_file() for _, d in runs)
    index = json.loads((env.root / 'exp' / 'exp-40' / '.config-index.json').read_text())   # --status reads it
    assert sorted(index['folders']) == sorted(d.name for _, d in runs)
    assert isinstance(opts, SlurmOptions)
    assert (opts.partition, opts.account, opts.time_min, opts.gpus_per_node, opts.extra_sbatch) == \
        ('gpu', 'grp', 60, 2, ['mail-type=END'])


def test_slurm_dry_run_prints_sbatch_script(env, capsys):
    assert cli.main(['--exp', '40', '--run', '0-1', '--launcher', 'slurm', '--dry-run',
                     '--partition', 'gpu', '--time-min', '90']) == 0
    out = capsys.readouterr().out
    assert 'sbatch script of submission 1 (2 run(s)):' in out and 'array 0-1%2 (2 task(s)); runs 0,1' in out
    for line in ('#SBATCH --array=0-1%2', '#SBATCH --partition=gpu', '#SBATCH --time=90',
                 '#SBATCH --gpus-per-node=4', '#SBATCH --job-name=semiseg-e40'):
        assert line in out
    assert not (env.root / 'exp').exists()


def test_slurm_rejection_removes_new_folders(env, monkeypatch, capsys):
    def submit(runs, opts, cluster='slurm'):
        raise real_slurm.SlurmError("unknown Slurm partition 'gpux'; available: debug")

    _fake_slurm(monkeypatch, submit)
    kept = create_run_dir(get_runs(0)[0], env.root / 'exp')   # resumed, so it must survive
    assert cli.main(['--exp', '0', '--run', 'all', '--launcher', 'slurm', '--partition', 'gpux']) == 2
    assert "error: unknown Slurm partition 'gpux'" in capsys.readouterr().err
    assert _run_dirs(env.root) == [kept]


def test_second_ctrl_c_exits_130_without_traceback(env, capsys, monkeypatch):
    def interrupted(cfg, run_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules['semiseg.engine'], 'train', interrupted)
    assert cli.main(['--exp', '0', '--run', '0']) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'aborted' in err[0]
    (run_dir,) = _run_dirs(env.root)
    assert (run_dir / 'config.yaml').is_file()


def test_ngpus_warns_about_the_global_batch_and_renames(env, caplog, capsys, monkeypatch):
    monkeypatch.setattr(local, 'cuda_device_count', lambda: 2)
    with caplog.at_level('WARNING'):
        assert cli.main(['--exp', '40', '--run', '0', '--ngpus', '2', '--dry-run']) == 0
    assert 'global batch of voc-92' in caplog.text and 'is 4 images instead of 8' in caplog.text
    out = capsys.readouterr().out
    assert '_1x2x2_' in out and (env.root / 'gen' / 'exp-40').is_dir()


def test_results_table_through_the_cli(env, capsys):
    run_dir = create_run_dir(get_runs(40)[0], env.root / 'exp')
    (run_dir / 'state.json').write_text(json.dumps({'state': 'finished', 'iteration': 10, 'total_iters': 10,
                                                    'elapsed_s': 3600, 'world_size': 4}))
    (run_dir / 'results.json').write_text(json.dumps({'finished': True, 'miou': 83.0, 'best_miou': 84.5, 'iters': 10}))
    assert cli.main(['--exp', '40', '--results', '--format', 'csv']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('run,runs,name,state') and len([x for x in lines if x[:1].isdigit()]) == 5
    assert ',best,84.5,' in lines[1] and ',84.0,' in lines[1]    # ours by SemiVL's rule (best) and the paper's
