"""`--results`: the selected runs of an experiment as one table, next to the papers' numbers.

    python experiments.py --exp 40 --results [--run SPEC] [--format markdown|csv|json]

One row per selected run: run index, short name, state, iterations done / total, final mIoU, best
mIoU, the paper's mIoU (`semiseg.experiments.published`), the difference final - paper, training
wall time and GPU-hours. Everything is read from the run folders (`results.json`, `state.json`,
`slurm_job.json`, see docs/ARCHITECTURE.md §2); Slurm is asked once for the state of submitted jobs
(nothing is asked where squeue / sacct are missing).

Repeats. The folders of a run are those of its experiment whose config.yaml equals the run's config
except `seed`, the runtime engine options (workers, logging, device, ...: `RUNTIME_OPTIONS`) and the
name (a changed seed changes the name through its hash suffix). Several such folders are one row:
- mIoU and best mIoU: mean ± sample std over the finished folders, `count` of them; when none has
  finished, over the folders that have evaluated at least once (their latest evaluation,
  `state.json` last_miou / best_miou), so a run still training shows where it stands;
- state: the one state of all folders, or e.g. '2 finished, 1 running';
- iterations: those of the least advanced folder; wall time: mean over the folders in the mIoU
  statistics; GPU-hours: all compute spent on the config (sum over every folder of training wall
  seconds x world size / 3600).
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semiseg.data.datasets import DATASETS
from semiseg.engine.options import RUNTIME_OPTIONS
from semiseg.experiments.published import Published, published_result
from semiseg.utils.timefmt import format_duration

from .job import read_job_record, slurm_job_id
from .rundir import age_key, normalized_config, stored_configs
from .slurm import Runner, run_command, slurm_states
from .status import FolderFiles, classify

FORMATS = ('markdown', 'csv', 'json')
# config keys that do not make a different experiment: repeats differ only in these
REPEAT_FREE_KEYS = frozenset({'seed', 'name'}) | RUNTIME_OPTIONS
# states in the order the summary lists them
STATE_ORDER = ('finished', 'running', 'queued', 'submitted', 'interrupted', 'failed', 'not started')
# model-name tokens that say how the encoder is fine-tuned (kept in the short name)
FINETUNE_TOKENS = ('ft', 'ftap', 'pt')
PRETRAIN_TOKENS = ('in1k', 'in21k')   # a pretraining tag: the short name keeps the token before it too
COLUMNS = ('run', 'name', 'state', 'iterations', 'total_iters', 'miou', 'miou_std', 'best_miou',
           'best_miou_std', 'count', 'paper_miou', 'diff', 'wall_s', 'gpu_hours', 'paper_table',
           'paper_source', 'folders')


@dataclass
class FolderResult:
    """What one run folder says about its run."""

    path: Path
    state: str                   # finished | running | queued | submitted | interrupted | failed | not started
    iteration: int | None
    total_iters: int | None
    miou: float | None           # results.json miou when finished, else the latest evaluation
    best_miou: float | None
    elapsed_s: float | None      # training wall seconds over all starts
    world_size: int | None


@dataclass
class RunResult:
    """One row of the results table (see the module doc for how repeats are combined)."""

    run: int
    name: str
    state: str
    iterations: int | None
    total_iters: int | None
    miou: float | None
    miou_std: float | None
    best_miou: float | None
    best_miou_std: float | None
    count: int                   # folders in the mIoU statistics
    paper: Published | None
    diff: float | None           # miou - paper
    wall_s: float | None
    gpu_hours: float | None
    folders: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (None where unknown), keys in COLUMNS order."""
        return {
            'run': self.run, 'name': self.name, 'state': self.state,
            'iterations': self.iterations, 'total_iters': self.total_iters,
            'miou': _round(self.miou, 4), 'miou_std': _round(self.miou_std, 4),
            'best_miou': _round(self.best_miou, 4), 'best_miou_std': _round(self.best_miou_std, 4),
            'count': self.count, 'paper_miou': self.paper.miou if self.paper else None,
            'diff': _round(self.diff, 4), 'wall_s': _round(self.wall_s, 1),
            'gpu_hours': _round(self.gpu_hours, 4),
            'paper_table': self.paper.table if self.paper else None,
            'paper_source': self.paper.source if self.paper else None,
            'folders': [str(p) for p in self.folders],
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _number(value: Any) -> float | None:
    """A finite float, or None for missing / non-numeric / NaN values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _integer(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


# ----------------------------------------------------------------------------- names
def short_name(cfg: dict[str, Any]) -> str:
    """A readable short form of a run name: 'voc-92 semivl+mcc vlg-ftap/mcvitb'.

    Dataset (abbreviated as in run names) and split, the method (+mcc when MaskCLIP guidance is on),
    the model family: decoder, fine-tuning tag and encoder, from the model name; the run name's
    override hash (`_h1a2b3c`, --cfg-options) is kept so changed configs stay apart.
    """
    info = DATASETS.get(cfg.get('dataset', ''))
    dataset = info.abbrev if info else str(cfg.get('dataset', '?'))
    lam = cfg.get('maskclip_consistency_lambda') or 0
    guided = any(lam) if isinstance(lam, (list, tuple)) else lam != 0
    method = str(cfg.get('method', '?')) + ('+mcc' if guided else '')
    tokens = str(cfg.get('model', '?')).removeprefix('mmseg.').removeprefix('vlm-').split('-')
    encoder = '-'.join(tokens[-2:]) if len(tokens) > 2 and tokens[-1] in PRETRAIN_TOKENS else tokens[-1]
    decoder = tokens[0] + ''.join(f'-{t}' for t in tokens[1:-1] if t in FINETUNE_TOKENS)
    family = f'{decoder}/{encoder}' if len(tokens) > 1 else tokens[0]
    text = f'{dataset}-{cfg.get("split", "?")} {method} {family}'
    suffix = re.search(r'_(h[0-9a-f]{6})$', str(cfg.get('name', '')))
    return f'{text} {suffix.group(1)}' if suffix else text


# ----------------------------------------------------------------------------- folders
def repeat_key(cfg: dict[str, Any]) -> Any:
    """`cfg` as read back from YAML, without the keys repeats may differ in (REPEAT_FREE_KEYS)."""
    return {k: v for k, v in normalized_config(cfg).items() if k not in REPEAT_FREE_KEYS}


def repeat_dirs(cfg: dict[str, Any], stored: list[tuple[Path, dict[str, Any]]]) -> list[Path]:
    """The folders among `stored` (rundir.stored_configs of the experiment) holding `cfg` or a
    repeat of it (other seed / runtime options), oldest first."""
    want = repeat_key(cfg)
    found = [path for path, config in stored
             if {k: v for k, v in config.items() if k not in REPEAT_FREE_KEYS} == want]
    return sorted(found, key=age_key)


def folder_result(run_dir: Path, cfg: dict[str, Any], slurm_state: str | None = None) -> FolderResult:
    """The state and numbers of one run folder (`slurm_state`: its job's Slurm state, if known)."""
    files = FolderFiles.read(run_dir)
    state_name, _ = classify(run_dir, slurm_state, files)
    if state_name == 'not started' and files.record:
        state_name = 'submitted'          # handed to Slurm, which does not (or no longer) know it
    state, results = files.state, files.results
    finished = bool(results.get('finished'))
    iteration = _integer(state.get('iteration'))
    total = _integer(state.get('total_iters')) or None
    if finished:
        miou, best = _number(results.get('miou')), _number(results.get('best_miou'))
        iteration = _integer(results.get('iters')) if iteration is None else iteration
        total = total or iteration
    else:
        miou, best = _number(state.get('last_miou')), _number(state.get('best_miou'))
        if miou is None and not best:      # best_miou is 0.0 until the first evaluation
            best = None
    world = _integer(state.get('world_size'))
    if world is None and state:
        world = int(cfg.get('n_gpus', 1)) * int(cfg.get('n_nodes', 1))
    return FolderResult(run_dir, state_name, iteration, total, miou, best,
                        _number(state.get('elapsed_s')), world)


# ----------------------------------------------------------------------------- aggregation
def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _state_summary(folders: list[FolderResult]) -> str:
    if not folders:
        return 'not started'
    counts = Counter(f.state for f in folders)
    if len(counts) == 1:
        return folders[0].state
    order = {s: i for i, s in enumerate(STATE_ORDER)}
    return ', '.join(f'{n} {s}' for s, n in sorted(counts.items(), key=lambda kv: order.get(kv[0], 99)))


def aggregate(index: int, cfg: dict[str, Any], folders: list[FolderResult],
              paper: Published | None) -> RunResult:
    """One table row from the folders of a run (module doc: which folders count where)."""
    counted = [f for f in folders if f.state == 'finished' and f.miou is not None] or \
        [f for f in folders if f.miou is not None]
    miou, miou_std = _mean_std([f.miou for f in counted])
    best, best_std = _mean_std([f.best_miou for f in counted if f.best_miou is not None])
    iters = [f.iteration for f in folders if f.iteration is not None]
    totals = [f.total_iters for f in folders if f.total_iters]
    timed = [f for f in (counted or folders) if f.elapsed_s is not None]
    wall = sum(f.elapsed_s for f in timed) / len(timed) if timed else None
    spent = [f.elapsed_s * (f.world_size or 1) for f in folders if f.elapsed_s is not None]
    return RunResult(
        run=index, name=short_name(cfg), state=_state_summary(folders),
        iterations=min(iters) if iters else None, total_iters=max(totals) if totals else None,
        miou=miou, miou_std=miou_std, best_miou=best, best_miou_std=best_std, count=len(counted),
        paper=paper, diff=miou - paper.miou if miou is not None and paper is not None else None,
        wall_s=wall, gpu_hours=sum(spent) / 3600.0 if spent else None,
        folders=[f.path for f in folders])


def collect_results(exp_id: int, cfgs: Sequence[dict[str, Any]], exp_root: Path,
                    indices: Sequence[int], runner: Runner | None = None) -> list[RunResult]:
    """One `RunResult` per selected run: `cfgs[k]` is the config of run `indices[k]` (the CLI's
    selected configs, --cfg-options applied). Slurm is queried once for every submitted folder."""
    if len(cfgs) != len(indices):
        raise ValueError(f'{len(cfgs)} configs for {len(indices)} run indices; pass the selected configs')
    stored = stored_configs(exp_root, exp_id)
    dirs = [repeat_dirs(cfg, stored) for cfg in cfgs]
    jobs = {d: slurm_job_id(read_job_record(d)) for group in dirs for d in group}
    states = slurm_states([j for j in jobs.values() if j], runner or run_command) if any(jobs.values()) else {}
    rows = []
    for index, cfg, group in zip(indices, cfgs, dirs):
        folders = [folder_result(d, cfg, states.get(jobs[d]) if jobs[d] else None) for d in group]
        rows.append(aggregate(index, cfg, folders, published_result(exp_id, cfg)))
    return rows


# ----------------------------------------------------------------------------- formatting
def _fmt(value: float | None, std: float | None = None, count: int = 1) -> str:
    if value is None:
        return '-'
    if count > 1:
        return f'{value:.2f} ± {std:.2f} (n={count})' if std is not None else f'{value:.2f} (n={count})'
    return f'{value:.2f}'


def _text_row(r: RunResult) -> list[str]:
    iters = '-' if r.iterations is None else f'{r.iterations}/{r.total_iters or "?"}'
    return [
        str(r.run), r.name, r.state, iters,
        _fmt(r.miou, r.miou_std, r.count), _fmt(r.best_miou, r.best_miou_std, r.count),
        '-' if r.paper is None else str(r.paper.miou),
        '-' if r.diff is None else f'{r.diff:+.2f}',
        '-' if r.wall_s is None else format_duration(r.wall_s),
        '-' if r.gpu_hours is None else f'{r.gpu_hours:.2f}',
    ]


def format_markdown(rows: Sequence[RunResult]) -> str:
    """A markdown table, then one line per paper table the numbers come from."""
    header = ['run', 'name', 'state', 'iters', 'mIoU', 'best mIoU', 'paper', 'diff', 'wall', 'GPU-h']
    align = ['--:', '---', '---', '--:', '--:', '--:', '--:', '--:', '--:', '--:']
    lines = ['| ' + ' | '.join(cells) + ' |' for cells in [header, align] + [_text_row(r) for r in rows]]
    sources = list(dict.fromkeys((r.paper.table, r.paper.source) for r in rows if r.paper is not None))
    if sources:
        lines.append('')
        lines += [f'paper mIoU: {table} ({source})' for table, source in sources]
    return '\n'.join(lines) + '\n'


def format_csv(rows: Sequence[RunResult]) -> str:
    """CSV with the COLUMNS; empty cells where unknown, folders separated by ';'."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(COLUMNS)
    for r in rows:
        d = r.as_dict()
        d['folders'] = ';'.join(d['folders'])
        writer.writerow(['' if d[c] is None else d[c] for c in COLUMNS])
    return out.getvalue()


def format_json(rows: Sequence[RunResult]) -> str:
    """A JSON list of `RunResult.as_dict()` (plain numbers, null where unknown)."""
    return json.dumps([r.as_dict() for r in rows], indent=2, ensure_ascii=False) + '\n'


def format_results(rows: Sequence[RunResult], fmt: str = 'markdown') -> str:
    """The table in `fmt`: 'markdown', 'csv' or 'json'."""
    formatters = {'markdown': format_markdown, 'csv': format_csv, 'json': format_json}
    if fmt not in formatters:
        raise ValueError(f'unknown results format {fmt!r}; choose one of {", ".join(FORMATS)}')
    return formatters[fmt](rows)
