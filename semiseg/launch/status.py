"""`--status`: where each run of an experiment stands, from its run folder and Slurm.

The run folder is the source of truth (`results.json`, `state.json` written by the engine);
the job id stored at submission (`slurm_job.json`) adds what only the scheduler knows: queued,
requeued, or killed without a chance to write its state (time limit, out of memory, node loss).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from semiseg.engine.runlock import lock_holder
from semiseg.experiments.identity import exact_key
from semiseg.utils.run_files import JOB_FILE, RESULTS_FILE, STATE_FILE
from semiseg.utils.safe_yaml import MAX_JSON_BYTES, load_json_text
from semiseg.utils.safe_yaml import read_json as safe_read_json
from semiseg.utils.textfiles import decode_text

from .job import read_attempts, slurm_job_id
from .slurm import ACTIVE_STATES, Runner, run_command, slurm_states

QUEUED_STATES = tuple(s for s in ACTIVE_STATES if s not in ('RUNNING', 'COMPLETING'))
DEAD_STATES = ('FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY', 'PREEMPTED',
               'BOOT_FAIL', 'DEADLINE', 'COMPLETED')


@dataclass
class RunStatus:
    """One line of the status table."""

    run: int
    name: str
    status: str          # not started | queued | running | finished | failed | interrupted
    detail: str
    folder: Path | None
    job_id: str | None


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, None when missing, unreadable or not an object."""
    try:
        data = safe_read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_json_file(path: str) -> dict[str, Any] | None:
    """`read_json` in one open (thousands of folders: no separate existence and size checks), with
    the same size cap, text and parse rules (semiseg.utils.safe_yaml)."""
    try:
        with open(path, 'rb') as f:
            data = f.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            return None
        value = load_json_text(decode_text(data, path), path)
    except (OSError, ValueError):   # missing, a folder, unreadable, not UTF-8, not JSON
        return None
    return value if isinstance(value, dict) else None


def format_eta(seconds: float | None) -> str:
    """1h02m / 4m05s / 12s."""
    if seconds is None:
        return '?'
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
    if seconds >= 60:
        return f'{seconds // 60}m{seconds % 60:02d}s'
    return f'{seconds}s'


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
    return lines[-1] if lines else ''


def _log_tail(record: dict[str, Any] | None) -> str:
    """Last line of the job's stderr log (why Slurm killed it, or the traceback's last line)."""
    if not record or not record.get('stderr'):
        return ''
    try:
        return _last_line(Path(record['stderr']).read_text(errors='replace')[-4000:])
    except OSError:
        return ''


def _progress(state: dict[str, Any]) -> str:
    it, total = state.get('iteration'), state.get('total_iters')
    return f'iteration {it}/{total}' if total else f'iteration {it}'


def _age(state: dict[str, Any]) -> str:
    try:
        updated = datetime.fromisoformat(str(state['updated'])).timestamp()
    except (KeyError, ValueError, TypeError):
        return ''
    return f', updated {format_eta(time.time() - updated)} ago'


@dataclass
class FolderFiles:
    """What a run folder says about itself: results.json, state.json and slurm_job.json, read once."""

    results: dict[str, Any]
    state: dict[str, Any]
    record: dict[str, Any] | None

    @classmethod
    def read(cls, run_dir: Path) -> FolderFiles:
        folder = str(run_dir)
        return cls(_read_json_file(os.path.join(folder, RESULTS_FILE)) or {},
                   _read_json_file(os.path.join(folder, STATE_FILE)) or {},
                   _read_json_file(os.path.join(folder, JOB_FILE)))


