"""Experiment registry: experiment id -> fully specified run configs (spec §1)."""
from .config import build_config, dataset_root, resolve_data_root
from .io import dump_config, load_config, load_release_config, write_config
from .naming import humanize, run_name
from .params import Experiment, RunParams, make_params
from .registry import get_experiment, get_runs, list_experiments
from .schema import ENGINE_OPTIONS, option

__all__ = [
    'ENGINE_OPTIONS', 'Experiment', 'RunParams', 'build_config', 'dataset_root', 'dump_config',
    'get_experiment', 'get_runs', 'humanize', 'list_experiments', 'load_config',
    'load_release_config', 'make_params', 'option', 'resolve_data_root', 'run_name', 'write_config',
]
