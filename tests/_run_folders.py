"""Shared test helper: many run folders as the engine leaves them, without training anything.

`sweep_configs` builds the configs of a learning-rate sweep with seed repeats on top of a built-in
run (what a YAML experiment file with a grid and seeds generates); `write_run_folders` gives each
config a run folder with `config.yaml`, `state.json` and, for finished runs, `results.json`, in the
engine's formats (docs/ARCHITECTURE.md §2). Used by tests/test_results_scale.py and by the benchmark
tests/bench_status.py (`--status` / `--results` over 2,000 folders).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from semiseg.engine.logging_utils import write_state
from semiseg.experiments import get_runs, with_overrides
from semiseg.experiments.overrides import parse_cfg_options
from semiseg.launch.rundir import create_run_dir
from semiseg.utils.files import atomic_write_json

STATES = ('finished', 'finished', 'finished', 'running', 'interrupted', 'failed')


def sweep_configs(exp_id: int, run: int, points: int, seeds: int, key: str = 'optimizer.lr',
                  start: float = 1e-5, data_root: str = '/data') -> list[dict[str, Any]]:
    """`points` values of `key` (start, 2*start, ...) x `seeds` seeds of run `run`, seed fastest."""
    base = get_runs(exp_id, data_root=data_root)[run]
    return [with_overrides(base, parse_cfg_options([f'{key}={start * (p + 1):g}', f'seed={s}']))
            for p in range(points) for s in range(seeds)]


def write_run_folders(cfgs: list[dict[str, Any]], exp_root: Path, ema: bool = False) -> list[Path]:
    """One run folder per config; the state cycles through STATES, mIoU differs per folder.
    `ema`: results and state carry an EMA teacher's numbers too (UniMatch V2's methods)."""
    start = datetime(2025, 1, 1)
    folders = []
    for i, cfg in enumerate(cfgs):
        run_dir = create_run_dir(cfg, exp_root, now=start + timedelta(minutes=i), uid=f'{i:05d}')
        state = STATES[i % len(STATES)]
        miou = 50.0 + (i % 97) / 10
        done = 100 if state == 'finished' else 40
        write_state(run_dir, state, iteration=done, saved_iteration=done, total_iters=100, epoch=done // 10,
                    best_miou=miou + 1, last_miou=miou, eta_s=None, elapsed_s=60.0 * (1 + i % 5),
                    world_size=1, host='node1', pid=100000 + i, error='boom' if state == 'failed' else None)
        if state == 'finished':
            results = {'miou': miou, 'best_miou': miou + 1, 'per_class_iou': {'a': miou},
                       'best_per_class_iou': {'a': miou + 1}, 'iters': 100, 'epochs': 10, 'finished': True}
            if ema:
                results['ema'] = {'miou': miou + 0.5, 'best_miou': miou + 2, 'per_class_iou': {'a': miou},
                                  'best_epoch': 8}
            atomic_write_json(run_dir / 'results.json', results)
        folders.append(run_dir)
    return folders
