"""Benchmark: `--status` and `--results` over 2,000 run folders (issue 21 item 9; not a test).

    python tests/bench_status.py [--points 400] [--seeds 5] [--work DIR] [--repeat 3]

Writes an experiment file (a 400-point learning-rate grid over exp 40 run 0, 5 seeds: 2,000 runs)
and one run folder per run with config.yaml, state.json and (finished runs) results.json, as the
engine leaves them (tests/_run_folders.py), then times the two commands end to end, as a user
types them (a fresh `python experiments.py` process each, so start-up and building the 2,000 run
configs count):
- cold: no folder indexes yet (every config.yaml parsed, every folder's files read);
- warm: with the indexes `--status` / `--results` leave in exp-<id>/ (new folders parsed, unfinished
  folders read).
Prints one line per measurement, the median of `--repeat` calls, as wall and CPU time (user + sys:
what the call costs on an idle machine; on a shared one the wall time grows with the load), and the
same for the folder side alone, in process (status_rows / collect_results over the built configs).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))

from _run_folders import write_run_folders  # noqa: E402

EXP_ID = 990


def experiment_file(folder: Path, points: int, seeds: int) -> Path:
    """A grid x seeds file experiment on exp 40 run 0."""
    lrs = ', '.join(f'{1e-6 * (p + 1):.6g}' for p in range(points))
    path = folder / 'bench_sweep.yaml'
    path.write_text(f'id: {EXP_ID}\ntitle: benchmark sweep\nbase: {{exp: 40, run: 0}}\n'
                    f'grid:\n  optimizer.lr: [{lrs}]\nseeds: {seeds}\n')
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str], repeat: int) -> tuple[str, str]:
    """'wall X s, CPU Y s' (medians of `repeat` runs) and the last output. CPU time (user + sys of
    the process) is what the command costs on an idle machine; wall time grows with the load."""
    walls, cpus, out = [], [], ''
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), _children_cpu()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - c0)
        if proc.returncode != 0:
            raise SystemExit(f'{" ".join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}')
        out = proc.stdout
    return f'wall {statistics.median(walls):.2f} s, CPU {statistics.median(cpus):.2f} s', out


def drop_indexes(index: Path) -> None:
    """No folder index and no finished-run index: the next call reads every folder."""
    index.unlink(missing_ok=True)
    (index.parent / '.finished-index.json').unlink(missing_ok=True)


def in_process(cfgs: list[dict], exp_root: Path, index: Path, repeat: int) -> None:
    """The folder side alone (configs already built): status_rows and collect_results, cold and warm."""
    from semiseg.experiments import get_runs
    from semiseg.launch.results import collect_results
    from semiseg.launch.status import status_rows
    t0, c0 = time.perf_counter(), time.process_time()
    get_runs(EXP_ID)
    print(f'in process: building the {len(cfgs)} run configs (get_runs): wall {time.perf_counter() - t0:.2f} s, '
          f'CPU {time.process_time() - c0:.2f} s')
    indices = list(range(len(cfgs)))
    for name, call in (('status_rows', lambda: status_rows(cfgs, exp_root, runner=lambda cmd: '', indices=indices)),
                       ('collect_results', lambda: collect_results(EXP_ID, cfgs, exp_root, indices,
                                                                   runner=lambda cmd: ''))):
        drop_indexes(index)
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        cold = f'wall {time.perf_counter() - t0:.2f} s, CPU {time.process_time() - c0:.2f} s'
        walls, cpus = [], []
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            call()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        print(f'in process: {name} cold (no index) {cold}; warm wall {statistics.median(walls):.2f} s, '
              f'CPU {statistics.median(cpus):.2f} s')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--points', type=int, default=400)
    p.add_argument('--seeds', type=int, default=5)
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--work', type=Path, help='folder for the experiment file and the runs (default: a temp folder)')
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix='semiseg-bench-status-'))
    exps, exp_root = work / 'experiments', work / 'exp'
    exps.mkdir(parents=True, exist_ok=True)
    experiment_file(exps, args.points, args.seeds)
    env = {**os.environ, 'SEMISEG_EXPERIMENTS': str(exps), 'SEMISEG_DATA': str(work / 'data')}
    os.environ.update(env)
    from semiseg.experiments import get_runs
    cfgs = get_runs(EXP_ID)
    if not (exp_root / f'exp-{EXP_ID}').is_dir():
        t0 = time.perf_counter()
        write_run_folders(cfgs, exp_root)
        print(f'wrote {len(cfgs)} run folders in {time.perf_counter() - t0:.1f} s under {exp_root}')
    index = exp_root / f'exp-{EXP_ID}' / '.config-index.json'
    in_process(cfgs, exp_root, index, args.repeat)
    base = [sys.executable, 'experiments.py', '--exp', str(EXP_ID), '--exp-root', str(exp_root)]
    t_list, _ = timed(base + ['--list'], env, args.repeat)
    print(f'--list (start-up + {len(cfgs)} run configs, no folders read): {t_list}')
    for flag in ('--status', '--results'):
        drop_indexes(index)
        cold, _ = timed(base + [flag], env, 1)
        warm, out = timed(base + [flag], env, args.repeat)
        print(f'{flag} over {len(cfgs)} folders: cold (no index) {cold}; warm {warm} ({out.count(chr(10))} lines)')
    if args.work is None:
        shutil.rmtree(work)


if __name__ == '__main__':
    main()
