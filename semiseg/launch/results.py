"""`--results`: the selected runs of an experiment as one table, next to the papers' numbers.

    python experiments.py --exp 40 --results [--run SPEC] [--seeds 3] [--sort run|best|diff|name|KEY]
                                             [--format markdown|csv|json]

One row per run without its seed: the run ids it covers, a short name, the swept values of a file
experiment (one column per swept key, `cfg['sweep']`), state, iterations done / total, our mIoU by
the paper's rule (mean ± std over seeds, and the count), the rule, the paper's mIoU
(`semiseg.experiments.published`), the difference, training wall time and GPU-hours. Everything is
read from the run folders (`results.json`, `state.json`, `slurm_job.json`, docs/ARCHITECTURE.md §2),
scanned once (`runindex`); Slurm is asked once for the state of submitted jobs (nothing is asked
where squeue / sacct are missing).

The rule. A paper reports one number per run: the best evaluation over training (SemiVL, UniMatch,
AllSpark) or, for UniMatch V2, the best evaluation of the EMA teacher (`MethodInfo.report`, or the
published row's own `report`; `published.report_rule`). Our `mIoU` is that number for every run,
with or without a paper number (exp 65, SemiVL's model trained by V2's method, follows V2). The
other numbers stay in csv/json: final and best mIoU of the trained model (`final_miou`,
`best_miou`) and of the EMA teacher (`ema_final_miou`, `ema_best_miou`). `results.json` holds the
trained model's `miou` (final) and `best_miou` and the teacher's under `ema`; a run still training
shows its latest evaluation (`state.json` `last_miou` / `best_miou`, and `ema` when present).

Repeats. The folders of a row are those of its experiment whose config.yaml equals the run's config
except `seed`, the runtime engine options (workers, logging, device, ...) and the name
(`semiseg.experiments.identity.repeat_key`). Several such folders are one row:
- mIoU: mean ± sample std over the finished folders, `count` of them; when none has finished, over
  the folders that have evaluated at least once, so a run still training shows where it stands;
- state: the one state of all folders, or e.g. '2 finished, 1 running' (a selected seed without a
  folder counts as 'not started');
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
from semiseg.experiments.identity import repeat_key
from semiseg.experiments.published import Published, published_for, report_rule, reproduced_paper
from semiseg.methods.registry import REPORT_RULES
from semiseg.utils.dotted import dotted_get
from semiseg.utils.timefmt import format_duration

from .job import slurm_job_id
from .runindex import group_by, read_folder_files, scan_run_folders
from .slurm import Runner, run_command, slurm_states
from .status import FolderFiles, classify

FORMATS = ('markdown', 'csv', 'json')
SORTS = ('run', 'best', 'diff', 'name')   # and any swept key
# states in the order the summary lists them
STATE_ORDER = ('finished', 'running', 'queued', 'submitted', 'interrupted', 'failed', 'stale', 'not started')
# model-name tokens that say how the encoder is fine-tuned (kept in the short name)
FINETUNE_TOKENS = ('ft', 'ftap', 'pt')
PRETRAIN_TOKENS = ('in1k', 'in21k')   # a pretraining tag: the short name keeps the token before it too
RULE_LABELS = {'best': 'best', 'final': 'final', 'ema_best': 'best EMA', 'ema_final': 'final EMA'}
RULE_TEXT = {'best': 'the best evaluation during training',
             'final': 'the evaluation at the end of training',
             'ema_best': "the EMA teacher's best evaluation during training",
             'ema_final': "the EMA teacher's evaluation at the end of training"}
TEACHER = 'ema'                       # results.json / state.json key of the EMA teacher's numbers
# csv/json columns; the swept keys of a file experiment come right after 'name'
HEAD_COLUMNS = ('run', 'runs', 'name')
TAIL_COLUMNS = ('state', 'iterations', 'total_iters', 'rule', 'miou', 'miou_std', 'count', 'seeds', 'paper_miou',
                'diff', *(c for kind in ('final', 'best', 'ema_final', 'ema_best')
                          for c in (f'{kind}_miou', f'{kind}_miou_std')),
                'wall_s', 'gpu_hours', 'paper_table', 'paper_source', 'folders')


@dataclass
class FolderResult:
    """What one run folder says about its run."""

    path: Path
    state: str                   # finished | running | queued | submitted | interrupted | failed | stale | ...
    iteration: int | None
    total_iters: int | None
    numbers: dict[str, float | None]   # REPORT_RULES -> mIoU (results.json when finished, else the latest)
    elapsed_s: float | None      # training wall seconds over all starts
    world_size: int | None
    seed: int = 0


@dataclass
class RunResult:
    """One row of the results table (see the module doc for how repeats are combined)."""

    run: int                     # the first run id of the row
    name: str
    state: str
    iterations: int | None
    total_iters: int | None
    rule: str                    # which number `miou` is (REPORT_RULES)
    miou: float | None           # by the rule: mean over the counted folders
    miou_std: float | None
    count: int                   # folders in the mIoU statistics
    paper: Published | None
    diff: float | None           # miou - paper
    wall_s: float | None
    gpu_hours: float | None
    runs: list[int] = field(default_factory=list)            # every run id of the row
    sweep: dict[str, Any] = field(default_factory=dict)      # swept key -> value
    seeds: list[int] = field(default_factory=list)           # seeds of the counted folders
    numbers: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # kind -> mean, std
    folders: list[Path] = field(default_factory=list)

    def as_dict(self, sweep_keys: Sequence[str] = ()) -> dict[str, Any]:
        """Plain values (None where unknown), keys in `columns(sweep_keys)` order."""
        out: dict[str, Any] = {'run': self.run, 'runs': list(self.runs or [self.run]), 'name': self.name}
        out.update((_sweep_column(k), self.sweep.get(k)) for k in sweep_keys)
        out.update({
            'state': self.state, 'iterations': self.iterations, 'total_iters': self.total_iters,
            'rule': self.rule, 'miou': _round(self.miou, 4), 'miou_std': _round(self.miou_std, 4),
            'count': self.count, 'seeds': list(self.seeds),
            'paper_miou': self.paper.miou if self.paper else None, 'diff': _round(self.diff, 4)})
        for kind in ('final', 'best', 'ema_final', 'ema_best'):
            mean, std = self.numbers.get(kind, (None, None))
            out[f'{kind}_miou'], out[f'{kind}_miou_std'] = _round(mean, 4), _round(std, 4)
        out.update({
            'wall_s': _round(self.wall_s, 1), 'gpu_hours': _round(self.gpu_hours, 4),
            'paper_table': self.paper.table if self.paper else None,
            'paper_source': self.paper.source if self.paper else None,
            'folders': [str(p) for p in self.folders]})
        return out


def _sweep_column(key: str) -> str:
    """A swept key's column name (prefixed where it would collide with a fixed column)."""
    return f'sweep.{key}' if key in HEAD_COLUMNS or key in TAIL_COLUMNS else key


