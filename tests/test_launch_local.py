"""Local launch (in-process / torchrun) and run folders (creation, resume lookup)."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import types
from datetime import datetime
from pathlib import Path

import pytest

from semiseg.experiments import get_runs
from semiseg.experiments.io import load_config
from semiseg.launch import local
from semiseg.launch.local import LaunchError, LocalPlan, build_torchrun_command, free_port, plan_local
from semiseg.launch.rundir import create_run_dir, find_finished, find_resumable, is_finished, run_dir_path


class FakeInterrupted(Exception):
    pass


@pytest.fixture
def fake_engine(monkeypatch):
    """A stand-in semiseg.engine whose train() records its calls (the engine is tested elsewhere)."""
    calls = []
    behaviour = {}

    def train(cfg, run_dir):
        calls.append((cfg['name'], Path(run_dir)))
        action = behaviour.get(cfg['name'])
        if action is not None:
            raise action
        (Path(run_dir) / 'results.json').write_text(json.dumps({'miou': 1.0, 'finished': True}))
        return {'miou': 1.0, 'best_miou': 1.0, 'finished': True}

    engine = types.ModuleType('semiseg.engine')
    engine.train, engine.TrainingInterrupted = train, FakeInterrupted
    monkeypatch.setitem(sys.modules, 'semiseg.engine', engine)
    return calls, behaviour


# ---------------------------------------------------------------- torchrun / planning

def test_build_torchrun_command():
    cmd = build_torchrun_command(Path('/x/run dir'), 4, 29513)
    assert cmd == [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '4',
                   '--master_addr', '127.0.0.1', '--master_port', '29513',
                   '-m', 'semiseg.engine.run', '--run-dir', '/x/run dir']


def test_free_port_is_bindable():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(('127.0.0.1', port))


@pytest.mark.parametrize('n_gpus,ngpus,cuda,expected', [
    (1, None, 4, LocalPlan('in-process', 1)),
    (4, None, 4, LocalPlan('torchrun', 4)),
    (4, 2, 4, LocalPlan('torchrun', 2)),
    (4, 1, 4, LocalPlan('in-process', 1)),
    (4, 1, 0, LocalPlan('in-process', 1)),      # CPU only: one process, and the config says so
    (1, None, 0, LocalPlan('in-process', 1)),
])
def test_plan_local(n_gpus, ngpus, cuda, expected):
    assert plan_local({'name': 'r', 'n_gpus': n_gpus}, ngpus, cuda) == expected


def test_plan_local_errors_and_cpu_option():
    with pytest.raises(LaunchError, match='only 2 are visible; pass --ngpus 2'):
        plan_local({'name': 'r', 'n_gpus': 4}, None, 2)
    assert plan_local({'name': 'r', 'n_gpus': 1, 'device': 'cpu'}, None, 8) == LocalPlan('in-process', 1)


@pytest.mark.parametrize('cfg,ngpus,cuda,words', [
    ({'n_gpus': 4}, None, 0, 'wants 4 GPUs but no CUDA device is visible here'),
    ({'n_gpus': 1}, 3, 0, 'wants 3 GPUs but no CUDA device is visible here'),
    ({'n_gpus': 4, 'device': 'cpu'}, None, 8, 'wants 4 GPUs but it trains on the CPU (device=cpu)'),
    ({'n_gpus': 1, 'device': 'cuda'}, None, 0, 'asks for device=cuda but no CUDA device is visible'),
    ({'n_gpus': 1, 'n_nodes': 2}, None, 8, 'configured for 2 nodes'),
])
def test_plan_local_refuses_what_the_machine_cannot_run(cfg, ngpus, cuda, words):
    with pytest.raises(LaunchError, match=re.escape(words)):
        plan_local({'name': 'r', **cfg}, ngpus, cuda)


def test_launch_local_runs_in_order_and_continues_after_failure(tmp_path, fake_engine):
    calls, behaviour = fake_engine
    cfgs = get_runs(0)
    runs = [(cfg, create_run_dir(cfg, tmp_path)) for cfg in cfgs]
    behaviour[cfgs[1]['name']] = RuntimeError('boom')
    assert local.launch_local(runs, cuda_count=0) == 1
    assert [c[0] for c in calls] == [c['name'] for c in cfgs]
    assert is_finished(runs[0][1]) and not is_finished(runs[1][1]) and is_finished(runs[2][1])


def test_launch_local_stops_when_interrupted(tmp_path, fake_engine):
    calls, behaviour = fake_engine
    cfgs = get_runs(0)
    runs = [(cfg, create_run_dir(cfg, tmp_path)) for cfg in cfgs]
    behaviour[cfgs[0]['name']] = FakeInterrupted()
    assert local.launch_local(runs, cuda_count=0) == 3   # interrupted: latest.pth saved
    assert len(calls) == 1


def test_launch_local_uses_torchrun_for_several_gpus(tmp_path, monkeypatch):
    seen = []

    class Done:
        def __init__(self, cmd, env):
            seen.append((cmd, env))

        def wait(self):
            return 0

    monkeypatch.setattr(local.subprocess, 'Popen', Done)
    cfg = get_runs(40)[0]
    run_dir = create_run_dir(cfg, tmp_path)
    assert local.launch_local([(cfg, run_dir)], ngpus=2, cuda_count=2) == 0
    (cmd, env), = seen
    assert cmd[:5] == [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2']
    assert cmd[-2:] == ['--run-dir', str(run_dir)]
    assert str(local.REPO_ROOT) in env['PYTHONPATH'].split(os.pathsep)


def test_launch_local_checks_every_plan_before_starting(tmp_path, fake_engine):
    calls, _ = fake_engine
    cfgs = [get_runs(0)[0], get_runs(40)[0]]
    runs = [(cfg, tmp_path / str(i)) for i, cfg in enumerate(cfgs)]
    with pytest.raises(LaunchError):
        local.launch_local(runs, cuda_count=2)
    assert calls == []


# ---------------------------------------------------------------- run folders

def test_run_dir_layout(tmp_path):
    cfg = get_runs(0)[0]
    when = datetime(2026, 3, 4, 5, 6)
    path = create_run_dir(cfg, tmp_path / 'exp', now=when, uid='abcde')
    assert path == tmp_path / 'exp' / 'exp-0' / f'260304-0506_{cfg["name"]}_abcde'
    assert load_config(path / 'config.yaml') == cfg
    with pytest.raises(FileExistsError):
        create_run_dir(cfg, tmp_path / 'exp', now=when, uid='abcde')
    fresh = run_dir_path(cfg, tmp_path / 'exp')
    assert not fresh.exists() and len(fresh.name.rsplit('_', 1)[1]) == 5


def _finish(run_dir, finished=True):
    (run_dir / 'results.json').write_text(json.dumps({'miou': 50.0, 'finished': finished}))


def test_find_resumable_and_finished(tmp_path):
    cfg, other = get_runs(0)[:2]
    assert find_resumable(cfg, tmp_path) is None and find_finished(cfg, tmp_path) is None
    old = create_run_dir(cfg, tmp_path, now=datetime(2026, 1, 1, 0, 0))
    new = create_run_dir(cfg, tmp_path, now=datetime(2026, 1, 2, 0, 0))
    create_run_dir(other, tmp_path, now=datetime(2026, 1, 3, 0, 0))
    changed = dict(cfg, seed=5)
    create_run_dir(changed, tmp_path, now=datetime(2026, 1, 4, 0, 0))
    assert find_resumable(cfg, tmp_path) == new          # newest unfinished with equal config
    _finish(new)
    assert find_resumable(cfg, tmp_path) == old
    assert find_finished(cfg, tmp_path) == new
    _finish(old, finished=False)                         # results without finished: true
    assert find_resumable(cfg, tmp_path) == old
    _finish(old)
    assert find_resumable(cfg, tmp_path) is None
    assert find_resumable(dict(cfg, exp=41), tmp_path) is None   # other experiment folder


def test_find_resumable_same_minute_uses_mtime(tmp_path):
    cfg = get_runs(0)[0]
    when = datetime(2026, 1, 1, 0, 0)
    first = create_run_dir(cfg, tmp_path, now=when, uid='zzzzz')
    second = create_run_dir(cfg, tmp_path, now=when, uid='aaaaa')
    t = time.time()
    os.utime(first / 'config.yaml', (t - 10, t - 10))
    assert find_resumable(cfg, tmp_path) == second


def test_unreadable_results_count_as_unfinished(tmp_path):
    cfg = get_runs(0)[0]
    run_dir = create_run_dir(cfg, tmp_path)
    (run_dir / 'results.json').write_text('{not json')
    assert not is_finished(run_dir) and find_resumable(cfg, tmp_path) == run_dir


# ---------------------------------------------------------------- claims: one launcher per config

def _hold(code: str) -> subprocess.Popen:
    """A live process that runs `code` (taking a lock), says 'held', then waits to be killed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(Path(__file__).parents[1]),
                                                                  os.environ.get('PYTHONPATH')) if p))
    proc = subprocess.Popen([sys.executable, '-c', code + '; print("held", flush=True); import time; time.sleep(60)'],
                            env=env, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b'held'
    return proc


def _selected(cfgs):
    return [types.SimpleNamespace(index=i, cfg=c) for i, c in enumerate(cfgs)]


def test_a_claimed_config_is_left_to_its_holder_and_force_repeats_it(tmp_path, fake_engine, capsys):
    calls, _ = fake_engine
    cfgs = [{**c, 'device': 'cpu'} for c in get_runs(0)[:2]]
    exp = tmp_path / 'exp'
    holder = _hold(f'from semiseg.launch.claim import ConfigClaim; c = ConfigClaim({cfgs[0]!r}, {str(exp)!r}); '
                   'assert c.take() is None')
    try:
        from semiseg.launch.claim import claim_holder, who_trains
        assert claim_holder(cfgs[0], exp)['pid'] == holder.pid and claim_holder(cfgs[1], exp) is None
        assert who_trains(cfgs[0], exp)[0]['pid'] == holder.pid
        assert local.launch_claimed(_selected(cfgs), exp, cuda_count=0) == 0
        out = capsys.readouterr().out
        assert f'run 0 ({cfgs[0]["name"]}): is being trained by pid {holder.pid} on ' in out and 'moving on' in out
        assert [name for name, _ in calls] == [cfgs[1]['name']]          # run 1 trained, run 0 left alone
        assert local.launch_claimed(_selected(cfgs[:1]), exp, cuda_count=0, force=True) == 0
        assert [name for name, _ in calls] == [cfgs[1]['name'], cfgs[0]['name']]   # --force: a repeat
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its claim with it; run 1 finished meanwhile, run 0 finished by the forced repeat
    assert local.launch_claimed(_selected(cfgs), exp, cuda_count=0) == 0
    assert len(calls) == 2 and capsys.readouterr().out.count('finished meanwhile') == 2


def test_a_folder_whose_trainer_holds_only_the_run_lock_is_not_trained_twice(tmp_path, fake_engine, capsys):
    calls, _ = fake_engine
    cfg = {**get_runs(0)[0], 'device': 'cpu'}
    exp = tmp_path / 'exp'
    live = create_run_dir(cfg, exp)           # e.g. `python -m semiseg.engine.run --run-dir` or a Slurm task
    holder = _hold(f'from semiseg.engine.runlock import RunLock; RunLock({str(live)!r}).acquire()')
    try:
        assert local.launch_claimed(_selected([cfg]), exp, cuda_count=0) == 0
        out = capsys.readouterr().out
        assert f'is being trained by pid {holder.pid}' in out and str(live) in out and calls == []
    finally:
        holder.kill()
        holder.wait()
    assert local.launch_claimed(_selected([cfg]), exp, cuda_count=0) == 0     # now free: resumed, same folder
    assert calls == [(cfg['name'], live)]


def test_owner_record_names_the_slurm_task(monkeypatch):
    from semiseg.engine.runlock import describe_owner, owner_record
    monkeypatch.setenv('SLURM_JOB_ID', '130')
    monkeypatch.setenv('SLURM_ARRAY_JOB_ID', '123')
    monkeypatch.setenv('SLURM_ARRAY_TASK_ID', '7')
    record = owner_record(run='x')
    assert record['slurm_job'] == '123_7' and record['pid'] == os.getpid() and record['run'] == 'x'
    assert '(Slurm job 123_7)' in describe_owner(record)


def test_a_folder_queued_on_slurm_is_left_to_its_job(tmp_path, fake_engine, capsys, monkeypatch):
    from semiseg.launch import claim, slurm
    calls, _ = fake_engine
    cfg = {**get_runs(0)[0], 'device': 'cpu'}
    exp = tmp_path / 'exp'
    queued = create_run_dir(cfg, exp)
    (queued / 'slurm_job.json').write_text(json.dumps({'cluster': 'slurm', 'job_id': '77_1'}))
    monkeypatch.setattr(claim.shutil, 'which', lambda tool: f'/usr/bin/{tool}')
    monkeypatch.setattr(slurm, 'active_jobs', lambda dirs, runner=None: {Path(d): '77_1' for d in dirs})
    assert local.launch_claimed(_selected([cfg]), exp, cuda_count=0) == 0
    out = capsys.readouterr().out
    assert 'is being trained by Slurm job 77_1 (queued or running)' in out and calls == []
    monkeypatch.setattr(slurm, 'active_jobs', lambda dirs, runner=None: {})     # the job ended: resume here
    assert local.launch_claimed(_selected([cfg]), exp, cuda_count=0) == 0
    assert calls == [(cfg['name'], queued)]


def test_one_slurm_submitter_per_experiment_at_a_time(tmp_path, capsys):
    from semiseg.launch.claim import SubmissionLock
    exp = tmp_path / 'exp'
    holder = _hold(f'from semiseg.launch.claim import SubmissionLock; s = SubmissionLock({str(exp)!r}, 0)')
    try:
        with pytest.raises(TimeoutError, match=f'submission of pid {holder.pid} on .* to experiment 0'):
            SubmissionLock(exp, 0, timeout_s=0.5)
        assert f'waiting for the Slurm submission of pid {holder.pid}' in capsys.readouterr().out
        SubmissionLock(exp, 1, timeout_s=0.5).release()             # another experiment is not held up
    finally:
        holder.kill()
        holder.wait()
    first = SubmissionLock(exp, 0, timeout_s=0.5)
    del first                                                        # dropped: released
    SubmissionLock(exp, 0, timeout_s=0.5).release()
