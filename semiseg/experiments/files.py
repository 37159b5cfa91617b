"""Experiment files: an experiment as data, one YAML file, no package edit (docs/experiments.md).

    id: 900                              # unique across built-in and file experiments
    title: SemiVL VOC 92, learning-rate sweep
    base: {exp: 40, run: 0}              # every run starts from this run's config
    set: {epochs: 40}                    # optional: overrides for every run
    runs: [{}, {maskclip_consistency_lambda: 0}]   # optional: one run per entry (may hold its own base)
    grid: {optimizer.lr: [1.0e-5, 2.0e-5]}         # optional: cartesian product, in file order
    seeds: [0, 1, 2]                     # optional (or a count: 3 = 0, 1, 2)

Runs are runs x grid x seeds in that order (seeds innermost), numbered from 0. Override keys and
value types are those of `--cfg-options` (dotted keys; nested mappings are read as dotted keys).
This module reads and checks one file (structure and types, before any config is built); the
registry (`semiseg.experiments.registry`) finds the files, checks ids and bases across them and
builds the run configs, whose errors also name the file.

Values are read with a SafeLoader subclass (no Python tags; `1e-3` is a number as in
`--cfg-options`; `1_16` stays the string '1_16' rather than YAML 1.1's integer 116).
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from semiseg.utils.safe_yaml import LimitedLoader, load_yaml_text
from semiseg.utils.textfiles import read_text

from .overrides import nearest

FILE_KEYS = ('id', 'title', 'base', 'set', 'runs', 'grid', 'seeds')
BASE_KEYS = ('exp', 'run')
SUFFIXES = ('.yaml', '.yml')
MAX_FILE_BYTES = 256 * 1024
MAX_RUNS = 10_000
SEED_KEY = 'seed'
_INT = 'tag:yaml.org,2002:int'
_FLOAT = 'tag:yaml.org,2002:float'


class ExperimentFileError(ValueError):
    """A bad experiment file (or folder); the message is one line naming the file."""


class ExperimentLoader(LimitedLoader):   # alias, size and depth limits (semiseg.utils.safe_yaml)
    """Safe YAML with --cfg-options' number rules: plain decimal ints, floats incl. `1e-3`, no `1_16` ints."""


ExperimentLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ExperimentLoader.add_implicit_resolver(_INT, re.compile(r'^[-+]?(0|[1-9][0-9]*)$'), list('-+0123456789'))
ExperimentLoader.add_implicit_resolver(
    _FLOAT, re.compile(r'^([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$'),
    list('-+0123456789.'))


@dataclass(frozen=True)
class FileRun:
    """One run of a file experiment: its base run, its overrides, which of them are swept, its seed."""

    base: tuple[int, int]                      # (experiment id, run index)
    values: tuple[tuple[str, Any], ...]        # dotted key -> value, applied in order (set, runs entry, grid)
    sweep: tuple[str, ...]                     # the dotted keys set by its runs entry and grid point
    seed: int | None                           # None: the file has no seeds (the base's seed)


@dataclass(frozen=True)
class FileExperiment:
    """An experiment read from a YAML file; `runs` in run-index order (as `Experiment.runs`)."""

    exp_id: int
    description: str
    runs: tuple[FileRun, ...]
    path: Path
    base: tuple[int, int]
    reproduces: str | None = None              # the base experiment's paper (set by the registry)

    @property
    def bases(self) -> set[int]:
        """Every experiment id a run starts from."""
        return {run.base[0] for run in self.runs} | {self.base[0]}


def _fail(path: Path, what: str) -> ExperimentFileError:
    return ExperimentFileError(f'{path}: {what}')


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return {dict: 'a mapping', list: 'a list', str: 'a string', bool: 'true/false', type(None): 'empty'}.get(
        type(value), type(value).__name__)


def read_yaml(path: Path) -> Any:
    """The parsed file (ExperimentFileError when too large, unreadable, not YAML or with unsafe tags)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _fail(path, f'{size} bytes; an experiment file holds at most {MAX_FILE_BYTES} bytes')
        text = read_text(path, 'experiment file')   # UTF-8 with or without BOM, any line ending
    except (OSError, ValueError) as err:
        raise _fail(path, f'cannot read it ({getattr(err, "strerror", None) or err})') from None
    try:
        return load_yaml_text(text, str(path), ExperimentLoader)
    except yaml.constructor.ConstructorError as err:
        mark = f' (line {err.problem_mark.line + 1})' if err.problem_mark else ''
        tag = re.search(r"tag '([^']*)'", str(err.problem))
        raise _fail(path, f'unsafe or unknown YAML tag {tag.group(1) if tag else ""}{mark}: experiment files '
                          'hold plain mappings, lists, numbers and strings') from None
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f' at line {mark.line + 1}, column {mark.column + 1}' if mark else ''
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        raise _fail(path, f'not valid YAML{where}: {problem}') from None


def _check_keys(path: Path, mapping: dict, valid: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in valid:
            raise _fail(path, f'unknown key {key!r}{where}{nearest(str(key), list(valid))} '
                              f'(valid: {", ".join(valid)})')


def _flat(path: Path, mapping: dict, where: str, prefix: str = '') -> dict[str, Any]:
    """{dotted key: value}; nested mappings become dotted keys; keys must be non-empty strings."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not key or any(not part for part in key.split('.')):
            raise _fail(path, f'{where}: {key!r} is not a config key (use names like epochs or optimizer.lr)')
        dotted = prefix + key
        if dotted == SEED_KEY:
            raise _fail(path, f'{where}: seed is set by `seeds: [0, 1, 2]` (repeats share one results row)')
        if isinstance(value, dict) and value:
            out.update(_flat(path, value, where, dotted + '.'))
        else:
            out[dotted] = value
    return out