def columns(sweep_keys: Sequence[str] = ()) -> tuple[str, ...]:
    """The csv/json columns of a table whose rows sweep `sweep_keys`."""
    return HEAD_COLUMNS + tuple(_sweep_column(k) for k in sweep_keys) + TAIL_COLUMNS


COLUMNS = columns()


def sweep_keys(rows: Sequence[RunResult]) -> list[str]:
    """The swept keys of the rows, in the order they first appear."""
    return list(dict.fromkeys(k for r in rows for k in r.sweep))


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
    override hash (`_h1a2b3c`, --cfg-options) is kept so changed configs stay apart. The seed suffix
    (`_s1`) is not: a row holds every seed.
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
    suffix = re.search(r'_(h[0-9a-f]{6})(_s\d+)?$', str(cfg.get('name', '')))
    return f'{text} {suffix.group(1)}' if suffix else text


def run_label(runs: Sequence[int]) -> str:
    """Run ids as text: consecutive ids as ranges ('0-2,5')."""
    ids = sorted(set(runs))
    parts, start = [], None
    for k, i in enumerate(ids):
        start = i if start is None else start
        if k + 1 == len(ids) or ids[k + 1] != i + 1:
            parts.append(str(i) if i == start else f'{start}-{i}')
            start = None
    return ','.join(parts)


