"""Experiment registry: experiment id -> ordered run configs, from the package and from files.

Built-in experiments are the families' `EXPERIMENTS` (semiseg/experiments/<family>.py). Experiment
files (`semiseg.experiments.files`, docs/experiments.md) come from, in this order:
`configs/experiments/` of the checkout, every folder added with `experiment_dirs_added` (the CLI's
`--experiments DIR`), and the folders of the `SEMISEG_EXPERIMENTS` path list (os.pathsep-separated;
the way the eval / predict / bench tools and `semiseg.api` see a user's folder). Every consumer
(CLI, tools, API, published numbers) asks `get_experiment` / `get_runs`, so a file experiment is
used exactly like a built-in one. A file run's config carries `exp` = the file's id and `sweep`
(its swept values, docs/experiments.md); its seed is the engine option `seed`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from semiseg.utils.dotted import dotted_get

from . import allspark, demo, semivl, unimatch, unimatch_v2
from .config import _set_after, build_config, with_overrides, with_seed
from .files import ExperimentFileError, FileExperiment, experiment_files, load_experiment_file
from .io import REPO_ROOT
from .overrides import overrides_from_mapping
from .params import Experiment

_FAMILIES = (demo, unimatch, semivl, allspark, unimatch_v2)
EXPERIMENTS_ENV = 'SEMISEG_EXPERIMENTS'
CHECKOUT_DIR = REPO_ROOT / 'configs' / 'experiments'
AnyExperiment = Experiment | FileExperiment


class UnknownExperiment(KeyError):
    """An experiment id that no family or file defines."""


def _collect() -> dict[int, Experiment]:
    table: dict[int, Experiment] = {}
    for family in _FAMILIES:
        for exp in family.EXPERIMENTS:
            if exp.exp_id in table:
                raise RuntimeError(f'experiment {exp.exp_id} is defined twice ({family.__name__})')
            table[exp.exp_id] = exp
    return dict(sorted(table.items()))


# the built-in experiments (package code); `list_experiments` adds the files
EXPERIMENTS: dict[int, Experiment] = _collect()
_BUILTIN_HOME = {exp.exp_id: family.__name__ for family in _FAMILIES for exp in family.EXPERIMENTS}
_added: list[tuple[Path, str]] = []
_cache: dict[Any, dict[int, AnyExperiment]] = {}


@contextlib.contextmanager
def experiment_dirs_added(dirs: Iterable[Path | str], source: str = '--experiments') -> Iterator[None]:
    """Within the block, the experiment files of `dirs` are known too (`source` names them in errors)."""
    added = [(Path(d).expanduser(), source) for d in dirs]
    _added.extend(added)
    try:
        yield
    finally:
        del _added[len(_added) - len(added):]


def experiment_dirs() -> list[tuple[Path, str]]:
    """(folder, where it was given) of every folder read for experiment files, in order."""
    found = [(CHECKOUT_DIR, 'the checkout')] if CHECKOUT_DIR.is_dir() else []
    found += _added
    found += [(Path(p).expanduser(), EXPERIMENTS_ENV) for p in os.environ.get(EXPERIMENTS_ENV, '').split(os.pathsep)
              if p.strip()]
    return found


def _files() -> list[Path]:
    files: list[Path] = []
    for folder, source in experiment_dirs():
        if not folder.is_dir():
            raise ExperimentFileError(f'{source} {folder}: no such folder (it should hold experiment .yaml files)')
        files += [f for f in experiment_files(folder) if f.resolve() not in {g.resolve() for g in files}]
    return files


def _load_table(files: list[Path]) -> dict[int, AnyExperiment]:
    table: dict[int, AnyExperiment] = dict(EXPERIMENTS)
    for path in files:
        exp = load_experiment_file(path)
        if exp.exp_id in EXPERIMENTS:
            raise ExperimentFileError(f'{path}: id {exp.exp_id} is the built-in experiment {exp.exp_id} '
                                      f'({_BUILTIN_HOME[exp.exp_id]}); choose another id')
        other = table.get(exp.exp_id)
        if isinstance(other, FileExperiment):
            raise ExperimentFileError(f'experiment {exp.exp_id} is defined twice: {other.path} and {path}; '
                                      'give one of them another id')
        table[exp.exp_id] = exp
    for exp in table.values():
        if isinstance(exp, FileExperiment):
            _check_bases(exp, table)
    for exp_id, exp in table.items():
        if isinstance(exp, FileExperiment):
            table[exp_id] = dataclasses.replace(exp, reproduces=_reproduces(exp, table))
    return dict(sorted(table.items()))


def _check_bases(exp: FileExperiment, table: dict[int, AnyExperiment]) -> None:
    """Every base names an existing run, and no chain of bases comes back to `exp`."""
    for base_exp, base_run in {run.base for run in exp.runs} | {exp.base}:
        base = table.get(base_exp)
        if base is None:
            raise ExperimentFileError(f'{exp.path}: base {{exp: {base_exp}, run: {base_run}}}: there is no experiment '
                                      f'{base_exp} (valid: {", ".join(map(str, table))})')
        if base_run >= len(base.runs):
            raise ExperimentFileError(f'{exp.path}: base {{exp: {base_exp}, run: {base_run}}}: experiment {base_exp} '
                                      f'has runs 0..{len(base.runs) - 1}')
    seen, todo = set(), [exp.exp_id]
    while todo:
        current = table[todo.pop()]
        if not isinstance(current, FileExperiment):
            continue
        for base_exp in current.bases:
            if base_exp == exp.exp_id:
                raise ExperimentFileError(f'{exp.path}: its base runs lead back to experiment {exp.exp_id} '
                                          f'(through {current.path}); a base must be another experiment')
            if base_exp not in seen:
                seen.add(base_exp)
                todo.append(base_exp)


def _reproduces(exp: AnyExperiment, table: dict[int, AnyExperiment]) -> str | None:
    """A file experiment reproduces what its base experiment reproduces (the paper's numbers show)."""
    while isinstance(exp, FileExperiment):
        exp = table[exp.base[0]]
    return exp.reproduces


def _table() -> dict[int, AnyExperiment]:
    """Built-in and file experiments by id; re-read when a file changes (ExperimentFileError if bad)."""
    files = _files()
    key = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    if key not in _cache:
        _cache.clear()
        _cache[key] = _load_table(files)
    return _cache[key]


def list_experiments() -> list[AnyExperiment]:
    """All experiments, by id."""
    return list(_table().values())


def get_experiment(exp_id: int) -> AnyExperiment:
    """The experiment `exp_id`; the error lists the valid ids."""
    table = _table()
    try:
        return table[exp_id]
    except KeyError:
        raise UnknownExperiment(f'unknown experiment {exp_id}; valid: {", ".join(map(str, table))}') from None


def get_runs(exp_id: int, data_root: str | None = None) -> list[dict[str, Any]]:
    """The run configs of experiment `exp_id`, index = run id.

    `data_root` is the folder holding the datasets (default: `SEMISEG_DATA` env, else `~/data`).
    """
    exp = get_experiment(exp_id)
    if isinstance(exp, FileExperiment):
        return _file_runs(exp, data_root)
    return [build_config(p, data_root) for p in exp.params()]


def _file_runs(exp: FileExperiment, data_root: str | None) -> list[dict[str, Any]]:
    """Each run: its base run's config with the file's overrides (one step, so the name's hash covers
    them all), then its seed; `exp` is the file's id and `sweep` holds the swept values."""
    bases = {base_exp: get_runs(base_exp, data_root) for base_exp in exp.bases}
    cfgs = []
    for index, run in enumerate(exp.runs):
        base_exp, base_run = run.base
        try:
            cfg = with_overrides(bases[base_exp][base_run], overrides_from_mapping(dict(run.values)), data_root)
            if run.seed is not None:
                cfg = with_seed(cfg, run.seed)
        except ValueError as err:   # OverrideError too: an unknown key, a wrong type, a refused method
            swept = ', '.join(f'{k}={v}' for k, v in run.values if k in run.sweep)
            what = str(err).removeprefix('--cfg-options ')   # the file's keys, not the command line's
            raise ExperimentFileError(f'{exp.path}: run {index}{f" ({swept})" if swept else ""}: {what}') from None
        cfg['exp'] = exp.exp_id
        cfgs.append(_set_after(cfg, 'name', 'sweep', {k: dotted_get(cfg, k) for k in run.sweep}))
    return cfgs
