"""Fault injection: what happens when inputs are hostile or the run is disturbed (README, "What happens when").

- nothing executes from a file we read (checkpoint payloads, model names that are paths);
- one writer per run folder; `--status` says 'stale' when the writer died;
- signals during training and during evaluation stop quickly and lose at most the current step;
- a full disk, a checkpoint write cut short, an edited config.yaml;
- a table of bad inputs: exit code, one line naming the file or key and the fix, nothing written,
  and an earlier run folder left exactly as it was.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import _engine_standins as standins
import numpy as np
import pytest
import torch
import yaml
from _toy_data import trimmed_toy
from PIL import Image

from semiseg import cli
from semiseg.engine.checkpoint import read_training_checkpoint
from semiseg.engine.run import main as engine_main
from semiseg.experiments import get_runs
from semiseg.launch.rundir import create_run_dir
from semiseg.launch.status import classify
from semiseg.utils.checkpoint_io import CheckpointError

torch.set_num_threads(1)
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


class Payload:
    """Unpickling it would create `marker`: a stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _env() -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO), env.get('PYTHONPATH')) if p)
    env['OMP_NUM_THREADS'] = '1'
    return env


def _standin_run(run_dir: Path, **cfg) -> subprocess.Popen:
    """`python -m semiseg.engine.run`-style training of the stand-ins in a subprocess."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(standins.base_config(**cfg), sort_keys=False))
    return subprocess.Popen([sys.executable, str(TESTS / '_engine_standins.py'), '--run-dir', str(run_dir)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f'the process ended before {what}: {proc.stderr.read().decode()[-1500:]}')
        if time.time() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.05)


def _state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / 'state.json').read_text())
    except (OSError, ValueError):
        return {}


def _snapshot(root: Path) -> dict:
    """Every file under `root` with its size and modification time, except the launch claims
    (`.claims/`: lock files saying who launches a config, taken before the data is checked)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob('*')) if p.is_file() and '.claims' not in p.relative_to(root).parts}


# ------------------------------------------------------------------------------------ nothing executes
def test_checkpoint_with_a_payload_is_refused_everywhere(tmp_path):
    from semiseg.api import load_checkpoint
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'model': {}, 'x': Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match='refusing to load .*evil.pth.*could run code.*--trust-checkpoint'):
        load_checkpoint(standins.build_model(standins.base_config()), evil)
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(standins.base_config(), sort_keys=False))
    torch.save({'model': {}, 'iteration': 3, 'x': Payload(marker)}, run_dir / 'latest.pth')
    assert engine_main(['--run-dir', str(run_dir)], parts=standins.parts()) == 1   # resume refuses it
    assert not marker.exists()


