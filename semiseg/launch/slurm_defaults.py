"""Where a user's Slurm defaults live, and how they merge with command-line flags.

A cluster's partition, account, QoS, ... rarely change, so they go into one YAML file instead of
every command line. Lookup order for the file: an explicit path (`--slurm-defaults`), the
`SEMISEG_SLURM_DEFAULTS` environment variable, then `~/.config/semiseg/slurm.yaml` when it exists.
Values given on the command line always win over the file (see `semiseg.launch.options`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .options import DEFAULTS_ENV, SlurmOptions, build_slurm_options

USER_DEFAULTS_FILE = Path('~/.config/semiseg/slurm.yaml')

EXAMPLE_DEFAULTS = """\
# ~/.config/semiseg/slurm.yaml: Slurm defaults for `experiments.py --launcher slurm`
partition: gpu          # sinfo lists the partitions
account: my_group       # sacctmgr show assoc user=$USER
qos: normal
time_min: 2880          # jobs requeue themselves at the limit and resume from latest.pth
constraint: a100        # node feature (sinfo -o '%N %f')
mem_gb: 64
cpus_per_task: 8
max_parallel: 4         # at most 4 runs of a sweep train at once (also across split arrays)
# max_array_size: 1001  # only to override what `scontrol show config` says
extra_sbatch: ['mail-type=END,FAIL']
"""


def find_defaults_file(explicit: str | Path | None = None) -> Path | None:
    """The defaults file to read: explicit path > env variable > user file (if it exists)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(DEFAULTS_ENV):
        return Path(os.environ[DEFAULTS_ENV]).expanduser()
    user_file = USER_DEFAULTS_FILE.expanduser()
    return user_file if user_file.is_file() else None


def load_options(cli_values: dict[str, Any], defaults_file: str | Path | None = None) -> SlurmOptions:
    """`SlurmOptions` from the command-line values (None = not given) over the defaults file."""
    return build_slurm_options(cli_values, find_defaults_file(defaults_file))
