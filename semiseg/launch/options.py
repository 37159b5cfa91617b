"""Slurm options: one dataclass filled from a defaults file and the command line.

The CLI parses the Slurm flags into `SlurmOptions`; `semiseg.launch.slurm.submit` consumes it.
A defaults file (YAML mapping of field -> value) lets a cluster set its partition, account, ...
once; flags given on the command line override it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from semiseg.utils.safe_yaml import read_yaml

DEFAULTS_ENV = 'SEMISEG_SLURM_DEFAULTS'
ALIASES = {'max_parallel': 'array_parallelism'}   # defaults-file key -> field (the CLI's --max-parallel)


class SlurmOptionsError(ValueError):
    """A Slurm defaults file or flag value is invalid."""


@dataclass
class SlurmOptions:
    """How to submit runs to Slurm (through submitit)."""

    partition: str | None = None        # Slurm partition (None: the cluster's default)
    time_min: int = 1440                # wall-time limit per job in minutes; jobs requeue at the limit
    account: str | None = None          # Slurm account to charge
    qos: str | None = None              # quality of service
    constraint: str | None = None       # node feature constraint, e.g. 'a100'
    mem_gb: int | None = None           # memory per node in GB (None: the cluster's default)
    nodes: int = 1                      # nodes per job
    gpus_per_node: int | None = None    # GPUs (= tasks) per node; None: --ngpus or the run's n_gpus
    cpus_per_task: int = 8              # CPU cores per task (dataloader workers + main process)
    array_parallelism: int = 32         # at most this many array tasks run at once (--max-parallel)
    max_array_size: int | None = None   # the cluster's MaxArraySize; None: read `scontrol show config`
    extra_sbatch: list[str] = field(default_factory=list)  # raw extra sbatch flags, 'key=value'
    defaults_file: Path | None = None   # YAML file the defaults above were read from, if any

    @classmethod
    def field_names(cls) -> list[str]:
        """Fields a defaults file may set (everything except `defaults_file`)."""
        return [f.name for f in dataclasses.fields(cls) if f.name != 'defaults_file']


def load_defaults(path: Path) -> dict[str, Any]:
    """Read a Slurm defaults file; unknown keys are an error (they are usually typos)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SlurmOptionsError(f'Slurm defaults file {path} does not exist; '
                                f'pass an existing YAML file or drop --slurm-defaults')
    try:
        data = read_yaml(path, 'Slurm defaults file') or {}
    except yaml.YAMLError as e:
        raise SlurmOptionsError(f'Slurm defaults file {path} is not valid YAML: {e}') from None
    if not isinstance(data, dict):
        raise SlurmOptionsError(f'Slurm defaults file {path} must be a YAML mapping of option: value')
    for alias, name in ALIASES.items():
        if alias in data:
            if name in data:
                raise SlurmOptionsError(f'Slurm defaults file {path} sets both {alias} and {name}; keep one')
            data[name] = data.pop(alias)
    known = SlurmOptions.field_names()
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SlurmOptionsError(f'unknown key(s) {", ".join(unknown)} in Slurm defaults file {path}; '
                                f'valid keys: {", ".join(known)}')
    return data


def build_slurm_options(cli_values: dict[str, Any], defaults_file: str | Path | None = None) -> SlurmOptions:
    """Merge dataclass defaults < defaults file < command-line values (None means 'not given').

    `defaults_file` falls back to the `SEMISEG_SLURM_DEFAULTS` environment variable.
    """
    if defaults_file is None and os.environ.get(DEFAULTS_ENV):
        defaults_file = os.environ[DEFAULTS_ENV]
    values: dict[str, Any] = {}
    if defaults_file is not None:
        values.update(load_defaults(Path(defaults_file)))
    for key, value in cli_values.items():
        if key not in SlurmOptions.field_names():
            raise SlurmOptionsError(f'unknown Slurm option {key!r}; valid: {", ".join(SlurmOptions.field_names())}')
        if key == 'extra_sbatch':
            if value:
                values['extra_sbatch'] = list(values.get('extra_sbatch') or []) + list(value)
        elif value is not None:
            values[key] = value
    for key in ('time_min', 'mem_gb', 'nodes', 'gpus_per_node', 'cpus_per_task', 'array_parallelism',
                'max_array_size'):
        value = values.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise SlurmOptionsError(f'Slurm option {key} must be a positive integer, got {value!r}')
    extra = values.get('extra_sbatch') or []
    if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
        raise SlurmOptionsError(f'Slurm option extra_sbatch must be a list of strings, got {extra!r}')
    values['extra_sbatch'] = list(extra)
    return SlurmOptions(**values, defaults_file=Path(defaults_file).expanduser() if defaults_file else None)