def test_model_name_that_is_a_path_is_refused_before_any_file_is_read(tmp_path, capsys):
    marker = tmp_path / 'pwned'
    (tmp_path / 'x.py').write_text(f'open({str(marker)!r}, "w").write("ran")\nmodel = dict(type="x")\n')
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    cfg = get_runs(0)[0]
    cfg['model'] = f'mmseg.../../../../../../../..{tmp_path}/x'
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert engine_main(['--run-dir', str(run_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'is not a model name' in err[0] and not marker.exists()
    assert not (run_dir / 'train.log').exists()                        # refused before training started


# ------------------------------------------------------------------------------------- one writer
def test_a_live_folder_has_one_writer_and_a_dead_one_is_stale(tmp_path, capsys):
    run_dir = tmp_path / 'run'
    proc = _standin_run(run_dir, epochs=50, test_sleep=0.05, debug_every_epoch=False)
    try:
        _wait_for(lambda: _state(run_dir).get('state') == 'running', 60, 'the run to start', proc)
        assert classify(run_dir, None)[0] == 'running'
        assert engine_main(['--run-dir', str(run_dir)], parts=standins.parts()) == 1   # a second writer
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f'is being trained by pid {proc.pid}' in err[0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    status, detail = classify(run_dir, None)
    assert status == 'stale' and f'pid {proc.pid}' in detail and 'the same command resumes it' in detail


def test_cli_never_shares_a_live_folder(tmp_path, monkeypatch, capsys):
    """Two starts of the same run: the second says who trains it and moves on (--resume: an error)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('SEMISEG_CONFIG_DIR', str(tmp_path / 'gen'))
    cfg = get_runs(0)[1]
    live = create_run_dir(cfg, tmp_path / 'exp')
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from semiseg.engine.runlock import RunLock; '
                               f'RunLock({str(live)!r}).acquire(); print("held", flush=True); time.sleep(60)'],
                              env=_env(), stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b'held'
        assert cli.main(['--exp', '0', '--run', '1', '--dry-run']) == 0
        out = capsys.readouterr().out
        assert f'is being trained by pid {holder.pid}' in out and 'would move on' in out and str(live) in out
        assert 'new folder:' not in out and f'resume: {live}' not in out
        assert cli.main(['--exp', '0', '--run', '1', '--resume', '--dry-run']) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f'is being trained right now by pid {holder.pid}' in err[0]
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['sigterm', 'ctrl-c'])
def test_a_stop_during_evaluation_is_quick_and_loses_no_training(tmp_path, sig):
    run_dir = tmp_path / 'run'
    marker = tmp_path / 'evaluating'
    proc = _standin_run(run_dir, epochs=2, test_eval_sleep=1.0, test_eval_marker=str(marker),
                        debug_every_epoch=False)
    try:
        _wait_for(marker.exists, 60, 'the first evaluation', proc)
        t0 = time.time()
        proc.send_signal(sig)
        code = proc.wait(30)
        stopped_in = time.time() - t0
    finally:
        proc.kill()
    assert code == 3 and stopped_in < 5, (code, stopped_in)
    assert read_training_checkpoint(run_dir / 'latest.pth')['iteration'] == 6   # the whole epoch is kept
    state = _state(run_dir)
    assert state['state'] == 'interrupted' and state['saved_iteration'] == 6
    marker.unlink()
    cfg = yaml.safe_load((run_dir / 'config.yaml').read_text())
    cfg.pop('test_eval_sleep')
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert engine_main(['--run-dir', str(run_dir)], parts=standins.parts()) == 0
    log = (run_dir / 'train.log').read_text()
    # the cut evaluation of epoch 0 ran again on resume (its results appear once), epoch 1's once
    assert log.count('Evaluation original, epoch 0') == 1 and log.count('Evaluation original, epoch 1') == 1
    assert 'during evaluation' in log and json.loads((run_dir / 'results.json').read_text())['iters'] == 12


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    run_dir = tmp_path / 'run'
    marker = tmp_path / 'evaluating'
    proc = _standin_run(run_dir, epochs=2, test_eval_sleep=3.0, test_eval_marker=str(marker),
                        debug_every_epoch=False)
    try:
        _wait_for(marker.exists, 60, 'the first evaluation', proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    finally:
        proc.kill()
    assert code == 130 and read_training_checkpoint(run_dir / 'latest.pth')['iteration'] == 6


# ----------------------------------------------------------------------------------- disk and files
def test_leftovers_of_a_cut_checkpoint_write_are_removed_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / 'run'
    cfg = standins.base_config(epochs=2, debug_every_epoch=False)
    proc = _standin_run(run_dir, **cfg, test_sigterm_at=7)
    assert proc.wait(60) == 3
    good = read_training_checkpoint(run_dir / 'latest.pth')['iteration']
    (run_dir / '.latest.pth.k1l9.tmp').write_bytes(b'half a checkpoint')       # killed mid-write
    cfg_file = yaml.safe_load((run_dir / 'config.yaml').read_text())
    cfg_file.pop('test_sigterm_at')
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(cfg_file, sort_keys=False))
    assert engine_main(['--run-dir', str(run_dir)], parts=standins.parts()) == 0
    assert not (run_dir / '.latest.pth.k1l9.tmp').exists()
    assert f'resuming from {run_dir / "latest.pth"} at iteration {good}/12' in (run_dir / 'train.log').read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason='mounting a small tmpfs needs root')
def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, capsys):
    mount = tmp_path / 'small'
    mount.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', str(mount)]).returncode != 0:
        pytest.skip('cannot mount a tmpfs here')
    try:
        run_dir = mount / 'run'
        filler = mount / 'filler'

        def fill_disk_at(iteration):
            def build(cfg, model):
                method = standins.build_method(cfg, model)
                step = method.step

                def step_and_fill(batch, ctx):
                    if ctx.iteration == iteration and not filler.exists():
                        with open(filler, 'wb') as f:      # leave ~150 KB: logs fit, a checkpoint does not
                            f.write(b'\0' * max(os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
                                                - 150_000, 0))
                    return step(batch, ctx)
                method.step = step_and_fill
                return method
            return build
        from semiseg.engine.trainer import TrainerParts
        parts = TrainerParts(**{**standins.parts().__dict__, 'build_method': fill_disk_at(7)})
        cfg = standins.base_config(epochs=3, ckpt_every=2, test_ckpt_kb=400, debug_every_epoch=False)
        run_dir.mkdir()
        (run_dir / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
        assert engine_main(['--run-dir', str(run_dir)], parts=parts) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == (f'error: disk full while writing in {run_dir}; the previous latest.pth is intact: '
                           'free some space and resume with the same command')
        assert read_training_checkpoint(run_dir / 'latest.pth')['iteration'] == 6
        assert not [p for p in run_dir.iterdir() if p.name.endswith('.tmp')]
        filler.unlink()
        assert engine_main(['--run-dir', str(run_dir)], parts=standins.parts()) == 0
        assert json.loads((run_dir / 'results.json').read_text())['iters'] == 18
    finally:
        subprocess.run(['umount', str(mount)])


# ----------------------------------------------------------------------------------- edited configs
def test_resume_honours_the_edited_config_and_refuses_a_meaningless_one(tmp_path, capsys):
    run_dir = tmp_path / 'run'
    proc = _standin_run(run_dir, epochs=2, test_sigterm_at=3, debug_every_epoch=False)
    assert proc.wait(60) == 3
    before = read_training_checkpoint(run_dir / 'latest.pth')['optimizer']['param_groups']
    cfg = yaml.safe_load((run_dir / 'config.yaml').read_text())
    cfg.pop('test_sigterm_at')
    cfg['model'] = 'other'                                   # meaningless for this checkpoint
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert engine_main(['--run-dir', str(run_dir)], parts=standins.parts()) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was trained with model='standin'" in err[0] and 'cannot change mid-run' in err[0]
    cfg['model'] = 'standin'
    cfg['optimizer']['lr'] = 0.02                            # a hyperparameter: the file wins
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert engine_main(['--run-dir', str(run_dir)], parts=standins.parts()) == 0
    log = (run_dir / 'train.log').read_text()
    assert "optimizer: {'type': 'AdamW', 'lr': 0.01" in log and 'the config file wins' in log
    after = read_training_checkpoint(run_dir / 'latest.pth')['optimizer']['param_groups']
    assert [g['initial_lr'] for g in after] == [pytest.approx(2 * g['initial_lr']) for g in before]


def test_cli_stops_at_an_edited_unfinished_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('SEMISEG_CONFIG_DIR', str(tmp_path / 'gen'))
    cfg = get_runs(0)[1]
    edited = create_run_dir(cfg, tmp_path / 'exp')
    (edited / 'config.yaml').write_text(yaml.safe_dump({**cfg, 'epochs': 3}, sort_keys=False))
    assert cli.main(['--exp', '0', '--run', '1', '--dry-run']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f'{edited} has a config.yaml that differs in epochs' in err[0]
    assert '--resume' in err[0] and '--force' in err[0]
    assert cli.main(['--exp', '0', '--run', '1', '--dry-run', '--resume']) == 0
    assert f'resuming {edited} with its own config.yaml' in capsys.readouterr().out
    (edited / 'config.yaml').write_text('model: [unclosed')
    assert cli.main(['--exp', '0', '--run', '1', '--dry-run']) == 2
    assert 'an unreadable config.yaml' in capsys.readouterr().err
    assert cli.main(['--exp', '0', '--run', '1', '--dry-run', '--force']) == 0


# ----------------------------------------------------------------------------------------- bad inputs
def _break_mask_size(toy: Path) -> None:
    first = (toy / 'splits' / '16' / 'labeled.txt').read_text().split()[1]
    mask = Image.open(toy / first)
    mask.resize((mask.width + 3, mask.height)).save(toy / first)


def _break_labels(toy: Path) -> None:
    first = (toy / 'splits' / '16' / 'labeled.txt').read_text().split()[1]
    mask = np.array(Image.open(toy / first))
    mask[0, 0] = 9
    Image.fromarray(mask).save(toy / first)


def _break(rel: str, text: str):
    return lambda toy: (toy / rel).write_text(text)


def _break_bytes(rel: str, data: bytes):
    return lambda toy: (toy / rel).write_bytes(data)


def _labeled_also_in_val(toy: Path) -> None:
    first = (toy / 'splits' / '16' / 'labeled.txt').read_text().splitlines()[0]
    with open(toy / 'splits' / 'val.txt', 'a') as f:
        f.write(first + '\n')


def _remove_first(kind: int):
    return lambda toy: (toy / (toy / 'splits' / '16' / 'labeled.txt').read_text().split()[kind]).unlink()


# (id, extra args, data damage, exit code, words the one line must hold)
BAD_INPUTS = [
    ('unknown-exp', ['--exp', '7', '--run', '0'], None, 2, ['unknown experiment 7', 'valid: 0, ']),
    ('bad-run', ['--run', '9'], None, 2, ['run 9 out of range', 'valid: 0-6 or all']),
    ('bad-run-spec', ['--run', '1-x'], None, 2, ["'1-x' is not a run index"]),
    ('unknown-key', ['--cfg-options', 'lrr=1'], None, 2, ["unknown config key 'lrr'", 'valid keys']),
    ('bad-type', ['--cfg-options', 'epochs=many'], None, 2, ['epochs expects an integer']),
    ('epochs-0', ['--cfg-options', 'epochs=0'], None, 2, ['epochs must be a whole number >= 1']),
    ('epochs-frac', ['--cfg-options', 'epochs=2.5'], None, 2, ['epochs expects an integer']),
    ('negative-lr', ['--cfg-options', 'optimizer.lr=-1'], None, 2, ['learning rate must be a number > 0']),
    ('batch-0', ['--cfg-options', 'batch_size=0'], None, 2, ['batch_size must be a whole number >= 1']),
    ('fp16', ['--cfg-options', 'precision=fp16'], None, 2, ["precision must be one of 'fp32', 'tf32', 'bf16'"]),
    ('tpu', ['--cfg-options', 'device=tpu'], None, 2, ["device must be one of 'auto', 'cpu', 'cuda'"]),
    ('model-path', ['--cfg-options', 'model=mmseg.../../evil'], None, 2, ['is not a model name']),
    ('unknown-method', ['--cfg-options', 'method=magic'], None, 2, ["unknown method 'magic'", 'known methods']),
    ('custom-no-classes', ['--cfg-options', 'dataset=mine', 'data_root=/nonexistent'], None, 2,
     ['custom dataset', '/nonexistent/classes.txt not found']),
    ('missing-split', [], _break('splits/16/labeled.txt', ''), 1, ['labeled.txt is empty']),
    ('split-gone', ['--cfg-options', 'split=4'], None, 1, ['splits/4/labeled.txt not found']),
    ('malformed-line', [], _break('splits/val.txt', 'JPEGImages/x.jpg\n'), 1,
     ['val.txt:1: expected two paths']),
    ('escaping-path', [], _break('splits/val.txt', '../../etc/passwd SegmentationClass/x.png\n'), 1,
     ['escapes the data root']),
    ('missing-image', [], _remove_first(0), 1, ['image', 'not found (listed at', 'labeled.txt:1']),
    ('missing-mask', [], _remove_first(1), 1, ['mask', 'not found (listed at', 'labeled.txt:1']),
    ('wrong-mask-size', [], _break_mask_size, 1, ['mask', 'but image', 'every mask must have its image']),
    ('labels-out-of-range', [], _break_labels, 1, ['holds label ids 9, outside 0..4 and 255']),
    ('duplicate-class', ['--cfg-options', 'dataset=mine', 'data_root=DATA/toy'],
     _break('classes.txt', 'background\ndisk\nsquare\ndisk\nring\n'), 2,
     ["classes.txt:4: class 'disk' is listed twice"]),
    ('unwritable-root', ['--exp-root', '/proc/semiseg-exp'], None, 1, ['cannot create a run folder']),
    ('labeled-in-val', [], _labeled_also_in_val, 1,
     ['1 image(s) are both labeled and validation images, e.g. JPEGImages/', 'labeled.txt:1']),
    ('latin1-split', [], _break_bytes('splits/val.txt', b'JPEGImages/caf\xe9.jpg SegmentationClass/x.png\n'), 1,
     ['split list', 'val.txt line 1 is not UTF-8 (byte 0xe9)']),
    ('utf16-classes', ['--cfg-options', 'dataset=mine', 'data_root=DATA/toy'],
     _break_bytes('classes.txt', 'background\ndisk\n'.encode('utf-16')), 2, ['classes.txt is UTF-16 text']),
    ('nclass-255', ['--cfg-options', 'nclass=255'], None, 2, ['nclass=255 collides with the reserved label ids 254']),
    ('ngpus-on-cpu', ['--ngpus', '3', '--cfg-options', 'device=cpu'], None, 2,
     ['wants 3 GPUs but it trains on the CPU (device=cpu)']),
]


@pytest.fixture(scope='module')
def data_copy(tmp_path_factory):
    return trimmed_toy(tmp_path_factory.mktemp('data'), unlabeled=8, val=2)


@pytest.mark.parametrize('case', BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(case, data_copy, tmp_path, monkeypatch, capsys):
    import shutil
    _, extra, damage, code, words = case
    data = tmp_path / 'data'
    shutil.copytree(data_copy, data)
    if damage is not None:
        damage(data / 'toy')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('SEMISEG_CONFIG_DIR', str(tmp_path / 'gen'))
    earlier = create_run_dir(get_runs(0)[0], tmp_path / 'exp')      # an earlier run: must not change
    torch.save({'model': {}, 'iteration': 1}, earlier / 'latest.pth')
    before = _snapshot(tmp_path / 'exp')
    extra = [a.replace('DATA', str(data)) for a in extra]
    args = ['--exp', '0', '--run', '1', '--data-root', str(data), *extra]
    if '--run' in extra:
        args = ['--exp', '0', '--data-root', str(data), *extra]
    if '--exp' in extra:
        args = ['--data-root', str(data), *extra]
    assert cli.main(args) == code
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('experiments.py: error: '), captured.err
    for word in words:
        assert word in err[0], (word, err[0])
    assert _snapshot(tmp_path / 'exp') == before
    assert not (tmp_path / 'gen').exists() or code == 1                # configs are written only once valid


# ------------------------------------------------------------------ round 3 (issue 21): launch facts
def test_device_cuda_without_cuda_is_refused_before_anything_is_written(data_copy, tmp_path, monkeypatch, capsys):
    from semiseg.launch import local
    monkeypatch.setattr(local, 'cuda_device_count', lambda: 0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('SEMISEG_CONFIG_DIR', str(tmp_path / 'gen'))
    args = ['--exp', '0', '--run', '1', '--data-root', str(data_copy), '--exp-root', str(tmp_path / 'exp')]
    assert cli.main([*args, '--cfg-options', 'device=cuda']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'asks for device=cuda but no CUDA device is visible' in err[-1]
    assert cli.main([*args, '--ngpus', '3']) == 2                       # 3 GPUs recorded, 1 process trained
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'wants 3 GPUs but no CUDA device is visible here' in err[0] and 'pass --ngpus 1' in err[0]
    assert not (tmp_path / 'exp').exists() and not (tmp_path / 'gen').exists()
    assert cli.main([*args, '--ngpus', 'auto', '--launcher', 'slurm']) == 2        # auto counts this machine only
    assert '--ngpus auto counts the GPUs of this machine' in capsys.readouterr().err
    assert cli.main([*args, '--ngpus', 'auto', '--dry-run']) == 0                  # corrected, and said so
    assert 'in-process' in capsys.readouterr().out


# ------------------------------------------------------------------ round 3: stops outside the loop
SLOW_READ_CONFIG = '''
import pathlib, sys, time
import semiseg.engine.run as entry
real = entry.read_config
def slow(run_dir):
    pathlib.Path(sys.argv[2]).touch()
    time.sleep(60)
    return real(run_dir)
entry.read_config = slow
sys.exit(entry.main(['--run-dir', sys.argv[1]]))
'''

SLOW_TRAINER_START = '''
import pathlib, sys, time
import semiseg.launch.local as local
def slow(cfg, run_dir):
    pathlib.Path(sys.argv[1]).touch()
    time.sleep(60)
local.run_in_process = slow
from semiseg.cli import main
sys.exit(main(sys.argv[2:]))
'''


def _stop_when(marker: Path, proc: subprocess.Popen, sig=signal.SIGTERM) -> tuple[int, str]:
    try:
        _wait_for(marker.exists, 90, 'the start-up', proc)
        proc.send_signal(sig)
        code = proc.wait(60)
    finally:
        proc.kill()
    return code, proc.stderr.read().decode()


def test_a_stop_while_a_run_starts_exits_3_and_the_same_command_resumes(tmp_path):
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(standins.base_config(epochs=1), sort_keys=False))
    marker = tmp_path / 'starting'
    proc = subprocess.Popen([sys.executable, '-c', SLOW_READ_CONFIG, str(run_dir), str(marker)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    code, err = _stop_when(marker, proc)
    assert code == 3, err
    assert 'interrupted (received SIGTERM)' in err and 'Traceback' not in err
    assert _state(run_dir)['state'] == 'interrupted'
    assert engine_main(['--run-dir', str(run_dir)], parts=standins.parts()) == 0   # the same run, resumed
    assert _state(run_dir)['state'] == 'finished'


def test_a_stop_before_the_first_iteration_of_a_cli_launch_exits_3(data_copy, tmp_path, monkeypatch, capsys):
    marker = tmp_path / 'starting'
    env = {**_env(), 'SEMISEG_CONFIG_DIR': str(tmp_path / 'gen')}
    args = ['--exp', '0', '--run', '1', '--data-root', str(data_copy), '--exp-root', str(tmp_path / 'exp')]
    proc = subprocess.Popen([sys.executable, '-c', SLOW_TRAINER_START, str(marker), *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    code, err = _stop_when(marker, proc, signal.SIGINT)
    assert code == 3, err
    assert 'interrupted (received SIGINT)' in err and 'the same command resumes it' in err
    (run_dir,) = (tmp_path / 'exp' / 'exp-0').glob('2*')
    assert _state(run_dir)['state'] == 'interrupted'
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('SEMISEG_CONFIG_DIR', str(tmp_path / 'gen'))
    assert cli.main([*args, '--dry-run']) == 0
    assert f'resume: {run_dir}' in capsys.readouterr().out


# ------------------------------------------------------------------ round 3: files that are not what they should be
BOMB = 'a: &a [x, x, x, x, x, x, x, x, x]\n' + ''.join(
    f'{n}: &{n} [{", ".join([f"*{p}"] * 9)}]\n' for p, n in zip('abcdefgh', 'bcdefghi'))


def test_a_yaml_alias_bomb_is_refused_at_once_by_every_reader(tmp_path, capsys):
    from semiseg.experiments.overrides import OverrideError, parse_value
    from semiseg.launch.options import SlurmOptionsError, load_defaults
    from semiseg.utils.safe_yaml import FileLimitError, read_json
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'config.yaml').write_text(BOMB)
    t0 = time.time()
    assert engine_main(['--run-dir', str(run_dir)]) == 1
    assert time.time() - t0 < 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'possible alias bomb' in err[0] and 'config.yaml' in err[0]
    (tmp_path / 'slurm.yaml').write_text(BOMB)
    with pytest.raises(SlurmOptionsError, match='alias bomb'):
        load_defaults(tmp_path / 'slurm.yaml')
    with pytest.raises(OverrideError, match='refers to itself'):
        parse_value('&a [*a]')
    (tmp_path / 'deep.json').write_text('[' * 100_000 + ']' * 100_000)
    with pytest.raises(FileLimitError, match='nested too deeply'):
        read_json(tmp_path / 'deep.json')
    assert time.time() - t0 < 3


def test_editor_text_files_read_the_same_and_other_encodings_name_the_line(tmp_path):
    from semiseg.launch.options import load_defaults
    from semiseg.utils.textfiles import TextFileError, read_lines
    (tmp_path / 'slurm.yaml').write_bytes(b'\xef\xbb\xbfpartition: gpu\r\naccount: grp\r\n')
    assert load_defaults(tmp_path / 'slurm.yaml') == {'partition': 'gpu', 'account': 'grp'}
    (tmp_path / 'list.txt').write_bytes(b'a\rb\r\nc\n')
    assert read_lines(tmp_path / 'list.txt') == ['a', 'b', 'c']
    (tmp_path / 'list.txt').write_bytes(b'a\r\nb\r\ncaf\xe9\r\n')
    with pytest.raises(TextFileError, match=r'list\.txt line 3 is not UTF-8 \(byte 0xe9\)'):
        read_lines(tmp_path / 'list.txt')


def _not_checkpoints(root: Path) -> dict[str, tuple[Path, str]]:
    (root / 'folder').mkdir()
    torch.save({'model': {}}, root / 'folder' / 'best.pth')
    (root / 'notes.txt').write_text('101\n')
    Image.new('RGB', (4, 4)).save(root / 'photo.png')
    np.save(root / 'arr.npy', np.zeros(3))
    (root / 'empty.pth').write_bytes(b'')
    (root / 'w.safetensors').write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1}')
    return {'folder': (root / 'folder', 'is a folder (it holds best.pth)'),
            'text': (root / 'notes.txt', 'is a text file, not a torch checkpoint'),
            'png': (root / 'photo.png', 'is a PNG image, not a torch checkpoint'),
            'npy': (root / 'arr.npy', 'is a numpy .npy array'),
            'empty': (root / 'empty.pth', 'is empty (0 bytes)'),
            'safetensors': (root / 'w.safetensors', 'is a safetensors file'),
            'missing': (root / 'nope.pth', 'does not exist')}


def test_a_checkpoint_that_is_not_a_checkpoint_says_what_it_is(tmp_path):
    from semiseg.utils.checkpoint_io import read_checkpoint
    for path, words in _not_checkpoints(tmp_path).values():
        with pytest.raises(CheckpointError, match=re.escape(words)):
            read_checkpoint(path)


def _code(main, args: list[str]) -> int:
    """A tool's exit code, whether it returns it or argparse exits with it."""
    try:
        return main(args)
    except SystemExit as stop:
        return stop.code


def test_tools_refuse_bad_paths_in_one_line_before_loading_anything(tmp_path, capsys):
    from semiseg.tools import eval as eval_tool
    from semiseg.tools import predict as predict_tool
    photos = tmp_path / 'photos'
    photos.mkdir()
    Image.new('RGB', (8, 8)).save(photos / 'a.png')
    run = ['--exp', '0', '--run', '0', '--data-root', str(tmp_path / 'data')]
    bad = _not_checkpoints(tmp_path)
    for name in ('folder', 'text', 'png'):
        path, words = bad[name]
        assert predict_tool.main([*run, '--checkpoint', str(path), '--out', str(tmp_path / 'out'), str(photos)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (name, err)
        assert eval_tool.main([*run, '--checkpoint', str(path)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (name, err)
    ckpt = ['--checkpoint', str(bad['folder'][0] / 'best.pth')]
    for out, words in ((photos, 'is the input folder'), (photos / 'a.png', 'exists and is not a folder')):
        assert _code(predict_tool.main, [*run, *ckpt, '--out', str(out), str(photos)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert predict_tool.main([*run, *ckpt, '--recursive', '--out', str(photos / 'preds'), str(photos)]) == 2
    assert 'inside the input folder' in capsys.readouterr().err and not (photos / 'preds').exists()
    assert _code(eval_tool.main, [*run, *ckpt, '--pred-dir', str(photos / 'a.png')]) == 2
    assert '--pred-dir' in capsys.readouterr().err
    from semiseg.tools import bench
    assert _code(bench.main, ['--exp', '0', '--run', '0', '--out', str(photos)]) == 2
    assert 'is a folder; give a file name' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists() and sorted(p.name for p in photos.iterdir()) == ['a.png']


def test_bench_crop_below_the_backbone_stride_is_one_line(capsys):
    from semiseg.tools import bench
    with pytest.raises(SystemExit) as stop:
        bench.main(['--exp', '0', '--run', '0', '--crop', '8'])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and '--crop 8 is smaller than 32 pixels' in err[0]


# ------------------------------------------------------------------ round 3: offline model hub
def test_offline_model_hub_fails_at_once_with_one_line(monkeypatch, tmp_path):
    import types

    from semiseg.models import text_embeddings, weights

    def never(*args, **kwargs):
        raise AssertionError('the hub was asked although it cannot be reached')

    fake = types.ModuleType('open_clip')
    fake.get_pretrained_cfg = lambda name, tag: {'hf_hub': 'nobody/no-such-model/', 'url': 'https://e.invalid/x.pt'}
    fake.create_model = never
    fake_model = types.ModuleType('open_clip.model')
    fake_model.build_model_from_openai_state_dict = never
    monkeypatch.setitem(sys.modules, 'open_clip', fake)
    monkeypatch.setitem(sys.modules, 'open_clip.model', fake_model)
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.setattr(weights, 'hub_reachable', lambda *a, **k: False)
    t0 = time.time()
    with pytest.raises(weights.WeightsError) as err:
        weights.openai_clip_state_dict()
    message = str(err.value)
    assert '\n' not in message and 'cannot be reached' in message and 'clip_weights=PATH' in message
    assert weights.OPENAI_URL in message and message.count('clip_weights') == 1
    with pytest.raises(text_embeddings.TextEmbeddingError) as err:
        text_embeddings.load_clip_text_model('openai')
    assert '\n' not in str(err.value) and str(err.value).count('cannot be reached') == 1
    assert time.time() - t0 < 1
    assert weights.hub_reachable(('127.0.0.1', 9), timeout=0.5) is False   # nothing listens on port 9