# ----------------------------------------------------------------------------- folders
def folder_numbers(files: FolderFiles) -> dict[str, float | None]:
    """REPORT_RULES -> mIoU of one folder: results.json when finished, else state.json's latest
    evaluation (best_miou is 0.0 there until the first evaluation: None then)."""
    results, state = files.results, files.state
    if results.get('finished'):
        own, teacher = results, results.get(TEACHER)
        final_key = 'miou'
    else:
        own, teacher = state, state.get(TEACHER)
        final_key = 'last_miou'
    teacher = teacher if isinstance(teacher, dict) else {}
    numbers = {'final': _number(own.get(final_key)), 'best': _number(own.get('best_miou')),
               'ema_final': _number(teacher.get('miou', teacher.get('last_miou'))),
               'ema_best': _number(teacher.get('best_miou'))}
    if not results.get('finished'):
        for final, best in (('final', 'best'), ('ema_final', 'ema_best')):
            if numbers[final] is None and not numbers[best]:
                numbers[best] = None
    return numbers


def folder_result(run_dir: Path, cfg: dict[str, Any], slurm_state: str | None = None,
                  files: FolderFiles | None = None) -> FolderResult:
    """The state and numbers of one run folder (`slurm_state`: its job's Slurm state, if known;
    `files`: its files, when already read)."""
    files = files or FolderFiles.read(run_dir)
    state_name, _ = classify(run_dir, slurm_state, files)
    if state_name == 'not started' and files.record:
        state_name = 'submitted'          # handed to Slurm, which does not (or no longer) know it
    state, results = files.state, files.results
    iteration = _integer(state.get('iteration'))
    total = _integer(state.get('total_iters')) or None
    if results.get('finished'):
        iteration = _integer(results.get('iters')) if iteration is None else iteration
        total = total or iteration
    world = _integer(state.get('world_size'))
    if world is None and state:
        world = int(cfg.get('n_gpus', 1)) * int(cfg.get('n_nodes', 1))
    seed = _integer(cfg.get('seed', 0)) or 0
    return FolderResult(run_dir, state_name, iteration, total, folder_numbers(files),
                        _number(state.get('elapsed_s')), world, seed)


# ----------------------------------------------------------------------------- aggregation
def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _state_summary(folders: list[FolderResult], not_started: int = 0) -> str:
    counts = Counter(f.state for f in folders)
    if not_started:
        counts['not started'] += not_started
    if not counts:
        return 'not started'
    if len(counts) == 1:
        return next(iter(counts))
    order = {s: i for i, s in enumerate(STATE_ORDER)}
    return ', '.join(f'{n} {s}' for s, n in sorted(counts.items(), key=lambda kv: order.get(kv[0], 99)))


def _counted(folders: list[FolderResult], rule: str) -> list[FolderResult]:
    """The folders the statistics are over: finished ones with the rule's number, else any with it,
    else (the rule's number is nowhere, e.g. an old run) finished, then any, with some number."""
    def some(f: FolderResult) -> bool:
        return any(v is not None for v in f.numbers.values())
    for pick in (lambda f: f.state == 'finished' and f.numbers[rule] is not None,
                 lambda f: f.numbers[rule] is not None,
                 lambda f: f.state == 'finished' and some(f), some):
        chosen = [f for f in folders if pick(f)]
        if chosen:
            return chosen
    return []


def aggregate(index: int, cfg: dict[str, Any], folders: list[FolderResult], paper: Published | None,
              runs: Sequence[int] = (), not_started: int = 0) -> RunResult:
    """One table row from the folders of a run (module doc: which folders count where)."""
    rule = report_rule(cfg, paper)
    counted = _counted(folders, rule)
    numbers = {kind: _mean_std([f.numbers[kind] for f in counted if f.numbers[kind] is not None])
               for kind in REPORT_RULES}
    miou, miou_std = numbers[rule]
    with_rule = [f for f in counted if f.numbers[rule] is not None]
    iters = [f.iteration for f in folders if f.iteration is not None]
    totals = [f.total_iters for f in folders if f.total_iters]
    timed = [f for f in (counted or folders) if f.elapsed_s is not None]
    wall = sum(f.elapsed_s for f in timed) / len(timed) if timed else None
    spent = [f.elapsed_s * (f.world_size or 1) for f in folders if f.elapsed_s is not None]
    sweep = cfg.get('sweep') if isinstance(cfg.get('sweep'), dict) else {}
    return RunResult(
        run=min(runs) if runs else index, runs=sorted(set(runs or [index])), name=short_name(cfg),
        sweep=dict(sweep), state=_state_summary(folders, not_started),
        iterations=min(iters) if iters else None, total_iters=max(totals) if totals else None,
        rule=rule, miou=miou, miou_std=miou_std, count=len(with_rule), seeds=sorted({f.seed for f in with_rule}),
        numbers=numbers, paper=paper, diff=miou - paper.miou if miou is not None and paper is not None else None,
        wall_s=wall, gpu_hours=sum(spent) / 3600.0 if spent else None, folders=[f.path for f in folders])