def _base(path: Path, value: Any, where: str) -> tuple[int, int]:
    if not isinstance(value, dict):
        raise _fail(path, f'{where} must be a mapping like {{exp: 0, run: 0}}, got {_type_name(value)}')
    _check_keys(path, value, BASE_KEYS, f' in {where}')
    for key in BASE_KEYS:
        if key not in value:
            raise _fail(path, f'{where} lacks {key}: write {where}: {{exp: 0, run: 0}}')
        if not _is_int(value[key]) or value[key] < 0:
            raise _fail(path, f'{where}.{key} must be a whole number >= 0, got {value[key]!r}')
    return int(value['exp']), int(value['run'])


def _seeds(path: Path, value: Any) -> list[int | None]:
    if value is None:
        return [None]
    if _is_int(value):
        if value < 1:
            raise _fail(path, f'seeds: {value} repeats nothing; give a count >= 1 or a list like [0, 1, 2]')
        return list(range(value))
    if not isinstance(value, list) or not value:
        raise _fail(path, f'seeds must be a non-empty list of whole numbers (or a count), got {value!r}')
    for seed in value:
        if not _is_int(seed) or seed < 0:
            raise _fail(path, f'seeds: {seed!r} is not a whole number >= 0')
    if len(set(value)) != len(value):
        raise _fail(path, f'seeds {value} lists a seed twice')
    return list(value)


def _runs(path: Path, value: Any) -> list[tuple[tuple[int, int] | None, dict[str, Any]]]:
    if value is None:
        return [(None, {})]
    if not isinstance(value, list) or not value:
        raise _fail(path, f'runs must be a non-empty list of mappings (use [{{}}] for the base run alone), '
                          f'got {value!r}')
    out = []
    for i, entry in enumerate(value):
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise _fail(path, f'runs[{i}] must be a mapping of overrides like {{epochs: 2}}, got {_type_name(entry)}')
        base = _base(path, entry['base'], f'runs[{i}].base') if 'base' in entry else None
        out.append((base, _flat(path, {k: v for k, v in entry.items() if k != 'base'}, f'runs[{i}]')))
    return out


def _grid(path: Path, value: Any) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, f'grid must be a mapping of key: [values], got {_type_name(value)}')
    if not value:
        raise _fail(path, 'grid is empty; give key: [values] pairs, e.g. optimizer.lr: [1.0e-5, 2.0e-5], or drop it')
    grid = _flat(path, value, 'grid')
    for key, values in grid.items():
        if not isinstance(values, list):
            raise _fail(path, f'grid {key} must be a list of values, e.g. {key}: [{values!r}]')
        if not values:
            raise _fail(path, f'grid {key} is an empty list; give at least one value')
    return grid


def load_experiment_file(path: Path) -> FileExperiment:
    """Read and check one experiment file; ExperimentFileError (one line naming the file) when bad."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise _fail(path, f'an experiment file holds one mapping (id, title, base, ...), got {_type_name(data)}')
    _check_keys(path, data, FILE_KEYS, '')
    if 'id' not in data:
        raise _fail(path, 'id is missing; give the experiment a number: id: 900')
    exp_id = data['id']
    if not _is_int(exp_id) or exp_id < 0:
        raise _fail(path, f'id must be a whole number >= 0, got {exp_id!r}')
    title = data.get('title', path.stem)
    if not isinstance(title, str) or not title.strip():
        raise _fail(path, f'title must be a one-line text, got {title!r}')
    if 'base' not in data:
        raise _fail(path, 'base is missing; say which run every run starts from: base: {exp: 0, run: 0}')
    base = _base(path, data['base'], 'base')
    common = data.get('set')
    if common is not None and not isinstance(common, dict):
        raise _fail(path, f'set must be a mapping of overrides like {{epochs: 40}}, got {_type_name(common)}')
    common = _flat(path, common or {}, 'set')
    runs, grid, seeds = _runs(path, data.get('runs')), _grid(path, data.get('grid')), _seeds(path, data.get('seeds'))
    for i, (_, values) in enumerate(runs):
        both = [k for k in values if k in grid]
        if both:
            raise _fail(path, f'runs[{i}] and grid both set {both[0]}; set it in one place')
    count = len(runs) * len(seeds) * math.prod(len(v) for v in grid.values())
    if count > MAX_RUNS:
        raise _fail(path, f'{count} runs (runs x grid x seeds); an experiment holds at most {MAX_RUNS}')
    expanded = []
    for (run_base, values), point in itertools.product(runs, itertools.product(*grid.values())):
        swept = {**values, **dict(zip(grid, point))}
        for seed in seeds:
            expanded.append(FileRun(run_base or base, tuple({**common, **swept}.items()), tuple(swept), seed))
    return FileExperiment(exp_id, ' '.join(title.split()), tuple(expanded), path, base)


def experiment_files(folder: Path) -> list[Path]:
    """The experiment files of a folder (*.yaml, *.yml; not recursive), by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix in SUFFIXES and p.is_file())