def classify(run_dir: Path | None, slurm_state: str | None, files: FolderFiles | None = None) -> tuple[str, str]:
    """(status, detail) of one run from its folder (`files`: already read) and its Slurm job state
    (None: unknown)."""
    if run_dir is None:
        return 'not started', ''
    files = files or FolderFiles.read(run_dir)
    results, state, record = files.results, files.state, files.record
    if results.get('finished'):
        best = results.get('best_miou')
        return 'finished', f'best mIoU {best:.2f}' if isinstance(best, (int, float)) else 'best mIoU ?'
    if slurm_state in QUEUED_STATES:
        resumes = f', resumes at {_progress(state)}' if state.get('iteration') else ''
        return 'queued', f'Slurm {slurm_state}{resumes}'
    if slurm_state is None and state.get('state') == 'running' and lock_holder(run_dir) is None:
        # the lock dies with its process: nobody trains this folder any more (kill -9, node loss)
        saved = state.get('saved_iteration')
        return 'stale', (f'its process ({state.get("host")}, pid {state.get("pid")}) is gone; latest.pth holds '
                         f'iteration {saved}; the same command resumes it')
    if slurm_state == 'RUNNING' or (slurm_state is None and state.get('state') == 'running'):
        if state.get('state') != 'running':
            return 'running', 'starting'
        return 'running', f'{_progress(state)}, ETA {format_eta(state.get("eta_s"))}{_age(state)}'
    if state.get('state') == 'failed':
        return 'failed', _last_line(state.get('error')) or _log_tail(record)
    if state.get('state') == 'interrupted':
        saved = state.get('saved_iteration', state.get('iteration'))
        total = state.get('total_iters')
        return 'interrupted', f'latest.pth holds iteration {saved}/{total}; the same command resumes it'
    if slurm_state in DEAD_STATES:
        return 'failed', f'Slurm {slurm_state}: {_log_tail(record) or "see the job log"}'
    if slurm_job_id(record) and slurm_state is None:
        return 'not started', f'job {record.get("job_id")} unknown to squeue/sacct'
    return 'not started', 'folder created'


def status_rows(cfgs: list[dict[str, Any]], exp_root: Path, runner: Runner | None = None,
                indices: list[int] | None = None) -> list[RunStatus]:
    """One `RunStatus` per config, labelled by its run id (`indices[k]` for `cfgs[k]`; default: the
    position). The experiment's folders are scanned once (`runindex`); each run's newest folder with
    exactly its config is read once; Slurm is queried once for all jobs."""
    from .runindex import group_by, read_folder_files, scan_run_folders
    if indices is None:
        indices = list(range(len(cfgs)))
    if len(indices) != len(cfgs):
        raise ValueError(f'{len(cfgs)} configs for {len(indices)} run indices; pass the selected configs')
    runner = runner or run_command
    by_exp: dict[int, dict[str, list]] = {}
    dirs: list[Path | None] = []
    for cfg in cfgs:
        exp_id = int(cfg['exp'])
        if exp_id not in by_exp:
            by_exp[exp_id] = group_by(scan_run_folders(Path(exp_root), exp_id), 'exact')
        same = by_exp[exp_id].get(exact_key(cfg))
        dirs.append(same[-1].path if same else None)     # the newest
    read = {}
    for exp_id in by_exp:   # finished folders from the finished index (runindex.read_folder_files)
        mine = [d for d, c in zip(dirs, cfgs) if d is not None and int(c['exp']) == exp_id]
        read.update(read_folder_files(Path(exp_root), exp_id, mine))
    files = [read[d] if d else None for d in dirs]
    records = [f.record if f else None for f in files]
    job_ids = [j for j in map(slurm_job_id, records) if j]
    states = slurm_states(job_ids, runner) if job_ids else {}
    rows = []
    for index, cfg, run_dir, record, folder_files in zip(indices, cfgs, dirs, records, files):
        job_id = str(record['job_id']) if record and record.get('job_id') else None
        slurm_state = states.get(slurm_job_id(record))
        status, detail = classify(run_dir, slurm_state, folder_files)
        starts = len(read_attempts(run_dir)) if record is not None else 0   # job starts: submitted runs only
        if starts > 1:
            detail += f' (started {starts} times)'
        rows.append(RunStatus(index, cfg.get('name', '?'), status, detail, run_dir, job_id))
    return rows


def format_table(exp_id: int, rows: list[RunStatus]) -> str:
    """The status table as text."""
    header = ('run', 'status', 'job', 'detail', 'name / folder')
    body = [(str(r.run), r.status, r.job_id or '-', r.detail, str(r.folder) if r.folder else r.name)
            for r in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(4)]
    lines = [f'experiment {exp_id}: {len(rows)} run(s)']
    for line in [header] + body:
        lines.append('  '.join(cell.ljust(width) for cell, width in zip(line[:4], widths)) + '  ' + line[4])
    return '\n'.join(lines)


def print_status(exp_id: int, cfgs: list[dict[str, Any]], exp_root: Path,
                 indices: list[int] | None = None) -> list[RunStatus]:
    """Print the status table of experiment `exp_id` (CLI `--status`; `indices`: the run id of each
    config); returns its rows."""
    rows = status_rows(cfgs, Path(exp_root), indices=indices)
    print(format_table(exp_id, rows))
    return rows