def _fill_sweeps(rows: list[RunResult], cfgs: list[dict[str, Any]]) -> None:
    """A row without a key another row sweeps shows the config's own value there (None if absent)."""
    keys = sweep_keys(rows)
    for row, cfg in zip(rows, cfgs):
        for key in keys:
            if key not in row.sweep:
                row.sweep[key] = dotted_get(cfg, key)
        row.sweep = {k: row.sweep[k] for k in keys}


def collect_results(exp_id: int, cfgs: Sequence[dict[str, Any]], exp_root: Path,
                    indices: Sequence[int], runner: Runner | None = None) -> list[RunResult]:
    """One `RunResult` per selected run without its seed: `cfgs[k]` is the config of run `indices[k]`
    (the CLI's selected configs, --cfg-options and --seeds applied; an index may repeat, one per seed).
    The experiment's folders are scanned once; Slurm is queried once for every submitted folder."""
    if len(cfgs) != len(indices):
        raise ValueError(f'{len(cfgs)} configs for {len(indices)} run indices; pass the selected configs')
    by_repeat = group_by(scan_run_folders(exp_root, exp_id), 'repeat')
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, cfg in zip(indices, cfgs):
        groups.setdefault(repeat_key(cfg), []).append((index, cfg))
    found = {key: by_repeat.get(key, []) for key in groups}
    files = read_folder_files(exp_root, exp_id, [f.path for group in found.values() for f in group])
    jobs = {path: slurm_job_id(f.record) for path, f in files.items()}
    wanted = [j for j in jobs.values() if j]
    states = slurm_states(wanted, runner or run_command) if wanted else {}
    rows, first_cfgs = [], []
    paper = reproduced_paper(exp_id)
    for key, members in groups.items():
        index, cfg = members[0]
        folders = [folder_result(f.path, f.config, states.get(jobs[f.path]) if jobs[f.path] else None,
                                 files[f.path]) for f in found[key]]
        seeds = {int(c.get('seed', 0)) for _, c in members}
        missing = len(seeds - {f.seed for f in folders})
        rows.append(aggregate(index, cfg, folders, published_for(paper, cfg),
                              runs=[i for i, _ in members], not_started=missing if folders else 0))
        first_cfgs.append(cfg)
    _fill_sweeps(rows, first_cfgs)
    return rows


# ----------------------------------------------------------------------------- order
def sort_rows(rows: Sequence[RunResult], by: str = 'run') -> list[RunResult]:
    """Rows in `by` order: 'run' (run id), 'best' (highest mIoU first), 'diff' (closest to or above
    the paper first), 'name', or a swept key (ascending); rows without the value go last."""
    keys = sweep_keys(rows)
    if by not in SORTS and by not in keys:
        extra = f', or a swept key: {", ".join(keys)}' if keys else ''
        raise ValueError(f'cannot sort results by {by!r}; choose one of {", ".join(SORTS)}{extra}')

    def value(r: RunResult) -> Any:
        if by == 'run':
            return r.run
        if by == 'name':
            return r.name
        if by in ('best', 'diff'):
            v = r.miou if by == 'best' else r.diff
            return None if v is None else -v
        v = r.sweep.get(by)
        return None if v is None else (0, v) if isinstance(v, (int, float)) else (1, str(v))

    present = [r for r in rows if value(r) is not None]
    return sorted(present, key=lambda r: (value(r), r.run)) + [r for r in rows if value(r) is None]


# ----------------------------------------------------------------------------- formatting
def _fmt(value: float | None, std: float | None = None, count: int = 1) -> str:
    if value is None:
        return '-'
    if count > 1:
        return f'{value:.2f} ± {std:.2f} (n={count})' if std is not None else f'{value:.2f} (n={count})'
    return f'{value:.2f}'


