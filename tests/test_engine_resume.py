"""Resume after SIGKILL: `python -m semiseg.engine.run`-style subprocess (stand-ins patched in by
tests/_engine_standins.py), killed -9 once latest.pth exists, re-run to the end (in-process, through
the same CLI `main`). No iteration may
be lost or repeated: the first run's iterations before the checkpoint plus the resumed run's
iterations are exactly 1..total."""
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
import torch
import yaml

from semiseg.engine.checkpoint import read_training_checkpoint

torch.set_num_threads(1)
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _cmd(run_dir: Path) -> list[str]:
    return [sys.executable, str(TESTS / '_engine_standins.py'), '--run-dir', str(run_dir)]


def _env() -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO), env.get('PYTHONPATH')) if p)
    return env


def _iterations(log: str) -> list[int]:
    return [int(i) for i in re.findall(r'Iter (\d+)/18 \|', log)]


def test_resume_after_sigkill_loses_and_repeats_no_iteration(tmp_path, monkeypatch):
    cfg = standins.base_config(epochs=3, ckpt_every=4, log_every=1, debug_every_epoch=False, test_sleep=0.15)
    (tmp_path / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    latest = tmp_path / 'latest.pth'

    proc = subprocess.Popen(_cmd(tmp_path), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    stderr = proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ''
    assert latest.exists(), f'no latest.pth; stderr: {stderr}'
    time.sleep(0.3)   # let it run past the checkpoint, so some iterations are lost with the process
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    saved = read_training_checkpoint(latest)['iteration']
    first_log = (tmp_path / 'train.log').read_text()
    assert 0 < saved < 18
    assert max(_iterations(first_log)) >= saved
    assert json.loads((tmp_path / 'state.json').read_text())['state'] == 'running'

    from semiseg.engine.run import main  # the re-run: same CLI, in this process (saves a start-up)
    assert main(['--run-dir', str(tmp_path)], parts=standins.parts()) == 0
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['iters'] == 18 and results['finished'] is True

    log = (tmp_path / 'train.log').read_text()
    assert f'resuming from {latest} at iteration {saved}/18' in log
    before, after = log.split('resuming from', 1)
    kept = [i for i in _iterations(before) if i <= saved]
    assert kept + _iterations(after) == list(range(1, 19))
    assert json.loads((tmp_path / 'state.json').read_text())['state'] == 'finished'