def _cell(value: Any) -> str:
    """A swept value as typed in YAML: 1e-05, true, [1, 2]; None as '-'."""
    if value is None:
        return '-'
    return value if isinstance(value, str) else json.dumps(value)


def _text_row(r: RunResult, keys: Sequence[str]) -> list[str]:
    iters = '-' if r.iterations is None else f'{r.iterations}/{r.total_iters or "?"}'
    return [
        run_label(r.runs or [r.run]), r.name, *(_cell(r.sweep.get(k)) for k in keys), r.state, iters,
        _fmt(r.miou, r.miou_std, r.count), RULE_LABELS.get(r.rule, r.rule),
        '-' if r.paper is None else str(r.paper.miou),
        '-' if r.diff is None else f'{r.diff:+.2f}',
        '-' if r.wall_s is None else format_duration(r.wall_s),
        '-' if r.gpu_hours is None else f'{r.gpu_hours:.2f}',
    ]


def format_markdown(rows: Sequence[RunResult]) -> str:
    """A markdown table, then what each rule means and one line per paper table the numbers come from."""
    keys = sweep_keys(rows)
    header = ['run', 'name', *keys, 'state', 'iters', 'mIoU', 'rule', 'paper', 'diff', 'wall', 'GPU-h']
    align = ['--:', '---', *(['--:'] * len(keys)), '---', '--:', '--:', '---', '--:', '--:', '--:', '--:']
    lines = ['| ' + ' | '.join(cells) + ' |' for cells in [header, align] + [_text_row(r, keys) for r in rows]]
    rules = list(dict.fromkeys(r.rule for r in rows))
    if rules:
        lines.append('')
        lines.append('mIoU: by the rule of the run\'s paper (mean ± std over seeds, n runs): '
                     + '; '.join(f'{RULE_LABELS.get(k, k)} = {RULE_TEXT.get(k, k)}' for k in rules)
                     + '. Final and best mIoU of the model and of its EMA teacher: --format csv|json.')
    sources = list(dict.fromkeys((r.paper.table, r.paper.source) for r in rows if r.paper is not None))
    if sources:
        lines.append('')
        lines += [f'paper mIoU: {table} ({source})' for table, source in sources]
    return '\n'.join(lines) + '\n'


def format_csv(rows: Sequence[RunResult]) -> str:
    """CSV with `columns(sweep keys)`; empty cells where unknown; runs, seeds and folders joined by ';'."""
    keys = sweep_keys(rows)
    cols = columns(keys)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(cols)
    for r in rows:
        d = r.as_dict(keys)
        for name in ('runs', 'seeds', 'folders'):
            d[name] = ';'.join(map(str, d[name]))
        for k in keys:
            value = d[_sweep_column(k)]
            d[_sweep_column(k)] = value if value is None or isinstance(value, str) else json.dumps(value)
        writer.writerow(['' if d[c] is None else d[c] for c in cols])
    return out.getvalue()


def format_json(rows: Sequence[RunResult]) -> str:
    """A JSON list of `RunResult.as_dict()` (plain numbers, null where unknown)."""
    keys = sweep_keys(rows)
    return json.dumps([r.as_dict(keys) for r in rows], indent=2, ensure_ascii=False) + '\n'


def format_results(rows: Sequence[RunResult], fmt: str = 'markdown', sort: str = 'run') -> str:
    """The table in `fmt` ('markdown', 'csv' or 'json'), rows in `sort` order (`sort_rows`)."""
    formatters = {'markdown': format_markdown, 'csv': format_csv, 'json': format_json}
    if fmt not in formatters:
        raise ValueError(f'unknown results format {fmt!r}; choose one of {", ".join(FORMATS)}')
    return formatters[fmt](sort_rows(rows, sort))


def results_table(exp_id: int, cfgs: Sequence[dict[str, Any]], exp_root: Path, indices: Sequence[int],
                  fmt: str = 'markdown', sort: str = 'run') -> str:
    """`--results`: collect and format (ValueError for a bad format or sort key, before any scan)."""
    if fmt not in FORMATS:
        raise ValueError(f'unknown results format {fmt!r}; choose one of {", ".join(FORMATS)}')
    return format_results(collect_results(exp_id, cfgs, exp_root, indices), fmt, sort)
